package mb_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// ctxTransactor fails Begin and Commit when their context is done, as
// database/sql does.
type ctxTransactor struct{ mbtest.Transactor }

func (c *ctxTransactor) Begin(ctx context.Context) (mb.Tx, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	tx, err := c.Transactor.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return ctxTx{tx}, nil
}

type ctxTx struct{ mb.Tx }

func (t ctxTx) Commit(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return t.Tx.Commit(ctx)
}

type ctxValueKey struct{}

// Once a command has committed, every handler of its events runs, whatever
// happens to the caller's context afterwards: the caller of an HTTP request
// disconnecting must not drop committed events.
func TestDispatchSurvivesCallerCancel(t *testing.T) {
	t.Parallel()
	tr := &ctxTransactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxValueKey{}, "kept"))
	defer cancel()
	var log recorder
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		cancel() // the caller goes away after the commit
		log.add("first")
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		if err := ctx.Err(); err != nil {
			t.Errorf("second handler's context is done: %v", err)
		}
		if _, ok := ctx.Deadline(); ok {
			t.Error("second handler's context has the caller's deadline")
		}
		if v, _ := ctx.Value(ctxValueKey{}).(string); v != "kept" {
			t.Errorf("value of the caller's context lost: %q", v)
		}
		log.add("second")
		return mb.Emit(ctx, Note{"cascade"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add("note")
		return nil
	})
	_, err := mb.Send[Account](ctx, bus, CreateAccount{"a"})
	noErr(t, err)
	wantSeq(t, log.get(), []string{"first", "second", "note"})
}

// The same holds for a deadline that passes during dispatch.
func TestDispatchSurvivesCallerDeadline(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{Transactor: &ctxTransactor{}, ErrorHandler: noErrors(t)})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	ran := 0
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		if _, ok := ctx.Deadline(); ok {
			return errors.New("event handler inherited the caller's deadline")
		}
		ran++
		return nil
	})
	_, err := mb.Send[Account](ctx, bus, CreateAccount{"a"})
	noErr(t, err)
	if ran != 1 {
		t.Fatalf("handler ran %d times", ran)
	}
}

// Options.EventTimeout bounds each event handler's unit of work.
func TestEventTimeout(t *testing.T) {
	t.Parallel()
	var sink errSink
	bus := mb.New(&mb.Options{EventTimeout: time.Millisecond, ErrorHandler: sink.handle})
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		<-ctx.Done()
		return ctx.Err()
	}, mb.WithName("slow"))
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"a"})
	noErr(t, err)
	hes := handlerErrors(t, sink.get())
	if len(hes) != 1 || !errors.Is(hes[0], context.DeadlineExceeded) || hes[0].Handler != "slow" {
		t.Fatalf("reported %v", sink.get())
	}
}

// Publish from outside a handler dispatches to every handler too when the
// caller's context ends half way.
func TestPublishSurvivesCallerCancel(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{Transactor: &ctxTransactor{}, ErrorHandler: noErrors(t)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var log recorder
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { cancel(); log.add("first"); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("second"); return ctx.Err() })
	noErr(t, mb.Publish(ctx, bus, Note{"x"}))
	wantSeq(t, log.get(), []string{"first", "second"})
}
