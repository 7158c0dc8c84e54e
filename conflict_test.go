package mb_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// errConflict stands for a serialization failure: the database aborted
// the whole transaction.
var errConflict = errors.New("could not serialize access due to concurrent update")

// conflicting is a Transactor whose first commits fail with errConflict
// and which, as the SQL adapters do, tells such errors apart.
type conflicting struct {
	mbtest.Transactor
	failures atomic.Int32 // commits still to fail
}

func (c *conflicting) Begin(ctx context.Context) (mb.Tx, error) {
	tx, err := c.Transactor.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &conflictingTx{Tx: tx.(*mbtest.Tx), c: c}, nil
}

func (c *conflicting) IsConflict(err error) bool { return errors.Is(err, errConflict) }

type conflictingTx struct {
	*mbtest.Tx
	c *conflicting
}

func (t *conflictingTx) Commit(ctx context.Context) error {
	if t.c.failures.Add(-1) >= 0 {
		_ = t.Tx.Rollback(ctx)
		return fmt.Errorf("commit: %w", errConflict)
	}
	return t.Tx.Commit(ctx)
}

var fastConflictRetry = &mb.RetryOptions{MaxAttempts: 4, Backoff: mb.Backoff{Min: time.Microsecond, Max: time.Microsecond}}

// A command whose transaction the database aborts as a whole is run again
// in a fresh transaction; only the last try's events are dispatched.
func TestConflictRetrySend(t *testing.T) {
	t.Parallel()
	tr := &conflicting{}
	tr.failures.Store(2)
	var log recorder
	bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: fastConflictRetry, ErrorHandler: noErrors(t)})
	tries := 0
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		tries++
		touch(t, ctx)
		noErr(t, mb.AfterRollback(ctx, func(context.Context) { log.addf("rolled back try %d", tries) }))
		noErr(t, mb.Emit(ctx, Note{fmt.Sprint("try ", tries)}, LoginFailed{fmt.Sprint("try ", tries)}))
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.addf("%T %v", e, e); return nil })
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"a"})
	noErr(t, err)
	if acc.Name != "a" || tries != 3 {
		t.Fatalf("got %+v after %d tries", acc, tries)
	}
	wantSeq(t, log.get(), []string{
		"rolled back try 1", "rolled back try 2",
		"mb_test.Note {try 3}", "mb_test.LoginFailed {try 3}",
	})
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin", "tx1 rollback", "tx2 begin", "tx2 rollback", "tx3 begin", "tx3 commit",
	})
}

// Tries stop at MaxAttempts; the last error is returned, and the
// DispatchOnRollback events of that try are dispatched.
func TestConflictRetryGivesUp(t *testing.T) {
	t.Parallel()
	tr := &conflicting{}
	tr.failures.Store(100)
	var log recorder
	bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: fastConflictRetry, ErrorHandler: noErrors(t)})
	tries := 0
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		tries++
		touch(t, ctx)
		return mb.Emit(ctx, LoginFailed{fmt.Sprint("try ", tries)})
	})
	mb.Subscribe(bus, func(ctx context.Context, e LoginFailed) error { log.add(e.User); return nil })
	wantErr(t, mb.Exec(context.Background(), bus, DoIt{}), errConflict)
	if tries != 4 {
		t.Fatalf("%d tries, want 4", tries)
	}
	wantSeq(t, log.get(), []string{"try 4"})
}

// Without ConflictRetry, or for other errors, nothing is retried; a nested
// Send is never retried alone: its conflict fails the outermost unit,
// which is retried as a whole.
func TestConflictRetryScope(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		opts      *mb.RetryOptions
		failures  int32
		handleErr error
		wantTries int
	}{
		{"off", nil, 1, nil, 1},
		{"other error", fastConflictRetry, 0, errors.New("username taken"), 1},
		{"conflict", fastConflictRetry, 1, nil, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			tr := &conflicting{}
			tr.failures.Store(c.failures)
			bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: c.opts})
			outer, inner := 0, 0
			mb.HandleCommandNoResult(bus, func(ctx context.Context, d DoIt) error {
				outer++
				return mb.Exec(ctx, bus, CreateAccount{})
			})
			mb.HandleCommandNoResult(bus, func(ctx context.Context, a CreateAccount) error {
				inner++
				touch(t, ctx)
				return c.handleErr
			})
			err := mb.Exec(context.Background(), bus, DoIt{})
			if outer != c.wantTries || inner != c.wantTries {
				t.Fatalf("outer ran %d times, inner %d; want %d each (err %v)", outer, inner, c.wantTries, err)
			}
		})
	}
}

// An event handler's unit is retried the same way.
func TestConflictRetryEventHandler(t *testing.T) {
	t.Parallel()
	tr := &conflicting{}
	tr.failures.Store(1)
	bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: fastConflictRetry, ErrorHandler: noErrors(t)})
	tries := 0
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		tries++
		touch(t, ctx)
		return nil
	})
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	if tries != 2 {
		t.Fatalf("%d tries, want 2", tries)
	}
}

func TestConflictRetryInvalidOptions(t *testing.T) {
	t.Parallel()
	err := (&mb.Options{ConflictRetry: &mb.RetryOptions{MaxAttempts: -1}}).Validate()
	wantErr(t, err, mb.ErrInvalidArgument)
	if err == nil || !strings.Contains(err.Error(), "Options.ConflictRetry.MaxAttempts") {
		t.Fatalf("Validate: %v", err)
	}
}
