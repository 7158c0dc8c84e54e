package mbsql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
	"go.uber.org/goleak"
	_ "modernc.org/sqlite"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/testenv"
	"github.com/mb-go/mb/mbstoretest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// env is one test's database: a *sql.DB and a schema (PostgreSQL), a
// database (MariaDB) or a file (SQLite) of its own, holding the suite's
// rows table and an inbox table.
type env struct {
	db     *sql.DB
	d      Dialect
	space  string // the schema or database, "" for SQLite
	rows   string // the rows table, qualified
	inbox  string // the inbox table, qualified
	marker string // a string found in every statement on the env's tables
}

// ping checks that db answers within a few seconds.
func ping(db *sql.DB) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return db.PingContext(ctx)
}

// newEnv opens d's test database with a fresh schema, database or file,
// dropped at the end of t; it skips t when the server is unreachable.
func newEnv(t *testing.T, d Dialect) *env {
	t.Helper()
	e := &env{d: d}
	var err error
	switch d {
	case Postgres:
		u := testenv.PostgresURL()
		e.db, err = sql.Open("pgx", u)
		if err == nil {
			err = ping(e.db)
		}
		if err != nil {
			closeDB(e.db)
			testenv.Unavailable(t, "PostgreSQL at %s is unreachable (%v); set %s to a reachable one", u, err, testenv.PostgresURLVar)
		}
	case MySQL:
		u := testenv.MySQLURL()
		e.db, err = sql.Open("mysql", u)
		if err == nil {
			err = ping(e.db)
		}
		if err != nil {
			closeDB(e.db)
			testenv.Unavailable(t, "MariaDB at %s is unreachable (%v); set %s to a go-sql-driver/mysql DSN of a reachable one", u, err, testenv.MySQLURLVar)
		}
	case SQLite:
		e.db, err = sql.Open("sqlite", sqliteDSN(t))
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { closeDB(e.db) })
	ctx := context.Background()
	if d == SQLite {
		e.rows, e.inbox, e.marker = "rows", "mb_inbox", "mb_inbox"
	} else {
		e.space = "mbtest_" + randHex(6)
		e.rows, e.inbox, e.marker = e.space+".rows", e.space+".mb_inbox", e.space
		stmt := "CREATE SCHEMA " + e.space
		if d == MySQL {
			stmt = "CREATE DATABASE " + e.space
		}
		execT(t, e.db, stmt)
		t.Cleanup(func() {
			stmt := "DROP SCHEMA " + e.space + " CASCADE"
			if d == MySQL {
				stmt = "DROP DATABASE " + e.space
			}
			if _, err := e.db.ExecContext(ctx, stmt); err != nil {
				t.Errorf("dropping the test's %s: %v", e.space, err)
			}
		})
	}
	keyType := "text"
	if d == MySQL {
		keyType = "varchar(200)"
	}
	execT(t, e.db, "CREATE TABLE "+e.rows+" (k "+keyType+" PRIMARY KEY)")
	in := e.newInbox(t, e.transactor(t, nil), "")
	if err := in.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// sqliteDSN is a database file in t's temporary directory, in WAL mode,
// with a busy timeout long enough for any wait of the tests.
func sqliteDSN(t *testing.T) string {
	return "file:" + filepath.Join(t.TempDir(), "test.db") + "?_pragma=busy_timeout(20000)&_pragma=journal_mode(WAL)"
}

func closeDB(db *sql.DB) {
	if db != nil {
		_ = db.Close()
	}
}

func execT(t *testing.T, db *sql.DB, stmt string, args ...any) {
	t.Helper()
	if _, err := db.ExecContext(context.Background(), stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// transactor returns a Transactor of the env's database.
func (e *env) transactor(t *testing.T, o *Options) *Transactor {
	t.Helper()
	tr, err := New(e.db, e.d, o)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// newInbox returns an inbox of tr in table (the env's when "").
func (e *env) newInbox(t *testing.T, tr *Transactor, table string) *Inbox {
	t.Helper()
	if table == "" {
		table = e.inbox
	}
	in, err := NewInbox(tr, &InboxOptions{Table: table})
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// ph returns the n-th placeholder of the dialect.
func (e *env) ph(n int) string {
	if e.d == Postgres {
		return fmt.Sprint("$", n)
	}
	return "?"
}

// sqlTx returns the *sql.Tx of a transaction of this package.
func sqlTx(t mb.Tx) (*sql.Tx, error) {
	x, ok := t.(*tx)
	if !ok {
		return nil, fmt.Errorf("a %T is not an mbsql transaction", t)
	}
	return x.sql, nil
}

func (e *env) insert(ctx context.Context, tx mb.Tx, key string) error {
	stx, err := sqlTx(tx)
	if err != nil {
		return err
	}
	_, err = stx.ExecContext(ctx, "INSERT INTO "+e.rows+" (k) VALUES ("+e.ph(1)+")", key)
	return err
}

func (e *env) count(ctx context.Context, tx mb.Tx, key string) (int, error) {
	q := "SELECT count(*) FROM " + e.rows + " WHERE k = " + e.ph(1)
	var row *sql.Row
	if tx == nil {
		row = e.db.QueryRowContext(ctx, q, key)
	} else {
		stx, err := sqlTx(tx)
		if err != nil {
			return 0, err
		}
		row = stx.QueryRowContext(ctx, q, key)
	}
	var n int
	err := row.Scan(&n)
	return n, err
}

// blocked reports whether a statement on the env's tables waits for a
// lock; SQLite cannot tell (nil).
func (e *env) blocked() func(ctx context.Context) (bool, error) {
	var q string
	switch e.d {
	case Postgres:
		q = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1"
	case MySQL:
		q = "SELECT count(*) FROM information_schema.innodb_trx WHERE trx_state = 'LOCK WAIT' AND trx_query LIKE ?"
	default:
		return nil
	}
	return func(ctx context.Context) (bool, error) {
		var n int
		err := e.db.QueryRowContext(ctx, q, "%"+e.marker+"%").Scan(&n)
		return n > 0, err
	}
}

// harness returns the conformance harness of the env.
func (e *env) harness() mbstoretest.Harness {
	h := mbstoretest.Harness{
		Open: func(t *testing.T, cfg mbstoretest.Config) mbstoretest.Store {
			tr := e.transactor(t, &Options{Isolation: cfg.Isolation, ReadOnly: cfg.ReadOnly})
			return mbstoretest.Store{
				Transactor: tr,
				Inbox:      e.newInbox(t, tr, ""),
				Insert:     e.insert,
				Count:      e.count,
				Blocked:    e.blocked(),
			}
		},
		ReadOnly: true,
	}
	switch e.d {
	case Postgres:
		h.Isolation = []sql.IsolationLevel{sql.LevelReadCommitted, sql.LevelRepeatableRead, sql.LevelSerializable}
	case MySQL:
		// Under SERIALIZABLE the reader's plain SELECT locks what it
		// read, so the writer waits for it: not a test of one reader and
		// one writer that does not wait.
		h.Isolation = []sql.IsolationLevel{sql.LevelReadCommitted, sql.LevelRepeatableRead}
	case SQLite:
		h.Isolation = []sql.IsolationLevel{sql.LevelSerializable}
	}
	return h
}

// wantErr fails t unless err wraps target and mentions each of words.
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
