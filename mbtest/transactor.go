package mbtest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/mb-go/mb"
)

// Transactor is an in-memory [mb.Transactor] that records every call made to
// it and to the transactions it begins, in order, so tests can check the
// phases of a unit of work. Its transactions support savepoints. The zero
// value is ready to use and safe for concurrent use.
//
// Calls are recorded as "begin", "commit", "rollback", "savepoint NAME",
// "rollback to NAME" and "release NAME", each prefixed with "txN " where N
// numbers the transactions from 1 in the order they began.
type Transactor struct {
	// BeginErr, CommitErr and RollbackErr, when set, are returned by every
	// Begin, Commit and Rollback (after recording the call).
	BeginErr    error
	CommitErr   error
	RollbackErr error

	mu    sync.Mutex
	calls []string
	n     int
	hooks []func(call string)
}

var _ mb.Transactor = (*Transactor)(nil)

// OnCall registers fn to be called, in the calling goroutine, after each
// call is recorded; tests use it to record calls into a shared log together
// with what handlers do.
func (t *Transactor) OnCall(fn func(call string)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hooks = append(t.hooks, fn)
}

func (t *Transactor) record(call string) {
	t.mu.Lock()
	t.calls = append(t.calls, call)
	hooks := slices.Clone(t.hooks)
	t.mu.Unlock()
	for _, h := range hooks {
		h(call)
	}
}

// Calls returns a copy of the calls recorded so far.
func (t *Transactor) Calls() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.calls)
}

// Reset forgets the recorded calls and restarts transaction numbering.
func (t *Transactor) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.calls, t.n = nil, 0
}

// Begin records "txN begin" and returns transaction N.
func (t *Transactor) Begin(ctx context.Context) (mb.Tx, error) {
	t.mu.Lock()
	t.n++
	tx := &Tx{t: t, id: t.n}
	t.mu.Unlock()
	t.record(fmt.Sprintf("tx%d begin", tx.id))
	if t.BeginErr != nil {
		return nil, t.BeginErr
	}
	return tx, nil
}

// Tx is a transaction of a [Transactor]. It records its calls in the
// Transactor and rejects any call after it ended.
type Tx struct {
	t     *Transactor
	id    int
	mu    sync.Mutex
	ended bool
	sps   []string
}

var _ mb.Savepointer = (*Tx)(nil)

// ID is the transaction's number, from 1.
func (tx *Tx) ID() int { return tx.id }

func (tx *Tx) call(what string, end bool) error {
	tx.t.record(fmt.Sprintf("tx%d %s", tx.id, what))
	tx.mu.Lock()
	defer tx.mu.Unlock()
	if tx.ended {
		return fmt.Errorf("mbtest: tx%d %s after the transaction ended", tx.id, what)
	}
	if end {
		tx.ended = true
	}
	return nil
}

// Commit records "txN commit".
func (tx *Tx) Commit(ctx context.Context) error {
	if err := tx.call("commit", true); err != nil {
		return err
	}
	return tx.t.CommitErr
}

// Rollback records "txN rollback".
func (tx *Tx) Rollback(ctx context.Context) error {
	if err := tx.call("rollback", true); err != nil {
		return err
	}
	return tx.t.RollbackErr
}

// Savepoint records "txN savepoint NAME".
func (tx *Tx) Savepoint(ctx context.Context, name string) error {
	if err := tx.call("savepoint "+name, false); err != nil {
		return err
	}
	tx.mu.Lock()
	tx.sps = append(tx.sps, name)
	tx.mu.Unlock()
	return nil
}

// RollbackToSavepoint records "txN rollback to NAME". Like SQL, it fails for
// a savepoint that was never set or was already released.
func (tx *Tx) RollbackToSavepoint(ctx context.Context, name string) error {
	if err := tx.call("rollback to "+name, false); err != nil {
		return err
	}
	return tx.pop(name, false)
}

// ReleaseSavepoint records "txN release NAME".
func (tx *Tx) ReleaseSavepoint(ctx context.Context, name string) error {
	if err := tx.call("release "+name, false); err != nil {
		return err
	}
	return tx.pop(name, true)
}

func (tx *Tx) pop(name string, release bool) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	i := slices.Index(tx.sps, name)
	if i < 0 {
		return fmt.Errorf("mbtest: tx%d: savepoint %q does not exist", tx.id, name)
	}
	if release {
		tx.sps = tx.sps[:i]
	} else {
		tx.sps = tx.sps[:i+1]
	}
	return nil
}
