package bench

// Units of work on a real PostgreSQL: what a transaction per unit costs
// when handlers do not touch the database, and when only the command does.

import (
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"sync"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/testenv"
)

const (
	envPostgresURL     = "MB_TEST_POSTGRES_URL"
	defaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
)

// sqlTransactor is a minimal mb.Transactor over database/sql.
type sqlTransactor struct{ db *sql.DB }

func (t sqlTransactor) Begin(ctx context.Context) (mb.Tx, error) {
	tx, err := t.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return sqlTx{tx}, nil
}

type sqlTx struct{ tx *sql.Tx }

func (t sqlTx) Commit(context.Context) error   { return t.tx.Commit() }
func (t sqlTx) Rollback(context.Context) error { return t.tx.Rollback() }

// txOf returns the *sql.Tx of ctx's unit of work, or nil.
func txOf(ctx context.Context) *sql.Tx {
	// TxFrom is called through reflection so that this file builds against
	// both of its signatures, (Tx, bool) and (Tx, error): the benchmark
	// compares binaries from before and after that change.
	out := reflect.ValueOf(mb.TxFrom).Call([]reflect.Value{reflect.ValueOf(ctx)})
	tx, _ := out[0].Interface().(sqlTx)
	return tx.tx
}

var pg struct {
	once sync.Once
	db   *sql.DB
	err  error
}

// postgres returns the shared database of the benchmarks, with an empty
// table mb_bench_users.
func postgres(tb testing.TB) *sql.DB {
	tb.Helper()
	pg.once.Do(func() {
		u := testenv.URL(envPostgresURL, defaultPostgresURL)
		db, err := sql.Open("pgx", u)
		if err == nil {
			err = db.Ping()
		}
		if err != nil {
			pg.err = fmt.Errorf("PostgreSQL at %s is unreachable (%v); set %s", u, err, envPostgresURL)
			return
		}
		db.SetMaxIdleConns(8)
		_, pg.err = db.Exec(`CREATE TABLE IF NOT EXISTS mb_bench_users (id bigserial PRIMARY KEY, name text NOT NULL)`)
		pg.db = db
	})
	if pg.err != nil {
		testenv.Unavailable(tb, "%v", pg.err)
	}
	if _, err := pg.db.Exec(`TRUNCATE mb_bench_users`); err != nil {
		tb.Fatal(err)
	}
	return pg.db
}

// closePostgres closes the shared database, if it was opened.
func closePostgres() {
	if pg.db != nil {
		_ = pg.db.Close()
	}
}

// newTxBus returns a bus with a PostgreSQL transactor, a CreateUser handler
// that inserts a row when write is set, and three UserCreated handlers
// that do not touch the database.
func newTxBus(tb testing.TB, write bool) *mb.Bus {
	db := postgres(tb)
	bus := mb.New(&mb.Options{Transactor: sqlTransactor{db}, ErrorHandler: func(_ context.Context, err error) { tb.Error(err) }})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		if write {
			tx := txOf(ctx)
			if tx == nil {
				return User{}, fmt.Errorf("no transaction")
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO mb_bench_users (name) VALUES ($1)`, c.Username); err != nil {
				return User{}, err
			}
		}
		return User{c.Username, c.Email}, mb.Emit(ctx, UserCreated{c.Username, c.Email})
	})
	for i := range 3 {
		mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error { return nil }, mb.WithName(fmt.Sprint("h", i)))
	}
	return bus
}

func TestTxBench(t *testing.T) {
	for _, write := range []bool{false, true} {
		bus := newTxBus(t, write)
		if _, err := mb.Send[User](context.Background(), bus, CreateUser{Username: "u", Email: "e"}); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := pg.db.QueryRow(`SELECT count(*) FROM mb_bench_users`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{false: 0, true: 1}[write]; n != want {
			t.Fatalf("write=%v: %d rows, want %d", write, n, want)
		}
	}
}

// BenchmarkTxPublish: one event to three handlers that do not touch the
// database, on a bus with a PostgreSQL transactor.
func BenchmarkTxPublish(b *testing.B) {
	bus := newTxBus(b, false)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := mb.Publish(ctx, bus, UserCreated{"u", "e"}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTxSendWrite: a command that inserts a row and emits one event
// to three handlers that do not touch the database.
func BenchmarkTxSendWrite(b *testing.B) {
	bus := newTxBus(b, true)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mb.Send[User](ctx, bus, CreateUser{Username: "u", Email: "e"}); err != nil {
			b.Fatal(err)
		}
	}
}
