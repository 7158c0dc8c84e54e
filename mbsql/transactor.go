package mbsql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/sqlstore"
)

// Dialect is the SQL dialect of a database: it decides the statements of
// savepoints and of the inbox, which isolation levels exist, and which
// errors are conflicts (see [Transactor.IsConflict]).
type Dialect uint8

// The dialects. The zero Dialect is none: [New] refuses it.
const (
	// Postgres is PostgreSQL, through pgx's database/sql driver
	// (github.com/jackc/pgx/v5/stdlib) or another PostgreSQL driver whose
	// errors have a SQLState() string method.
	Postgres Dialect = Dialect(sqlstore.Postgres)
	// MySQL is MariaDB or MySQL through github.com/go-sql-driver/mysql.
	MySQL Dialect = Dialect(sqlstore.MySQL)
	// SQLite is SQLite through modernc.org/sqlite, or another SQLite
	// driver whose errors have a Code() int method.
	SQLite Dialect = Dialect(sqlstore.SQLite)
)

// String returns the dialect's name: "PostgreSQL", "MySQL" or "SQLite".
func (d Dialect) String() string { return sqlstore.Dialect(d).String() }

func (d Dialect) known() bool { return d == Postgres || d == MySQL || d == SQLite }

// Options configure a [Transactor]. The zero value, and a nil *Options,
// mean the defaults: transactions of the database's default isolation
// level that may write.
type Options struct {
	// Isolation is the isolation level of every transaction. Zero
	// (sql.LevelDefault) means the database's default: READ COMMITTED on
	// PostgreSQL, REPEATABLE READ on MariaDB and MySQL; SQLite's
	// transactions are always SERIALIZABLE. PostgreSQL takes
	// LevelReadUncommitted (which it runs as READ COMMITTED),
	// LevelReadCommitted, LevelRepeatableRead, LevelSnapshot (the same as
	// REPEATABLE READ there) and LevelSerializable; MariaDB and MySQL the
	// four standard levels; SQLite only LevelSerializable.
	Isolation sql.IsolationLevel
	// ReadOnly makes every transaction read-only: a write fails with the
	// database's error and fails the unit. On SQLite the transaction's
	// connection is put in query_only mode for the transaction's length.
	ReadOnly bool
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument]: an Isolation that database/sql does not define.
// The levels a dialect does not have are reported by [New].
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	if o.Isolation < sql.LevelDefault || o.Isolation > sql.LevelLinearizable {
		return fmt.Errorf("%w: mbsql: Options.Isolation is %d, not a sql.IsolationLevel; use one of the sql.Level constants", mb.ErrInvalidArgument, int(o.Isolation))
	}
	return nil
}

// checkDialect returns the problem of o for dialect d: an isolation level
// that d does not have.
func (o *Options) checkDialect(d Dialect) error {
	ok := true
	switch o.Isolation {
	case sql.LevelDefault, sql.LevelSerializable:
	case sql.LevelReadUncommitted, sql.LevelReadCommitted, sql.LevelRepeatableRead:
		ok = d != SQLite
	case sql.LevelSnapshot:
		ok = d == Postgres
	default:
		ok = false
	}
	if ok {
		return nil
	}
	return fmt.Errorf("%w: mbsql: Options.Isolation is %v, which %v does not have; see Options.Isolation for the levels of each dialect", mb.ErrInvalidArgument, o.Isolation, d)
}

// ErrForeignTx is wrapped by the error of [Tx] and of [Inbox.Claim] when
// the unit's transaction was not begun by a [Transactor] of this package
// (the bus's [mb.Options.Transactor] is another one), or by one over
// another *sql.DB than the Inbox's.
var ErrForeignTx = errors.New("mbsql: the unit's transaction is not one of this Transactor")

// Transactor is an [mb.Transactor] over a *sql.DB: set it as the bus's
// [mb.Options.Transactor], and each unit of work that asks for its
// transaction ([Tx], [mb.TxFrom]) gets a *sql.Tx of its own, begun with
// the unit's context and the Transactor's options, committed or rolled
// back with the unit. Its transactions implement [mb.Savepointer], so a
// nested unit that fails rolls back to its savepoint. A Transactor is safe
// for concurrent use; it does not own the *sql.DB, which the caller closes
// after the last unit has ended.
type Transactor struct {
	db  *sql.DB
	d   Dialect
	txo sql.TxOptions
	// queryOnly: SQLite read-only transactions, run on a connection in
	// query_only mode.
	queryOnly bool
}

var _ mb.Transactor = (*Transactor)(nil)

// New returns a Transactor over db in dialect d; opts may be nil. It
// returns every problem at once, each wrapping [mb.ErrInvalidArgument]: a
// nil db, an unknown dialect, invalid options ([Options.Validate]) and an
// isolation level the dialect does not have. New does not connect.
func New(db *sql.DB, d Dialect, opts *Options) (*Transactor, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	var errs []error
	if db == nil {
		errs = append(errs, fmt.Errorf("%w: mbsql.New: the *sql.DB is nil; open one with sql.Open", mb.ErrInvalidArgument))
	}
	if !d.known() {
		errs = append(errs, fmt.Errorf("%w: mbsql.New: unknown dialect %v; use mbsql.Postgres, mbsql.MySQL or mbsql.SQLite", mb.ErrInvalidArgument, d))
	}
	if err := o.Validate(); err != nil {
		errs = append(errs, err)
	} else if d.known() {
		if err := o.checkDialect(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t := &Transactor{db: db, d: d, txo: sql.TxOptions{Isolation: o.Isolation, ReadOnly: o.ReadOnly}}
	if d == SQLite {
		// SQLite drivers know no isolation levels; modernc.org/sqlite
		// begins a read-only transaction as a plain BEGIN even when the
		// DSN asks for BEGIN IMMEDIATE, so that it takes no write lock.
		t.txo.Isolation = sql.LevelDefault
		t.queryOnly = o.ReadOnly
	}
	return t, nil
}

// DB returns the database the Transactor begins its transactions in.
func (t *Transactor) DB() *sql.DB { return t.db }

// Dialect returns the Transactor's dialect.
func (t *Transactor) Dialect() Dialect { return t.d }

// Begin begins a transaction with ctx, for the bus's unit of work; it is
// called by the bus, not by handlers. database/sql rolls the transaction
// back when ctx is done before it ends.
func (t *Transactor) Begin(ctx context.Context) (mb.Tx, error) {
	if t.queryOnly {
		return t.beginQueryOnly(ctx)
	}
	stx, err := t.db.BeginTx(ctx, &t.txo)
	if err != nil {
		return nil, err
	}
	return &tx{sql: stx, t: t}, nil
}

// beginQueryOnly begins a read-only SQLite transaction on a connection of
// its own, switched to query_only mode until the transaction ends.
func (t *Transactor) beginQueryOnly(ctx context.Context) (mb.Tx, error) {
	conn, err := t.db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "PRAGMA query_only = ON"); err != nil {
		discardConn(conn)
		return nil, err
	}
	stx, err := conn.BeginTx(ctx, &t.txo)
	if err != nil {
		x := &tx{t: t, conn: conn}
		return nil, errors.Join(err, x.release(ctx))
	}
	return &tx{sql: stx, t: t, conn: conn}, nil
}

// discardConn closes conn's driver connection instead of returning it to
// the pool.
func discardConn(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// IsConflict reports whether err (from a statement, a commit or the unit
// that failed with it) says that the database gave up the transaction
// because of concurrent ones, so that running the unit again in a fresh
// transaction may succeed while retrying inside it cannot:
//
//   - PostgreSQL: SQLSTATE 40001 (serialization failure) and 40P01
//     (deadlock detected); PostgreSQL has aborted the transaction.
//   - MariaDB and MySQL: errors 1213 (deadlock; the transaction was rolled
//     back), 1205 (lock wait timeout; the statement was rolled back, or
//     the transaction with innodb_rollback_on_timeout, and what it waited
//     for is held by another transaction) and 1020 (MariaDB's "record has
//     changed since last read" under innodb_snapshot_isolation).
//   - SQLite: SQLITE_BUSY (another connection writes: the lock was not
//     granted within busy_timeout, or the transaction's snapshot is older
//     than a commit it would overwrite) and SQLITE_LOCKED, with their
//     extended codes.
//
// Other errors, nil, and context errors are not conflicts. IsConflict is
// safe for concurrent use.
func (t *Transactor) IsConflict(err error) bool {
	if err == nil {
		return false
	}
	switch t.d {
	case Postgres:
		return sqlstore.IsPostgresConflict(err)
	case MySQL:
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			switch me.Number {
			case 1213, 1205, 1020:
				return true
			}
		}
	case SQLite:
		var c interface{ Code() int }
		if errors.As(err, &c) {
			switch c.Code() & 0xff {
			case 5, 6: // SQLITE_BUSY, SQLITE_LOCKED
				return true
			}
		}
	}
	return false
}

// tx is a transaction of a Transactor.
type tx struct {
	sql  *sql.Tx
	t    *Transactor
	conn *sql.Conn // a connection of its own (SQLite query_only), or nil
}

var _ mb.Savepointer = (*tx)(nil)

func (x *tx) Commit(ctx context.Context) error {
	return errors.Join(x.sql.Commit(), x.release(ctx))
}

func (x *tx) Rollback(ctx context.Context) error {
	return errors.Join(x.sql.Rollback(), x.release(ctx))
}

// release switches a connection of its own back out of query_only mode
// (or closes it if that fails) and returns it to the pool.
func (x *tx) release(ctx context.Context) error {
	if x.conn == nil {
		return nil
	}
	conn := x.conn
	x.conn = nil
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA query_only = OFF"); err != nil {
		discardConn(conn)
		return nil // the connection is gone, and with it the mode
	}
	return conn.Close()
}

func (x *tx) Savepoint(ctx context.Context, name string) error {
	return x.savepoint(ctx, "SAVEPOINT ", name)
}

func (x *tx) RollbackToSavepoint(ctx context.Context, name string) error {
	return x.savepoint(ctx, "ROLLBACK TO SAVEPOINT ", name)
}

func (x *tx) ReleaseSavepoint(ctx context.Context, name string) error {
	return x.savepoint(ctx, "RELEASE SAVEPOINT ", name)
}

func (x *tx) savepoint(ctx context.Context, stmt, name string) error {
	q, err := sqlstore.QuoteSavepoint(sqlstore.Dialect(x.t.d), name)
	if err != nil {
		return fmt.Errorf("%w: mbsql: %v", mb.ErrInvalidArgument, err)
	}
	_, err = x.sql.ExecContext(ctx, stmt+q)
	return err
}

// Tx returns the *sql.Tx of the unit of work ctx belongs to, beginning it
// on first use (see [mb.TxFrom]); call it in a command or event handler,
// or a hook, of a bus whose Transactor is a [Transactor]. Every call in
// one unit returns the same *sql.Tx, shared by the nested units. Use it
// for statements only: the unit commits or rolls it back (Commit and
// Rollback on it break the unit), and like any *sql.Tx it runs one
// statement at a time.
//
// Tx returns the error of [mb.TxFrom] (outside a unit, without a
// Transactor, or when the transaction cannot begin), or one wrapping
// [ErrForeignTx] when the bus's Transactor is not of this package. A Tx
// wrapped by a decorating Transactor is found through an Unwrap() mb.Tx
// method.
func Tx(ctx context.Context) (*sql.Tx, error) {
	x, err := unitTx(ctx)
	if err != nil {
		return nil, err
	}
	return x.sql, nil
}

// unitTx returns the tx of ctx's unit of work.
func unitTx(ctx context.Context) (*tx, error) {
	return sqlstore.UnitTx[*tx](ctx, ErrForeignTx, "mbsql.New")
}
