package mbpgx

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/sqlstore"
)

// Options configure a [Transactor]. The zero value, and a nil *Options,
// mean the defaults: READ COMMITTED (PostgreSQL's default) transactions
// that may write.
type Options struct {
	// Isolation is the isolation level of every transaction: one of
	// pgx.ReadUncommitted (which PostgreSQL runs as READ COMMITTED),
	// pgx.ReadCommitted, pgx.RepeatableRead and pgx.Serializable. Empty
	// means the server's default_transaction_isolation.
	Isolation pgx.TxIsoLevel
	// ReadOnly makes every transaction read-only: a write fails with
	// SQLSTATE 25006 and fails the unit.
	ReadOnly bool
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument]: an Isolation that is not one of pgx's levels.
func (o *Options) Validate() error {
	if o == nil {
		return nil
	}
	switch o.Isolation {
	case "", pgx.ReadUncommitted, pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable:
		return nil
	}
	return fmt.Errorf("%w: mbpgx: Options.Isolation is %q; use pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable or pgx.ReadUncommitted, or leave it empty for the default", mb.ErrInvalidArgument, o.Isolation)
}

// ErrForeignTx is wrapped by the error of [Tx] and of [Inbox.Claim] when
// the unit's transaction was not begun by a [Transactor] of this package,
// or by one over another pool than the Inbox's.
var ErrForeignTx = errors.New("mbpgx: the unit's transaction is not one of this Transactor")

// Transactor is an [mb.Transactor] over a pgx pool: set it as the bus's
// [mb.Options.Transactor], and each unit of work that asks for its
// transaction ([Tx], [mb.TxFrom]) gets a pgx.Tx of its own, begun with the
// unit's context and the Transactor's options, committed or rolled back
// with the unit. Its transactions implement [mb.Savepointer]. A
// Transactor is safe for concurrent use; it does not own the pool, which
// the caller closes after the last unit has ended.
type Transactor struct {
	pool *pgxpool.Pool
	txo  pgx.TxOptions
}

var _ mb.Transactor = (*Transactor)(nil)

// New returns a Transactor over pool; opts may be nil. It returns every
// problem at once, each wrapping [mb.ErrInvalidArgument]: a nil pool and
// invalid options ([Options.Validate]). New does not connect.
func New(pool *pgxpool.Pool, opts *Options) (*Transactor, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	var errs []error
	if pool == nil {
		errs = append(errs, fmt.Errorf("%w: mbpgx.New: the pool is nil; create one with pgxpool.New", mb.ErrInvalidArgument))
	}
	errs = append(errs, o.Validate())
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t := &Transactor{pool: pool, txo: pgx.TxOptions{IsoLevel: o.Isolation}}
	if o.ReadOnly {
		t.txo.AccessMode = pgx.ReadOnly
	}
	return t, nil
}

// Pool returns the pool the Transactor begins its transactions in.
func (t *Transactor) Pool() *pgxpool.Pool { return t.pool }

// Begin begins a transaction with ctx, for the bus's unit of work; it is
// called by the bus, not by handlers. The transaction holds a connection
// of the pool until it ends.
func (t *Transactor) Begin(ctx context.Context) (mb.Tx, error) {
	ptx, err := t.pool.BeginTx(ctx, t.txo)
	if err != nil {
		return nil, err
	}
	return &tx{pgx: ptx, t: t}, nil
}

// IsConflict reports whether err (from a statement, a commit or the unit
// that failed with it) carries SQLSTATE 40001 (serialization failure) or
// 40P01 (deadlock detected): PostgreSQL has aborted the transaction
// because of concurrent ones, so running the unit again in a fresh
// transaction may succeed while retrying inside it cannot. The SQLSTATE
// is read from a *pgconn.PgError anywhere in err's chain. IsConflict is
// safe for concurrent use.
func (t *Transactor) IsConflict(err error) bool { return sqlstore.IsPostgresConflict(err) }

// tx is a transaction of a Transactor.
type tx struct {
	pgx pgx.Tx
	t   *Transactor
}

var _ mb.Savepointer = (*tx)(nil)

// Commit commits; pgx reports a commit that PostgreSQL turned into a
// rollback (the transaction had failed) as pgx.ErrTxCommitRollback.
func (x *tx) Commit(ctx context.Context) error { return x.pgx.Commit(ctx) }

func (x *tx) Rollback(ctx context.Context) error { return x.pgx.Rollback(ctx) }

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
	q, err := sqlstore.QuoteSavepoint(sqlstore.Postgres, name)
	if err != nil {
		return fmt.Errorf("%w: mbpgx: %v", mb.ErrInvalidArgument, err)
	}
	_, err = x.pgx.Exec(ctx, stmt+q)
	return err
}

// Tx returns the pgx.Tx of the unit of work ctx belongs to, beginning it
// on first use (see [mb.TxFrom]); call it in a command or event handler,
// or a hook, of a bus whose Transactor is a [Transactor]. Every call in
// one unit returns the same pgx.Tx, shared by the nested units. Use it
// for statements (and pgx's batches and CopyFrom) only: the unit commits
// or rolls it back, and nested units set savepoints on it, so do not call
// its Commit, Rollback or Begin. Like any pgx.Tx it runs one statement at
// a time.
//
// Tx returns the error of [mb.TxFrom] (outside a unit, without a
// Transactor, or when the transaction cannot begin), or one wrapping
// [ErrForeignTx] when the bus's Transactor is not of this package. A Tx
// wrapped by a decorating Transactor is found through an Unwrap() mb.Tx
// method.
func Tx(ctx context.Context) (pgx.Tx, error) {
	x, err := unitTx(ctx)
	if err != nil {
		return nil, err
	}
	return x.pgx, nil
}

func unitTx(ctx context.Context) (*tx, error) {
	return sqlstore.UnitTx[*tx](ctx, ErrForeignTx, "mbpgx.New")
}

// DefaultInboxTable is the name of the inbox table when
// [InboxOptions.Table] is empty.
const DefaultInboxTable = sqlstore.DefaultInboxTable

// InboxOptions configure an [Inbox]. The zero value, and a nil
// *InboxOptions, mean the defaults.
type InboxOptions struct {
	// Table is the inbox table: an identifier (an ASCII letter or '_',
	// then letters, digits and '_') or "schema.table". Empty means
	// [DefaultInboxTable]. Names are quoted as given, so they are case
	// sensitive.
	Table string
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument]: a Table that is not an identifier or a
// qualified one.
func (o *InboxOptions) Validate() error {
	if o == nil || o.Table == "" {
		return nil
	}
	return sqlstore.CheckTable(sqlstore.Postgres, "mbpgx: InboxOptions.Table", o.Table)
}

// Inbox is an [mb.Inbox] in a table of the Transactor's database: set it
// as [mb.ConsumerOptions.Inbox] of a consumer whose bus has the
// Transactor. A claim is a row inserted in the transaction of the
// handler's unit of work, keyed by the four fields of [mb.InboxKey], so it
// takes effect exactly when the handler's writes do; a second claim of
// the same key while the first unit is open waits for that unit's
// outcome. Rows are kept until [Inbox.Cleanup] deletes them. An Inbox is
// safe for concurrent use and holds no resources of its own.
type Inbox struct {
	t  *Transactor
	st *sqlstore.Inbox
}

var _ mb.Inbox = (*Inbox)(nil)

// NewInbox returns the Inbox of t's database, in the table that opts
// names (nil means the defaults). It returns the problems of its
// arguments joined, each wrapping [mb.ErrInvalidArgument]: a nil t and an
// invalid table name. Create the table with [Inbox.Migrate] or from
// [Inbox.Schema].
func NewInbox(t *Transactor, opts *InboxOptions) (*Inbox, error) {
	var o InboxOptions
	if opts != nil {
		o = *opts
	}
	st, err := sqlstore.OpenInbox(sqlstore.Postgres, "mbpgx", t != nil, o.Table)
	if err != nil {
		return nil, err
	}
	return &Inbox{t: t, st: st}, nil
}

// Claim records key in the transaction of the unit of work ctx belongs
// to, beginning it if need be, with INSERT ... ON CONFLICT DO NOTHING,
// and reports whether the key is new: true when a row was inserted (the
// handler runs, and the row commits or rolls back with its effects),
// false when the key's row exists already. When another open transaction
// holds a claim of the same key, Claim waits until it ends: then it
// reports false if that one committed and true if it rolled back. It
// never returns [mb.ErrInFlight].
//
// Claim returns the errors of [Tx] (outside a unit of work, another
// Transactor, or one over another pool: [ErrForeignTx]) and PostgreSQL's
// error, which fails the unit. The Consumer calls it; an application need
// not.
func (in *Inbox) Claim(ctx context.Context, key mb.InboxKey) (bool, error) {
	x, err := unitTx(ctx)
	if err != nil {
		return false, fmt.Errorf("mbpgx: inbox: %w", err)
	}
	if x.t.pool != in.t.pool {
		return false, fmt.Errorf("%w: mbpgx: inbox: the unit's transaction is in another pool than the Inbox's Transactor", ErrForeignTx)
	}
	tag, err := x.pgx.Exec(ctx, in.st.Claim, in.st.ClaimArgs(key, time.Now())...)
	if err != nil {
		return false, err
	}
	return tag.RowsAffected() == 1, nil
}

// Cleanup deletes the rows of keys claimed before the given time and
// returns how many it deleted. It deletes in batches of 1000 rows, each
// in a statement of its own, so that it never holds many locks for long;
// it stops at ctx's end, returning what it deleted so far with the error.
//
// A deleted key can be claimed again, so a message redelivered after its
// row is gone has a second effect: keep rows longer than the broker may
// redeliver a message (its retention of unacknowledged messages, the
// longest Nack delay and retry schedule, and the time a consumer may be
// down), typically days. It is safe to run from several processes at
// once.
func (in *Inbox) Cleanup(ctx context.Context, before time.Time) (int64, error) {
	return in.st.RunCleanup(ctx, before, func(ctx context.Context, q string, arg any) (int64, error) {
		tag, err := in.t.pool.Exec(ctx, q, arg)
		return tag.RowsAffected(), err
	})
}

// Schema returns the statements that create the inbox table and its
// index, with the configured names: for a migration tool of the
// application's own. Each statement is idempotent (IF NOT EXISTS).
func (in *Inbox) Schema() []string { return append([]string(nil), in.st.Schema...) }

// Migrate creates the inbox table and its index if they do not exist, in
// one transaction under an advisory lock, so that it is idempotent and
// safe to run at every start, from several processes at once.
func (in *Inbox) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, in.t.pool, func(ptx pgx.Tx) error {
		for _, s := range append([]string{sqlstore.PostgresMigrateLock}, in.st.Schema...) {
			if _, err := ptx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mbpgx: migrate: %w", err)
	}
	return nil
}
