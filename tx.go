package mb

import "context"

// Transactor begins the transactions that units of work commit or roll back.
// Set one in [Options.Transactor]; the mbsql and mbpgx modules provide them
// for database/sql and pgx. Begin is called from many goroutines at once.
type Transactor interface {
	// Begin starts a transaction. The bus commits or rolls it back exactly
	// once, with a context derived from the one given to Begin.
	Begin(ctx context.Context) (Tx, error)
}

// Tx is a transaction begun by a [Transactor]. Handlers reach it with
// [TxFrom] (adapters offer typed accessors). A Tx is used by one unit of work
// and need not be safe for concurrent use.
type Tx interface {
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Savepointer is implemented by transactions that support savepoints. A
// nested unit of work (a [Send] from inside a handler) sets a savepoint and
// rolls back to it when the inner handler fails, so the inner handler's writes
// are undone while the outer handler's remain. Without savepoint support an
// inner failure discards only the inner events; its writes stay in the outer
// transaction unless the outer handler fails too.
type Savepointer interface {
	Savepoint(ctx context.Context, name string) error
	RollbackToSavepoint(ctx context.Context, name string) error
	ReleaseSavepoint(ctx context.Context, name string) error
}

// TxFrom returns the transaction of the unit of work ctx belongs to. It
// reports false outside a unit of work or when the bus has no Transactor.
func TxFrom(ctx context.Context) (Tx, bool) {
	f := frameFrom(ctx)
	if f == nil {
		return nil, false
	}
	// A transaction creates the frame's extension when the unit begins.
	x := f.x.Load()
	if x == nil || x.unit == nil || x.unit.tx == nil {
		return nil, false
	}
	return x.unit.tx, true
}
