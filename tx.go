package mb

import (
	"context"
	"errors"
	"fmt"
)

// ErrNoTransactor is returned by [TxFrom] in a unit of work of a bus that
// has no [Options.Transactor].
var ErrNoTransactor = errors.New("mb: the bus has no Transactor")

// Transactor begins the transactions that units of work commit or roll back.
// Set one in [Options.Transactor]; the unit of work begins a transaction
// the first time one of its handlers (or hooks) asks for it with [TxFrom].
// Begin is called from many goroutines at once.
type Transactor interface {
	// Begin starts a transaction. The bus commits or rolls it back exactly
	// once, with a context derived from the one given to Begin, which is
	// the context the unit of work was opened with.
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

// TxFrom returns the transaction of the unit of work ctx belongs to,
// beginning it on first use. Transactions begin lazily: a unit whose
// command or event handler never calls TxFrom (nor an adapter's accessor
// built on it) begins no transaction and commits none, so event handlers
// that do not touch the database cost it nothing.
//
// A nested unit (a [Send] from a handler, a [Retry] try) shares the
// transaction of the unit it joins; when the transaction begins inside
// one, its savepoint is set then.
//
// TxFrom returns an error wrapping [ErrNoUnitOfWork] outside a command or
// event handler (queries have none) or after the handler returned,
// [ErrNoTransactor] when the bus has no Transactor, and the error of the
// Transactor when the transaction cannot begin. That error also fails the
// unit of work: it rolls back and [Send] returns the error even if the
// handler ignored it. TxFrom is safe for concurrent use by the handler's
// goroutines, but the transaction itself need not be.
func TxFrom(ctx context.Context) (Tx, error) {
	if ctx == nil {
		return nil, fmt.Errorf("%w: TxFrom with a nil context", ErrInvalidArgument)
	}
	f := frameFrom(ctx)
	if f == nil || !f.hasUnit() {
		return nil, fmt.Errorf("%w: TxFrom outside a command or event handler", ErrNoUnitOfWork)
	}
	t := f.bus().opts.Transactor
	if t == nil {
		return nil, ErrNoTransactor
	}
	return f.ext().unit.txFor(f, t)
}
