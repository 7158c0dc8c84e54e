package mb_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mb-go/mb"
)

// Clone copies registrations, middleware and options into a bus of its
// own: what either registers afterwards does not reach the other.
func TestClone(t *testing.T) {
	t.Parallel()
	var log recorder
	var sink errSink
	orig := mb.New(&mb.Options{ErrorHandler: sink.handle, MaxCascadeDepth: 1})
	orig.Use(tag(&log, "mw"))
	mb.HandleCommand(orig, func(ctx context.Context, c CreateAccount) (Account, error) {
		if mb.BusFrom(ctx) == nil {
			t.Error("no bus in the handler's context")
		}
		log.add("create " + c.Name)
		return createAccount(ctx, c)
	})
	mb.Subscribe(orig, func(ctx context.Context, e AccountCreated) error {
		log.add("welcome " + e.Name)
		return mb.Emit(ctx, Ping{1})
	})
	mb.Subscribe(orig, func(ctx context.Context, e Ping) error { return mb.Emit(ctx, Ping{e.N + 1}) })

	clone := orig.Clone()
	var inClone *mb.Bus
	clone.Use(tag(&log, "clone-mw"))
	mb.Subscribe(clone, func(ctx context.Context, e AccountCreated) error {
		inClone = mb.BusFrom(ctx)
		log.add("clone only")
		return nil
	})
	mb.HandleQuery(orig, func(ctx context.Context, q GetAccount) (Account, error) { return Account(q), nil })

	_, err := mb.Send[Account](context.Background(), clone, CreateAccount{"c"})
	noErr(t, err)
	wantSeq(t, log.get(), []string{
		"mw>", "clone-mw>", "create c", "<clone-mw", "<mw",
		"mw>", "clone-mw>", "welcome c", "<clone-mw", "<mw",
		"mw>", "clone-mw>", "clone only", "<clone-mw", "<mw",
		"mw>", "clone-mw>", "<clone-mw", "<mw", // Ping 1; Ping 2 is past the depth limit
	})
	if inClone != clone {
		t.Error("a handler of the clone does not see the clone as its bus")
	}
	if _, err := mb.Query[Account](context.Background(), clone, GetAccount{}); !errors.Is(err, mb.ErrNoHandler) {
		t.Errorf("a query registered on the original after Clone reached the clone: %v", err)
	}
	if n := len(sink.get()); n != 1 {
		t.Errorf("the clone's error handler got %d errors, want the cascade limit once", n)
	}

	log.reset()
	_, err = mb.Send[Account](context.Background(), orig, CreateAccount{"o"})
	noErr(t, err)
	wantSeq(t, log.get(), []string{
		"mw>", "create o", "<mw",
		"mw>", "welcome o", "<mw",
		"mw>", "<mw",
	})
	if _, err := mb.Query[Account](context.Background(), orig, GetAccount{"q"}); err != nil {
		t.Fatal(err)
	}
}
