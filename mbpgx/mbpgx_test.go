package mbpgx

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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/testenv"
	"github.com/mb-go/mb/mbstoretest"
	"github.com/mb-go/mb/mbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// env is one test's pool and schema, which holds the suite's rows table
// and an inbox table, dropped at the end of the test.
type env struct {
	pool   *pgxpool.Pool
	schema string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	u := testenv.PostgresURL()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.New(ctx, u)
	if err == nil {
		err = pool.Ping(ctx)
		if err != nil {
			pool.Close()
		}
	}
	if err != nil {
		testenv.Unavailable(t, "PostgreSQL at %s is unreachable (%v); set %s to a reachable one", u, err, testenv.PostgresURLVar)
	}
	t.Cleanup(pool.Close)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	e := &env{pool: pool, schema: "mbtest_" + hex.EncodeToString(b)}
	e.exec(t, "CREATE SCHEMA "+e.schema)
	t.Cleanup(func() {
		if _, err := pool.Exec(context.Background(), "DROP SCHEMA "+e.schema+" CASCADE"); err != nil {
			t.Errorf("dropping the test's schema: %v", err)
		}
	})
	e.exec(t, "CREATE TABLE "+e.schema+".rows (k text PRIMARY KEY)")
	if err := e.newInbox(t, e.transactor(t, nil), "").Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) exec(t *testing.T, stmt string) {
	t.Helper()
	if _, err := e.pool.Exec(context.Background(), stmt); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

func (e *env) transactor(t *testing.T, o *Options) *Transactor {
	t.Helper()
	tr, err := New(e.pool, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func (e *env) newInbox(t *testing.T, tr *Transactor, table string) *Inbox {
	t.Helper()
	if table == "" {
		table = e.schema + ".mb_inbox"
	}
	in, err := NewInbox(tr, &InboxOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

func pgxTx(t mb.Tx) (pgx.Tx, error) {
	x, ok := t.(*tx)
	if !ok {
		return nil, fmt.Errorf("a %T is not an mbpgx transaction", t)
	}
	return x.pgx, nil
}

func (e *env) insert(ctx context.Context, t mb.Tx, key string) error {
	ptx, err := pgxTx(t)
	if err == nil {
		_, err = ptx.Exec(ctx, "INSERT INTO "+e.schema+".rows (k) VALUES ($1)", key)
	}
	return err
}

func (e *env) count(ctx context.Context, t mb.Tx, key string) (int, error) {
	q := "SELECT count(*) FROM " + e.schema + ".rows WHERE k = $1"
	var n int
	if t == nil {
		return n, e.pool.QueryRow(ctx, q, key).Scan(&n)
	}
	ptx, err := pgxTx(t)
	if err != nil {
		return 0, err
	}
	return n, ptx.QueryRow(ctx, q, key).Scan(&n)
}

func (e *env) blocked(ctx context.Context) (bool, error) {
	var n int
	err := e.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", "%"+e.schema+"%").Scan(&n)
	return n > 0, err
}

// pgxLevel is the pgx isolation level of a database/sql one.
func pgxLevel(t *testing.T, l sql.IsolationLevel) pgx.TxIsoLevel {
	switch l {
	case sql.LevelDefault:
		return ""
	case sql.LevelReadCommitted:
		return pgx.ReadCommitted
	case sql.LevelRepeatableRead:
		return pgx.RepeatableRead
	case sql.LevelSerializable:
		return pgx.Serializable
	}
	t.Fatalf("no pgx level for %v", l)
	return ""
}

func TestConformance(t *testing.T) {
	e := newEnv(t)
	h := mbstoretest.Harness{
		Open: func(t *testing.T, cfg mbstoretest.Config) mbstoretest.Store {
			tr := e.transactor(t, &Options{Isolation: pgxLevel(t, cfg.Isolation), ReadOnly: cfg.ReadOnly})
			return mbstoretest.Store{Transactor: tr, Inbox: e.newInbox(t, tr, ""), Insert: e.insert, Count: e.count, Blocked: e.blocked}
		},
		ReadOnly:  true,
		Isolation: []sql.IsolationLevel{sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable},
	}
	t.Run("Transactor", func(t *testing.T) { mbstoretest.RunTransactor(t, h) })
	t.Run("Inbox", func(t *testing.T) { mbstoretest.RunInbox(t, h) })
}

// Bad arguments are refused at once, all problems together.
func TestNewErrors(t *testing.T) {
	_, err := New(nil, &Options{Isolation: "snapshot"})
	wantErr(t, "New(nil, snapshot)", err, mb.ErrInvalidArgument, "pool is nil", `Options.Isolation is "snapshot"`)
	_, err = NewInbox(nil, &InboxOptions{Table: "a.b.c"})
	wantErr(t, "NewInbox(nil, a.b.c)", err, mb.ErrInvalidArgument, "Transactor is nil", "InboxOptions.Table")
	if err := (&Options{Isolation: pgx.Serializable, ReadOnly: true}).Validate(); err != nil {
		t.Error(err)
	}
}

func wantErr(t *testing.T, what string, err, target error, words ...string) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s = %v, want an error wrapping %v", what, err, target)
		return
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s = %v, want it to mention %q", what, err, w)
		}
	}
}

// A handler reaches its pgx.Tx in one call; another Transactor, or one over another pool, is refused;
// savepoint names no identifier holds are refused.
func TestTxAccessor(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := Tx(ctx); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Errorf("Tx outside a unit = %v", err)
	}
	tr := e.transactor(t, nil)
	in := e.newInbox(t, tr, "")
	type insert struct{ K string }
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c insert) error {
		ptx, err := Tx(ctx)
		if err != nil {
			return err
		}
		if again, _ := Tx(ctx); again != ptx {
			return errors.New("a second Tx returned another pgx.Tx")
		}
		_, err = ptx.Exec(ctx, "INSERT INTO "+e.schema+".rows (k) VALUES ($1)", c.K)
		return err
	})
	if err := mb.Exec(ctx, bus, insert{"a"}); err != nil {
		t.Fatal(err)
	}
	if n, err := e.count(ctx, nil, "a"); n != 1 || err != nil {
		t.Fatalf("count = %d, %v", n, err)
	}

	foreign := mb.New(&mb.Options{Transactor: &mbtest.Transactor{}})
	mb.HandleCommandNoResult(foreign, func(ctx context.Context, c insert) error {
		_, err := Tx(ctx)
		wantErr(t, "Tx with an mbtest.Transactor", err, ErrForeignTx, "mbtest.Tx")
		return nil
	})
	if err := mb.Exec(ctx, foreign, insert{}); err != nil {
		t.Fatal(err)
	}
	other := newEnv(t)
	otherBus := mb.New(&mb.Options{Transactor: other.transactor(t, nil)})
	mb.HandleCommandNoResult(otherBus, func(ctx context.Context, c insert) error {
		_, err := in.Claim(ctx, mb.InboxKey{MessageID: "x"})
		return err
	})
	wantErr(t, "Claim in a unit of another pool", mb.Exec(ctx, otherBus, insert{}), ErrForeignTx, "another pool")

	x, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Rollback(ctx)
	for _, name := range []string{"", "a\x00b"} {
		if err := x.(mb.Savepointer).Savepoint(ctx, name); !errors.Is(err, mb.ErrInvalidArgument) {
			t.Errorf("Savepoint(%q) = %v", name, err)
		}
	}
}

// IsConflict recognises a real serialization failure, and no other
// error.
func TestIsConflict(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	tr := e.transactor(t, &Options{Isolation: pgx.Serializable})
	a, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Rollback(ctx)
	b, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Rollback(ctx)
	// Write skew: each reads what the other writes.
	for _, x := range []mb.Tx{a, b} {
		if _, err := e.count(ctx, x, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.insert(ctx, a, "x"); err != nil {
		t.Fatal(err)
	}
	err = e.insert(ctx, b, "y")
	if err == nil {
		_, err = e.count(ctx, b, "x")
	}
	if err == nil {
		if err = a.Commit(ctx); err == nil {
			err = b.Commit(ctx)
		}
	}
	if !tr.IsConflict(fmt.Errorf("wrapped: %w", err)) {
		t.Fatalf("IsConflict(%v) = false", err)
	}
	for _, other := range []error{nil, errors.New("x"), context.Canceled, pgx.ErrTxCommitRollback} {
		if tr.IsConflict(other) {
			t.Errorf("IsConflict(%v) = true", other)
		}
	}
}

// Migrate is idempotent; Cleanup deletes, in batches, the rows received
// before the given time.
func TestMigrateAndCleanup(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	in := e.newInbox(t, e.transactor(t, nil), e.schema+".cleanup")
	for range 2 {
		if err := in.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := strings.Join(in.Schema(), ";"); !strings.Contains(s, `"cleanup_received_at"`) {
		t.Errorf("Schema() = %q", s)
	}
	t0 := time.Now().Add(-time.Hour)
	b := &pgx.Batch{}
	for i := range 2501 {
		at := t0.Add(-time.Hour)
		if i == 2500 {
			at = t0.Add(time.Minute)
		}
		b.Queue(in.st.Claim, in.st.ClaimArgs(mb.InboxKey{MessageID: fmt.Sprint(i)}, at)...)
	}
	if err := e.pool.SendBatch(ctx, b).Close(); err != nil {
		t.Fatal(err)
	}
	if n, err := in.Cleanup(ctx, t0.Add(-2*time.Hour)); n != 0 || err != nil {
		t.Fatalf("Cleanup before every row = %d, %v", n, err)
	}
	if n, err := in.Cleanup(ctx, t0); n != 2500 || err != nil {
		t.Fatalf("Cleanup = %d, %v; want 2500", n, err)
	}
}
