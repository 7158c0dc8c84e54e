package mbsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

var dialects = []Dialect{Postgres, MySQL, SQLite}

// Bad arguments are refused at once, all problems together, each naming
// the fix.
func TestNewErrors(t *testing.T) {
	_, err := New(nil, Dialect(0), &Options{Isolation: 42})
	wantErr(t, "New(nil, 0, Isolation 42)", err, mb.ErrInvalidArgument, "*sql.DB is nil", "unknown dialect", "Options.Isolation is 42")
	db, err := sql.Open("sqlite", ":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	for _, tc := range []struct {
		d     Dialect
		level sql.IsolationLevel
		ok    bool
	}{
		{Postgres, sql.LevelSnapshot, true},
		{Postgres, sql.LevelLinearizable, false},
		{MySQL, sql.LevelReadUncommitted, true},
		{MySQL, sql.LevelSnapshot, false},
		{SQLite, sql.LevelSerializable, true},
		{SQLite, sql.LevelReadCommitted, false},
		{SQLite, sql.LevelWriteCommitted, false},
	} {
		_, err := New(db, tc.d, &Options{Isolation: tc.level})
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, mb.ErrInvalidArgument) {
			t.Errorf("New(%v, %v) = %v, want ok=%v", tc.d, tc.level, err, tc.ok)
		}
	}
	tr, err := New(db, SQLite, nil)
	if err != nil || tr.DB() != db || tr.Dialect() != SQLite || tr.Dialect().String() != "SQLite" {
		t.Fatalf("New(db, SQLite, nil) = %v, %v", tr, err)
	}

	_, err = NewInbox(nil, &InboxOptions{Table: "bad name"})
	wantErr(t, "NewInbox(nil, bad name)", err, mb.ErrInvalidArgument, "Transactor is nil", "InboxOptions.Table")
	for _, table := range []string{"main.mb_inbox", "x;y", "1x", strings.Repeat("t", 60)} {
		_, err = NewInbox(tr, &InboxOptions{Table: table})
		wantErr(t, "NewInbox(SQLite, "+table+")", err, mb.ErrInvalidArgument, "InboxOptions.Table")
	}
	if err := (&InboxOptions{Table: "app.inbox"}).Validate(); err != nil {
		t.Errorf("Validate of a qualified name: %v", err)
	}
	if _, err := NewInbox(tr, nil); err != nil {
		t.Errorf("NewInbox with the defaults: %v", err)
	}
}

// Tx outside a unit, and with another Transactor, fails clearly; so does
// an Inbox whose Transactor is over another database.
func TestTxErrors(t *testing.T) {
	if _, err := Tx(context.Background()); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Errorf("Tx outside a unit = %v, want ErrNoUnitOfWork", err)
	}
	e := newEnv(t, SQLite)
	tr := e.transactor(t, nil)
	in := e.newInbox(t, tr, "")
	bus := mb.New(&mb.Options{Transactor: &mbtest.Transactor{}})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c struct{ N int }) error {
		_, err := Tx(ctx)
		wantErr(t, "Tx with an mbtest.Transactor", err, ErrForeignTx, "mbtest.Tx")
		_, err = in.Claim(ctx, mb.InboxKey{MessageID: "x"})
		wantErr(t, "Claim with an mbtest.Transactor", err, ErrForeignTx)
		return nil
	})
	if err := mb.Exec(context.Background(), bus, struct{ N int }{}); err != nil {
		t.Fatal(err)
	}

	other := newEnv(t, SQLite)
	otherBus := mb.New(&mb.Options{Transactor: other.transactor(t, nil)})
	mb.HandleCommandNoResult(otherBus, func(ctx context.Context, c struct{ N int }) error {
		_, err := in.Claim(ctx, mb.InboxKey{MessageID: "x"})
		return err
	})
	err := mb.Exec(context.Background(), otherBus, struct{ N int }{})
	wantErr(t, "Claim in a unit of another database", err, ErrForeignTx, "another *sql.DB")
}

// wrapped is a Tx of a decorating Transactor.
// A handler reaches its *sql.Tx in one call,
// the same one throughout the unit.
func TestTxAccessor(t *testing.T) {
	e := newEnv(t, SQLite)
	bus := mb.New(&mb.Options{Transactor: e.transactor(t, nil)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c struct{ K string }) error {
		tx, err := Tx(ctx)
		if err != nil {
			return err
		}
		again, err := Tx(ctx)
		if err != nil || again != tx {
			return fmt.Errorf("a second Tx returned %p, %v; want the same *sql.Tx %p", again, err, tx)
		}
		_, err = tx.ExecContext(ctx, "INSERT INTO rows (k) VALUES (?)", c.K)
		return err
	})
	if err := mb.Exec(context.Background(), bus, struct{ K string }{"a"}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.count(context.Background(), nil, "a"); err != nil || n != 1 {
		t.Fatalf("count = %d, %v", n, err)
	}
}

// Savepoint names that no identifier can hold are refused before any SQL.
func TestSavepointBadNames(t *testing.T) {
	e := newEnv(t, SQLite)
	ctx := context.Background()
	tx, err := e.transactor(t, nil).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	sp := tx.(mb.Savepointer)
	for _, name := range []string{"", "a\x00b", "\xff"} {
		if err := sp.Savepoint(ctx, name); !errors.Is(err, mb.ErrInvalidArgument) {
			t.Errorf("Savepoint(%q) = %v, want ErrInvalidArgument", name, err)
		}
	}
}

// A read-only SQLite unit leaves its connection writable: with one
// connection in the pool, the next read-write unit writes on it.
func TestSQLiteReadOnlyResets(t *testing.T) {
	e := newEnv(t, SQLite)
	e.db.SetMaxOpenConns(1)
	ctx := context.Background()
	ro := e.transactor(t, &Options{ReadOnly: true})
	rw := e.transactor(t, nil)
	for i := range 2 {
		tx, err := ro.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.insert(ctx, tx, "ro"); err == nil || !strings.Contains(err.Error(), "readonly") {
			t.Fatalf("a write in a read-only transaction: %v", err)
		}
		end := tx.Commit
		if i == 1 {
			end = tx.Rollback
		}
		if err := end(ctx); err != nil {
			t.Fatal(err)
		}
		tx, err = rw.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.insert(ctx, tx, fmt.Sprint("rw", i)); err != nil {
			t.Fatalf("a write after a read-only transaction: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// Migrate is idempotent, Schema holds the configured names, and Cleanup
// deletes the rows received before the given time, in batches, after
// which their keys can be claimed again.
func TestMigrateAndCleanup(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, d)
			ctx := context.Background()
			tr := e.transactor(t, nil)
			table := "cleanup_inbox"
			if e.space != "" {
				table = e.space + ".cleanup_inbox"
			}
			in := e.newInbox(t, tr, table)
			for range 2 {
				if err := in.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if s := strings.Join(in.Schema(), ";"); !strings.Contains(s, "cleanup_inbox") || strings.Contains(s, "mb_inbox") {
				t.Errorf("Schema() = %q", s)
			}
			// 2500 old rows (three batches) and one new, written directly.
			t0 := time.Now().Add(-time.Hour)
			tx, err := e.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 2501 {
				at := t0.Add(-time.Hour)
				if i == 2500 {
					at = t0.Add(time.Minute)
				}
				k := mb.InboxKey{Group: "g", Handler: "h", Source: "s", MessageID: fmt.Sprint(i)}
				if _, err := tx.ExecContext(ctx, in.st.Claim, in.st.ClaimArgs(k, at)...); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(); err != nil {
				t.Fatal(err)
			}
			if n, err := in.Cleanup(ctx, t0.Add(-2*time.Hour)); err != nil || n != 0 {
				t.Fatalf("Cleanup before every row = %d, %v; want 0", n, err)
			}
			if n, err := in.Cleanup(ctx, t0); err != nil || n != 2500 {
				t.Fatalf("Cleanup = %d, %v; want 2500", n, err)
			}
			bus := mb.New(&mb.Options{Transactor: tr})
			type claimCmd struct{ ID string }
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c claimCmd) error {
				ok, err := in.Claim(ctx, mb.InboxKey{Group: "g", Handler: "h", Source: "s", MessageID: c.ID})
				if err == nil && ok != (c.ID == "0") {
					err = fmt.Errorf("Claim of %s after the cleanup = %v", c.ID, ok)
				}
				return err
			})
			for _, id := range []string{"0", "2500"} {
				if err := mb.Exec(ctx, bus, claimCmd{id}); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// fakeErr is a driver error with a SQLSTATE and a code.
type fakeErr struct {
	state string
	code  int
}

func (e fakeErr) Error() string    { return "fake " + e.state }
func (e fakeErr) SQLState() string { return e.state }
func (e fakeErr) Code() int        { return e.code }

// IsConflict tells each dialect's conflicts from its other errors, also
// when wrapped.
func TestIsConflictErrors(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("mb: commit: %w", err) }
	for _, tc := range []struct {
		d    Dialect
		err  error
		want bool
	}{
		{Postgres, fakeErr{state: "40001"}, true},
		{Postgres, wrap(fakeErr{state: "40P01"}), true},
		{Postgres, fakeErr{state: "23505"}, false},
		{Postgres, &mysql.MySQLError{Number: 1213}, false},
		{MySQL, &mysql.MySQLError{Number: 1213}, true},
		{MySQL, wrap(&mysql.MySQLError{Number: 1205}), true},
		{MySQL, &mysql.MySQLError{Number: 1020}, true},
		{MySQL, &mysql.MySQLError{Number: 1062}, false},
		{MySQL, fakeErr{state: "40001"}, false},
		{SQLite, fakeErr{code: 5}, true},
		{SQLite, wrap(fakeErr{code: 517}), true}, // SQLITE_BUSY_SNAPSHOT
		{SQLite, fakeErr{code: 6}, true},
		{SQLite, fakeErr{code: 19}, false}, // SQLITE_CONSTRAINT
		{SQLite, fmt.Errorf("x: %w", context.Canceled), false},
	} {
		tr := &Transactor{d: tc.d}
		if got := tr.IsConflict(tc.err); got != tc.want {
			t.Errorf("%v: IsConflict(%v) = %v", tc.d, tc.err, got)
		}
		if tr.IsConflict(nil) || tr.IsConflict(errors.New("other")) {
			t.Errorf("%v: IsConflict of nil or a plain error is true", tc.d)
		}
	}
}

// IsConflict recognises the conflicts each real database reports:
// PostgreSQL's serialization failure, MariaDB's deadlock and SQLite's
// stale snapshot.
func TestIsConflictReal(t *testing.T) {
	for _, d := range dialects {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, d)
			tr := e.transactor(t, &Options{Isolation: map[Dialect]sql.IsolationLevel{Postgres: sql.LevelSerializable}[d]})
			err := e.conflict(t, tr)
			if err == nil || !tr.IsConflict(err) {
				t.Fatalf("IsConflict(%v) = false, want true", err)
			}
			t.Logf("conflict: %v", err)
			// A unique violation is no conflict.
			ctx := context.Background()
			tx, _ := tr.Begin(ctx)
			defer tx.Rollback(ctx)
			if err := e.insert(ctx, tx, "dup"); err != nil {
				t.Fatal(err)
			}
			if err := e.insert(ctx, tx, "dup"); err == nil || tr.IsConflict(err) {
				t.Fatalf("a unique violation: IsConflict(%v) = true", err)
			}
		})
	}
}

// conflict makes two transactions of tr conflict and returns the error
// the losing one got.
func (e *env) conflict(t *testing.T, tr *Transactor) error {
	t.Helper()
	ctx := context.Background()
	begin := func() mb.Tx {
		tx, err := tr.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return tx
	}
	a, b := begin(), begin()
	// The survivor may hold locks the next statements would wait for.
	defer func() { _, _ = a.Rollback(ctx), b.Rollback(ctx) }()
	switch e.d {
	case Postgres:
		// Write skew under SERIALIZABLE: each reads what the other writes.
		for _, tx := range []mb.Tx{a, b} {
			if _, err := e.count(ctx, tx, "x"); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.insert(ctx, a, "x"); err != nil {
			t.Fatal(err)
		}
		if err := e.insert(ctx, b, "y"); err != nil {
			return err
		}
		if _, err := e.count(ctx, b, "x"); err != nil {
			return err
		}
		if err := a.Commit(ctx); err != nil {
			return err
		}
		return b.Commit(ctx)
	case MySQL:
		// A deadlock: each inserts its key, then the other's.
		if err := e.insert(ctx, a, "a"); err != nil {
			t.Fatal(err)
		}
		if err := e.insert(ctx, b, "b"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var errA error
		wg.Go(func() { errA = e.insert(ctx, a, "b") })
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		blocked := e.blocked()
		for pause := 5 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
			ok, err := blocked(wctx)
			if err != nil {
				t.Fatalf("waiting for the first insert to block: %v", err)
			}
			if ok {
				break
			}
			select {
			case <-wctx.Done():
			case <-time.After(pause):
			}
		}
		errB := e.insert(ctx, b, "a")
		wg.Wait()
		return errors.Join(errA, errB)
	default:
		// A stale snapshot: a reads, b writes and commits, a writes.
		if _, err := e.count(ctx, a, "x"); err != nil {
			t.Fatal(err)
		}
		if err := e.insert(ctx, b, "x"); err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		return e.insert(ctx, a, "y")
	}
}

// On SQLite a second claim of a key contends for the write lock the
// first claim's transaction holds: without a busy_timeout it fails at
// once with SQLITE_BUSY, a conflict, and never reports a wrong answer
// (with one, as in the conformance suite, it waits for the first
// transaction to end).
func TestSQLiteConcurrentClaimContends(t *testing.T) {
	db, err := sql.Open("sqlite", "file:"+t.TempDir()+"/busy.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB(db)
	ctx := context.Background()
	tr, err := New(db, SQLite, nil)
	if err != nil {
		t.Fatal(err)
	}
	in, err := NewInbox(tr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	key := mb.InboxKey{Group: "g", Handler: "h", Source: "s", MessageID: "1"}
	claim := func(x mb.Tx) (bool, error) {
		stx, err := sqlTx(x)
		if err != nil {
			return false, err
		}
		res, err := stx.ExecContext(ctx, in.st.Claim, in.st.ClaimArgs(key, time.Now())...)
		if err != nil {
			return false, err
		}
		n, err := res.RowsAffected()
		return n == 1, err
	}
	first, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx)
	if ok, err := claim(first); !ok || err != nil {
		t.Fatalf("first claim = %v, %v", ok, err)
	}
	second, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback(ctx)
	ok, err := claim(second)
	if err == nil || !tr.IsConflict(err) {
		t.Fatalf("second claim while the first is open = %v, %v; want SQLITE_BUSY", ok, err)
	}
}
