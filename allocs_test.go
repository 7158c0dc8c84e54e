package mb_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/mb-go/mb"
)

// The fast paths stay allocation-lean: the figures in the benchmarks are
// guarded here, where a regression fails the build instead of going
// unnoticed in a table.
func TestAllocations(t *testing.T) {
	ctx := context.Background()
	bus := mb.New()
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) { return Account(c), nil })
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) { return Account(q), nil })
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { return mb.Emit(ctx, Note{c.What}) })
	for i := range 3 {
		mb.Subscribe(bus, func(ctx context.Context, e Note) error { return nil }, mb.WithName(fmt.Sprint("h", i)))
	}
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error { return nil })
	pooled := mb.New()
	mb.HandleCommand(pooled, func(ctx context.Context, c CreateAccount) (Account, error) { return Account(c), nil }, mb.WithPooledContext())
	mb.HandleQuery(pooled, func(ctx context.Context, q GetAccount) (Account, error) { return Account(q), nil }, mb.WithPooledContext())
	for _, c := range []struct {
		name string
		max  float64
		fn   func()
	}{
		// The frame the handler runs with.
		{"Send", 1, func() { _, _ = mb.Send[Account](ctx, bus, CreateAccount{"a"}) }},
		{"Query", 1, func() { _, _ = mb.Query[Account](ctx, bus, GetAccount{"a"}) }},
		// The command's frame and unit of work (with room for the event's
		// record), the boxed event, the frames of the three handlers.
		{"Exec emitting one event to three handlers", 4, func() { _ = mb.Exec(ctx, bus, DoIt{"a"}) }},
		// The event's record with its handler's frame (Ping{1} is boxed
		// without an allocation).
		{"Publish to one handler", 1, func() { _ = mb.Publish(ctx, bus, Ping{1}) }},
		// A pooled context: nothing (one pooled frame per 256 calls).
		{"Send with a pooled context", 0, func() { _, _ = mb.Send[Account](ctx, pooled, CreateAccount{"a"}) }},
		{"Query with a pooled context", 0, func() { _, _ = mb.Query[Account](ctx, pooled, GetAccount{"a"}) }},
	} {
		n := testing.AllocsPerRun(1000, c.fn)
		t.Logf("%s: %v", c.name, n)
		if n > c.max {
			t.Errorf("%s: %v allocations per call, want at most %v", c.name, n, c.max)
		}
	}
}
