package mbsql

import (
	"context"
	"fmt"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/sqlstore"
)

// DefaultInboxTable is the name of the inbox table when
// [InboxOptions.Table] is empty.
const DefaultInboxTable = sqlstore.DefaultInboxTable

// InboxOptions configure an [Inbox]. The zero value, and a nil
// *InboxOptions, mean the defaults.
type InboxOptions struct {
	// Table is the inbox table: an identifier (an ASCII letter or '_',
	// then letters, digits and '_'), or on PostgreSQL and MySQL
	// "schema.table" ("database.table"). Empty means
	// [DefaultInboxTable]. Names are quoted as given, so they are case
	// sensitive where the database is.
	Table string
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument]: a Table that is not an identifier or a
// qualified one. [NewInbox] also refuses a qualified name on SQLite.
func (o *InboxOptions) Validate() error {
	if o == nil || o.Table == "" {
		return nil
	}
	return sqlstore.CheckTable(sqlstore.Postgres, "mbsql: InboxOptions.Table", o.Table)
}

// Inbox is an [mb.Inbox] in a table of the Transactor's database: set it
// as [mb.ConsumerOptions.Inbox] of a consumer whose bus has the
// Transactor. A claim is a row inserted in the transaction of the
// handler's unit of work, keyed by the four fields of [mb.InboxKey], so it
// takes effect exactly when the handler's writes do; a second claim of
// the same key while the first unit is open waits for that unit's
// outcome (see the package documentation, "Inbox"). Rows are kept until
// [Inbox.Cleanup] deletes them. An Inbox is safe for concurrent use and
// holds no resources of its own.
type Inbox struct {
	t  *Transactor
	st *sqlstore.Inbox
}

var _ mb.Inbox = (*Inbox)(nil)

// NewInbox returns the Inbox of t's database, in the table that opts
// names (nil means the defaults). It returns the problems of its
// arguments joined, each wrapping [mb.ErrInvalidArgument]: a nil t and a
// table name the dialect does not take. Create the table with
// [Inbox.Migrate] or from [Inbox.Schema].
func NewInbox(t *Transactor, opts *InboxOptions) (*Inbox, error) {
	var o InboxOptions
	if opts != nil {
		o = *opts
	}
	d := sqlstore.Postgres // the most permissive, to report a nil t with the table's problems
	if t != nil {
		d = sqlstore.Dialect(t.d)
	}
	st, err := sqlstore.OpenInbox(d, "mbsql", t != nil, o.Table)
	if err != nil {
		return nil, err
	}
	return &Inbox{t: t, st: st}, nil
}

// Claim records key in the transaction of the unit of work ctx belongs
// to, beginning it if need be, and reports whether the key is new: true
// when a row was inserted (the handler runs, and the row commits or rolls
// back with its effects), false when the key's row exists already (the
// handling took effect before). When another open transaction holds a
// claim of the same key, Claim waits until it ends: then it reports false
// if that one committed and true if it rolled back. It never returns
// [mb.ErrInFlight].
//
// Claim returns the errors of [Tx] (outside a unit of work, another
// Transactor, or one over another *sql.DB: [ErrForeignTx]) and the
// database's error, which fails the unit. The Consumer calls it; an
// application need not.
func (in *Inbox) Claim(ctx context.Context, key mb.InboxKey) (bool, error) {
	x, err := unitTx(ctx)
	if err != nil {
		return false, fmt.Errorf("mbsql: inbox: %w", err)
	}
	if x.t.db != in.t.db {
		return false, fmt.Errorf("%w: mbsql: inbox: the unit's transaction is in another *sql.DB than the Inbox's Transactor", ErrForeignTx)
	}
	res, err := x.sql.ExecContext(ctx, in.st.Claim, in.st.ClaimArgs(key, time.Now())...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// Cleanup deletes the rows of keys claimed before the given time and
// returns how many it deleted. It deletes in batches of 1000 rows, each
// in a statement of its own, so that it
// never holds many locks for long; it stops at ctx's end, returning what
// it deleted so far with the error.
//
// A deleted key can be claimed again, so a message redelivered after its
// row is gone has a second effect: keep rows longer than the broker may
// redeliver a message (its retention of unacknowledged messages, the
// longest Nack delay and retry schedule, and the time a consumer may be
// down), typically days. Run Cleanup periodically, e.g. with
// time.Now().Add(-7*24*time.Hour). It is safe to run from several
// processes at once.
func (in *Inbox) Cleanup(ctx context.Context, before time.Time) (int64, error) {
	return in.st.RunCleanup(ctx, before, func(ctx context.Context, q string, arg any) (int64, error) {
		res, err := in.t.db.ExecContext(ctx, q, arg)
		if err != nil {
			return 0, err
		}
		return res.RowsAffected()
	})
}

// Schema returns the statements that create the inbox table and its
// index, with the configured names: for a migration tool of the
// application's own. Each statement is idempotent (IF NOT EXISTS).
func (in *Inbox) Schema() []string { return append([]string(nil), in.st.Schema...) }

// Migrate creates the inbox table and its index if they do not exist: it
// runs [Inbox.Schema]. It is idempotent and safe to run at every start,
// from several processes at once (on PostgreSQL it runs in one
// transaction under an advisory lock; MariaDB, MySQL and SQLite run
// CREATE ... IF NOT EXISTS, each statement atomic on its own).
func (in *Inbox) Migrate(ctx context.Context) error {
	if in.t.d != Postgres {
		for _, s := range in.st.Schema {
			if _, err := in.t.db.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("mbsql: migrate: %w", err)
			}
		}
		return nil
	}
	stx, err := in.t.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mbsql: migrate: %w", err)
	}
	defer func() { _ = stx.Rollback() }()
	for _, s := range append([]string{sqlstore.PostgresMigrateLock}, in.st.Schema...) {
		if _, err := stx.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("mbsql: migrate: %w", err)
		}
	}
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("mbsql: migrate: %w", err)
	}
	return nil
}
