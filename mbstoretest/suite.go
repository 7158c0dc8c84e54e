// Package mbstoretest is the conformance suite of mb's transactional
// stores: every [mb.Transactor] runs [RunTransactor], and every
// transactional [mb.Inbox] runs [RunInbox], against a real database. An
// adapter's test calls them with a [Harness]:
//
//	func TestConformance(t *testing.T) {
//		h := mbstoretest.Harness{Open: openStore, ReadOnly: true}
//		t.Run("Transactor", func(t *testing.T) { mbstoretest.RunTransactor(t, h) })
//		t.Run("Inbox", func(t *testing.T) { mbstoretest.RunInbox(t, h) })
//	}
//
// The suite writes and counts test rows through the harness's
// [Store.Insert] and [Store.Count], in a table of the harness's choosing
// with a unique key column, and runs units of work on an [mb.Bus] whose
// Transactor is the store's. Each subtest opens a store of its own
// ([Harness.Open]) and uses keys of its own, so a harness may give every
// store a fresh schema, table prefix or file, or share one table.
//
// RunTransactor's subtests: Commit, RollbackError, RollbackPanic,
// RollbackBeforeCommit, NestedRollback, NestedBegin, SavepointNames, Lazy,
// Concurrent, ReadOnly (when [Harness.ReadOnly]) and Isolation/<level>
// (one per level of [Harness.Isolation]). RunInbox's: ClaimCommit,
// ClaimRollback, KeyFields, ClaimOutsideUnit, ConcurrentCommit,
// ConcurrentRollback and ConsumerDuplicate. Run one with
// -run 'TestX/Transactor/Commit'.
//
// The suite never sleeps to wait: it waits for what it expects (a
// goroutine's result, a claim that blocks, a handled message) within
// [Harness.Wait], which only bounds waiting and is no timing assertion.
package mbstoretest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// Store is one store under test, as [Harness.Open] returns it.
type Store struct {
	// Transactor begins the transactions of the units of work. Required.
	Transactor mb.Transactor
	// Inbox is an inbox in the Transactor's database. Required by
	// RunInbox.
	Inbox mb.Inbox
	// Insert writes a test row with key through tx, a transaction the
	// Transactor began; the key is unique (a second row with the same key
	// need not be possible). Required.
	Insert func(ctx context.Context, tx mb.Tx, key string) error
	// Count returns the number of test rows with key (0 or 1) that tx
	// sees, or, with a nil tx, that are committed, read outside any open
	// transaction (another connection, or a transaction of its own).
	// Required.
	Count func(ctx context.Context, tx mb.Tx, key string) (int, error)
	// Blocked, if set, reports whether a claim of the Inbox waits for a
	// lock another transaction holds. The concurrent subtests call it,
	// with pauses growing to 200ms, until it reports true before they end the first claim's transaction, so
	// that the second claim really overlaps it. Without it they cannot
	// tell, and the second claim may also run after the first unit ended
	// (the subtests still pass or fail on the outcome).
	Blocked func(ctx context.Context) (bool, error)
}

// Config is how [Harness.Open] opens a store's Transactor.
type Config struct {
	// Isolation is the isolation level of its transactions
	// (sql.LevelDefault: the database's default).
	Isolation sql.IsolationLevel
	// ReadOnly makes its transactions read-only.
	ReadOnly bool
}

// Harness opens stores for the suite.
type Harness struct {
	// Open returns a new store configured as cfg says, ready to use
	// (tables created), and releases it at the end of t (t.Cleanup). It
	// fails t when it cannot. Called once or more per subtest, from
	// several subtests in parallel only if the caller runs them so.
	Open func(t *testing.T, cfg Config) Store
	// ReadOnly declares that the Transactor honours Config.ReadOnly: a
	// write in a read-only unit fails. The ReadOnly subtest runs only
	// then.
	ReadOnly bool
	// Isolation lists the isolation levels whose difference the database
	// can show with one reader and one writer that does not wait for the
	// reader: a unit counts a key, another transaction inserts it and
	// commits, and the unit counts again. The levels below
	// sql.LevelRepeatableRead must see the new row, the others must not.
	// Leave out levels under which the writer waits for the reader
	// (MariaDB's SERIALIZABLE).
	Isolation []sql.IsolationLevel
	// Wait bounds every wait of the suite. Zero means 10s.
	Wait time.Duration
}

const defaultWait = 10 * time.Second

type suite struct {
	h    Harness
	wait time.Duration
}

type testCase struct {
	name string
	run  func(t *testing.T)
}

func newSuite(t *testing.T, h Harness) *suite {
	t.Helper()
	if h.Open == nil {
		t.Fatal("mbstoretest: Harness.Open is nil: set it to a function that opens a store")
	}
	s := &suite{h: h, wait: h.Wait}
	if s.wait <= 0 {
		s.wait = defaultWait
	}
	return s
}

func runAll(t *testing.T, tests []testCase) {
	for _, tc := range tests {
		t.Run(tc.name, tc.run)
	}
}

// open opens a store and checks the fields every subtest needs.
func (s *suite) open(t *testing.T, cfg Config) Store {
	t.Helper()
	st := s.h.Open(t, cfg)
	if st.Transactor == nil || st.Insert == nil || st.Count == nil {
		t.Fatal("mbstoretest: Harness.Open returned a Store without Transactor, Insert or Count")
	}
	return st
}

// setup opens a store, a context for the subtest and a bus over the
// store's Transactor that runs the suite's units.
func (s *suite) setup(t *testing.T, cfg Config) (Store, context.Context, *mb.Bus) {
	t.Helper()
	st := s.open(t, cfg)
	bus := newBus(t, st.Transactor)
	handleCmd(bus)
	return st, s.ctx(t), bus
}

// ctx returns a context bounded by the suite's wait, cancelled at the end
// of t.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	t.Cleanup(cancel)
	return ctx
}

// key returns a key unique to this run of the subtest.
func key(t *testing.T, what string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return strings.ToLower(name) + "-" + what + "-" + hex.EncodeToString(b)
}

// newBus returns a bus with the store's Transactor whose event handler
// errors fail t.
func newBus(t *testing.T, tr mb.Transactor) *mb.Bus {
	return mb.New(&mb.Options{
		Transactor:   tr,
		ErrorHandler: func(_ context.Context, err error) { t.Errorf("bus error handler: %v", err) },
	})
}

// insert writes key through the transaction of ctx's unit of work.
func (st Store) insert(ctx context.Context, key string) error {
	tx, err := mb.TxFrom(ctx)
	if err != nil {
		return err
	}
	return st.Insert(ctx, tx, key)
}

// count counts key through the transaction of ctx's unit of work.
func (st Store) count(ctx context.Context, key string) (int, error) {
	tx, err := mb.TxFrom(ctx)
	if err != nil {
		return 0, err
	}
	return st.Count(ctx, tx, key)
}

// wantCommitted checks how many rows with each key are committed.
func (st Store) wantCommitted(t *testing.T, ctx context.Context, want map[string]int) {
	t.Helper()
	for k, w := range want {
		n, err := st.Count(ctx, nil, k)
		if err != nil {
			t.Fatalf("Count(%q) outside any transaction: %v", k, err)
		}
		if n != w {
			t.Errorf("%d committed rows with key %q, want %d", n, k, w)
		}
	}
}

// result is what a goroutine of a subtest reports.
type result struct {
	ok  bool
	err error
}

// await waits for a goroutine's result within the suite's wait.
func (s *suite) await(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(s.wait):
		t.Fatalf("waited %v for %s", s.wait, what)
		panic("unreachable")
	}
}

// cmd is the command of the suite's units of work: its handler is run.
type cmd struct {
	run func(ctx context.Context) error
}

// handleCmd registers the handler of cmd on bus.
func handleCmd(bus *mb.Bus) {
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c cmd) error { return c.run(ctx) })
}

// unit runs fn in a unit of work of bus and returns Send's error.
func unit(ctx context.Context, bus *mb.Bus, fn func(ctx context.Context) error) error {
	return mb.Exec(ctx, bus, cmd{fn})
}

var errPlanned = errors.New("mbstoretest: the planned failure of a unit")

func levelName(l sql.IsolationLevel) string {
	return strings.ReplaceAll(l.String(), " ", "")
}

// waitBlocked waits until st.Blocked reports a blocked claim, when the
// store has the hook.
func (s *suite) waitBlocked(t *testing.T, st Store, done <-chan result) {
	t.Helper()
	if st.Blocked == nil {
		return
	}
	ctx := s.ctx(t)
	// The pause grows to 200ms: MariaDB refreshes its view of waiting
	// transactions only when it was not read for 100ms.
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		b, err := st.Blocked(ctx)
		if err != nil {
			t.Fatalf("Store.Blocked: %v", err)
		}
		if b {
			return
		}
		select {
		case r := <-done:
			t.Fatalf("the second claim returned (%v, %v) while the first unit was open: it must wait for that unit's outcome", r.ok, r.err)
		case <-ctx.Done():
			t.Fatalf("the second claim did not block within %v", s.wait)
		case <-time.After(pause):
		}
	}
}

// must fails t with err, if any, prefixed by what.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// errorf makes the error a handler returns when a check inside it fails.
func errorf(format string, args ...any) error {
	return fmt.Errorf("mbstoretest: "+format, args...)
}
