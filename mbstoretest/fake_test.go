package mbstoretest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbstoretest"
)

// fakeDB is an in-memory database with transactions, savepoints, snapshot
// isolation and an inbox whose concurrent claims wait, as a SQL database
// with a unique key does; m names a defect to inject (see
// TestSuiteCatchesBugs), "" for none.
type fakeDB struct {
	m       string
	mu      sync.Mutex
	rows    map[string]bool    // committed rows
	claims  map[string]bool    // committed claims
	held    map[string]*fakeTx // claims of open transactions
	waiting int                // claims waiting for another's outcome
}

type fakeTransactor struct {
	db  *fakeDB
	cfg mbstoretest.Config
}

type op struct {
	claim bool
	key   string
}

type savepoint struct {
	name string
	n    int // len(ops) when set
}

type fakeTx struct {
	db   *fakeDB
	cfg  mbstoretest.Config
	ops  []op
	sps  []savepoint
	snap map[string]bool // rows as of the first read (REPEATABLE READ and above)
	done chan struct{}   // closed when the transaction ends
	end  bool
}

func (t fakeTransactor) Begin(context.Context) (mb.Tx, error) {
	return &fakeTx{db: t.db, cfg: t.cfg, done: make(chan struct{})}, nil
}

func (x *fakeTx) finish(apply bool) error {
	db := x.db
	db.mu.Lock()
	defer db.mu.Unlock()
	if x.end {
		return errors.New("fake: the transaction has ended")
	}
	x.end = true
	for _, o := range x.ops {
		switch {
		case !apply:
		case o.claim:
			db.claims[o.key] = true
		default:
			db.rows[o.key] = true
		}
	}
	for k, h := range db.held {
		if h == x {
			delete(db.held, k)
		}
	}
	close(x.done)
	return nil
}

func (x *fakeTx) Commit(context.Context) error { return x.finish(x.db.m != "commit-drops") }

func (x *fakeTx) Rollback(context.Context) error { return x.finish(x.db.m == "rollback-applies") }

func (x *fakeTx) Savepoint(_ context.Context, name string) error {
	x.sps = append(x.sps, savepoint{name, len(x.ops)})
	return nil
}

func (x *fakeTx) find(name string) (int, error) {
	i := slices.IndexFunc(x.sps, func(s savepoint) bool { return s.name == name })
	if i < 0 {
		return 0, fmt.Errorf("fake: no savepoint %q", name)
	}
	return i, nil
}

func (x *fakeTx) RollbackToSavepoint(_ context.Context, name string) error {
	i, err := x.find(name)
	if err == nil && x.db.m != "savepoint-noop" {
		x.ops, x.sps = x.ops[:x.sps[i].n], x.sps[:i+1]
	}
	return err
}

func (x *fakeTx) ReleaseSavepoint(_ context.Context, name string) error {
	i, err := x.find(name)
	if err == nil {
		x.sps = x.sps[:i]
	}
	return err
}

func (db *fakeDB) insert(_ context.Context, tx mb.Tx, key string) error {
	x := tx.(*fakeTx)
	if x.cfg.ReadOnly && db.m != "read-only-ignored" {
		return errors.New("fake: a write in a read-only transaction")
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.m == "dirty-read" {
		db.rows[key] = true
	}
	x.ops = append(x.ops, op{key: key})
	return nil
}

func (db *fakeDB) count(_ context.Context, tx mb.Tx, key string) (int, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if tx == nil {
		return b2i(db.rows[key]), nil
	}
	x := tx.(*fakeTx)
	seen := db.rows
	if x.cfg.Isolation >= sql.LevelRepeatableRead && db.m != "read-committed-always" {
		if x.snap == nil {
			x.snap = maps.Clone(db.rows)
		}
		seen = x.snap
	}
	n := b2i(seen[key])
	for _, o := range x.ops {
		if !o.claim && o.key == key {
			n = 1
		}
	}
	return n, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Claim claims key in the unit's transaction, waiting while another open
// transaction holds it.
func (db *fakeDB) Claim(ctx context.Context, key mb.InboxKey) (bool, error) {
	if db.m == "inbox-no-unit" {
		if _, err := mb.TxFrom(ctx); err != nil {
			return true, nil
		}
	}
	tx, err := mb.TxFrom(ctx)
	if err != nil {
		return false, err
	}
	x := tx.(*fakeTx)
	switch db.m {
	case "inbox-ignore-source":
		key.Source = ""
	case "inbox-case-fold":
		key.MessageID = strings.ToLower(key.MessageID)
	case "inbox-never-dup":
		return true, nil
	}
	k := key.String()
	db.mu.Lock()
	defer db.mu.Unlock()
	for {
		if db.claims[k] {
			return false, nil
		}
		h := db.held[k]
		if h == nil || h == x {
			break
		}
		switch db.m {
		case "inbox-no-wait":
			return true, nil
		case "inbox-in-flight":
			return false, fmt.Errorf("%w: fake", mb.ErrInFlight)
		}
		db.waiting++
		db.mu.Unlock()
		select {
		case <-h.done:
		case <-ctx.Done():
		}
		db.mu.Lock()
		db.waiting--
		if err := ctx.Err(); err != nil {
			return false, err
		}
	}
	if db.m == "inbox-outside-tx" {
		db.claims[k] = true
		return true, nil
	}
	db.held[k] = x
	x.ops = append(x.ops, op{claim: true, key: k})
	return true, nil
}

func (db *fakeDB) blocked(context.Context) (bool, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.waiting > 0, nil
}

// fakeHarness opens fake stores with defect m.
func fakeHarness(m string) mbstoretest.Harness {
	return mbstoretest.Harness{
		Open: func(t *testing.T, cfg mbstoretest.Config) mbstoretest.Store {
			db := &fakeDB{m: m, rows: map[string]bool{}, claims: map[string]bool{}, held: map[string]*fakeTx{}}
			return mbstoretest.Store{
				Transactor: fakeTransactor{db, cfg},
				Inbox:      db,
				Insert:     db.insert,
				Count:      db.count,
				Blocked:    db.blocked,
			}
		},
		ReadOnly:  true,
		Isolation: []sql.IsolationLevel{sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable},
	}
}
