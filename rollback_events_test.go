package mb_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// LoginFailed is dispatched even when the unit that emitted it rolls back,
// as an audit entry or a failed-login counter must be.
type LoginFailed struct{ User string }

func (LoginFailed) DispatchOnRollback() bool { return true }

// Chatty says whether to dispatch on rollback per value.
type Chatty struct {
	Text   string
	Always bool
}

func (c Chatty) DispatchOnRollback() bool { return c.Always }

func TestDispatchOnRollback(t *testing.T) {
	t.Parallel()
	errDenied := errors.New("wrong password")
	for _, how := range []string{"error", "panic", "before-commit", "commit"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			var log recorder
			tr := &mbtest.Transactor{}
			if how == "commit" {
				tr.CommitErr = errDenied
			}
			bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
				touch(t, ctx)
				noErr(t, mb.Emit(ctx, Note{"before"}, LoginFailed{"me"}, Chatty{"kept", true}, Chatty{"dropped", false}, Note{"after"}))
				noErr(t, mb.Emit(ctx, LoginFailed{"me again"}))
				switch how {
				case "error":
					return errDenied
				case "panic":
					panic(errDenied)
				case "before-commit":
					return mb.BeforeCommit(ctx, func(context.Context) error { return errDenied })
				}
				return nil
			})
			mb.Subscribe(bus, func(ctx context.Context, e any) error { log.addf("%T %v", e, e); return nil })
			wantErr(t, mb.Exec(context.Background(), bus, DoIt{}), errDenied)
			wantSeq(t, log.get(), []string{
				"mb_test.LoginFailed {me}",
				"mb_test.Chatty {kept true}",
				"mb_test.LoginFailed {me again}",
			})
		})
	}
}

// A failed nested unit keeps its DispatchOnRollback events: they are
// dispatched after the outer unit commits, in emission order with the
// others.
func TestDispatchOnRollbackNested(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		noErr(t, mb.Emit(ctx, Note{"outer 1"}))
		if err := mb.Exec(ctx, bus, CreateAccount{"inner"}); err == nil {
			t.Error("inner did not fail")
		}
		return mb.Emit(ctx, Note{"outer 2"})
	})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		noErr(t, mb.Emit(ctx, Note{"inner"}, LoginFailed{"inner"}))
		return Account{}, errors.New("inner fails")
	})
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.add(fmt.Sprintf("%T %v", e, e)); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), []string{"mb_test.Note {outer 1}", "mb_test.LoginFailed {inner}", "mb_test.Note {outer 2}"})
}

// A failing event handler's DispatchOnRollback events are dispatched too;
// its other events are not.
func TestDispatchOnRollbackEventHandler(t *testing.T) {
	t.Parallel()
	var log recorder
	var sink errSink
	bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		noErr(t, mb.Emit(ctx, Ping{1}, LoginFailed{e.Text}))
		return errors.New("handler fails")
	})
	mb.Subscribe(bus, func(ctx context.Context, e LoginFailed) error { log.add("audit " + e.User); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error { log.add("ping"); return nil })
	noErr(t, mb.Publish(context.Background(), bus, Note{"n"}))
	wantSeq(t, log.get(), []string{"audit n"})
	if n := len(sink.get()); n != 1 {
		t.Fatalf("%d errors reported", n)
	}
}
