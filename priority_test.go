package mb_test

import (
	"context"
	"testing"

	"github.com/mb-go/mb"
)

// Handlers of one event run by ascending priority; among equal priorities
// those of the event's own type come first, then those subscribed through
// an interface, then the catch-all ones, each group in registration order.
func TestHandlerOrder(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	h := func(name string) func(context.Context, AccountCreated) error {
		return func(context.Context, AccountCreated) error { log.add(name); return nil }
	}
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.add("any"); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Labeled) error { log.add("labeled"); return nil })
	mb.Subscribe(bus, h("exact"), mb.WithName("exact"))
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.add("any first"); return nil }, mb.WithPriority(-10))
	mb.Subscribe(bus, h("exact late"), mb.WithName("exact late"), mb.WithPriority(5))
	mb.Subscribe(bus, func(ctx context.Context, e Labeled) error { log.add("labeled 5"); return nil }, mb.WithPriority(5))
	mb.Subscribe(bus, h("exact 2"), mb.WithName("exact 2"))
	noErr(t, mb.Publish(context.Background(), bus, AccountCreated{"a"}))
	wantSeq(t, log.get(), []string{
		"any first",                   // priority -10
		"exact", "exact 2", "labeled", // priority 0: own type, interface,
		"any",                     // catch-all
		"exact late", "labeled 5", // priority 5
	})
}

// WithPriority orders event handlers only.
func TestWithPriorityOnCommandRefused(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	err := mb.HandleCommandSafely(bus, createAccount, mb.WithPriority(1))
	wantErr(t, err, mb.ErrInvalidHandler)
}
