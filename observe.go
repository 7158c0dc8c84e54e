package mb

import (
	"context"
	"fmt"
	"time"
)

// Observer watches what a bus dispatches: every run of a command, query,
// stream query or event handler, and every event as its dispatch starts.
// Tracing, metrics, logs and the test kit (package mbtest) are built on
// it. Install observers with [Options.Observer] and [Bus.Observe]; a bus
// without observers pays nothing for them.
//
// An Observer's methods are called from the goroutines that dispatch,
// often concurrently, and should return quickly. A panic in them is
// recovered and reported to the bus's [Options.ErrorHandler].
type Observer interface {
	// HandlerStarted is called when a handler is about to run, before its
	// middleware, with the context it would run with (that of its unit
	// of work, for commands and event handlers: an observer may register
	// AfterCommit or AfterRollback hooks with it). The context it
	// returns, which must derive from ctx (a span in it, say), is the one
	// the handler runs with; nil means ctx. The function it returns, if
	// not nil, is called once when the handling has ended: for a command
	// or event handler, after its unit of work committed or rolled back
	// and before the unit's events are dispatched; for a nested command,
	// when it returns into the outer unit; for a query, when its handler
	// returned (for a stream query, when the handler returned its
	// sequence, before it is iterated).
	HandlerStarted(ctx context.Context, h *Handling) (context.Context, func(end *HandlingEnd))
	// EventDispatched is called when an event starts being dispatched to
	// its handlers: after the unit of work that emitted it committed, or
	// when it is published from outside any handler or received by a
	// [Consumer]. The function it returns, if not nil, is called when
	// all of the event's handlers have run (the events they emitted wait
	// their turn in the queue).
	EventDispatched(ctx context.Context, e *EventDispatch) func()
}

// Handling is a handler about to run, as an [Observer] sees it. It must
// not be kept after the handling ended.
type Handling struct {
	// Metadata is the identity of the message and the handler's name.
	Metadata
	// Body is the command, query or event.
	Body any
	// Nested reports a command sent from inside a handler of the same
	// bus: it runs in that handler's unit of work.
	Nested bool
	// Try is 1, or the try of a unit of work that
	// [Options.ConflictRetry] runs again.
	Try int
}

// UnitOutcome is what became of the unit of work of a handling.
type UnitOutcome uint8

// The outcomes of a handling's unit of work.
const (
	// NoUnit: the handling had no unit of work (queries).
	NoUnit UnitOutcome = iota
	// Committed: the unit committed, with the handler's work.
	Committed
	// RolledBack: the unit, or the nested scope of the handling, rolled
	// back: its work and events are discarded.
	RolledBack
	// Joined: a nested command whose work stays in the outer unit, to
	// commit or roll back with it.
	Joined
)

// String returns "none", "committed", "rolled back" or "joined".
func (o UnitOutcome) String() string {
	switch o {
	case Committed:
		return "committed"
	case RolledBack:
		return "rolled back"
	case Joined:
		return "joined"
	}
	return "none"
}

// HandlingEnd is how a handling ended, as an [Observer] sees it.
type HandlingEnd struct {
	// Err is the handler's error (a panic becomes an error wrapping
	// ErrPanic), or the unit's: a failed before-commit hook or commit.
	Err error
	// Result is what a command or query handler returned, when it
	// succeeded; nil otherwise.
	Result any
	// Duration is the time from the start of the handling to its end,
	// the commit included.
	Duration time.Duration
	// Unit is what became of the handling's unit of work.
	Unit UnitOutcome
}

// EventDispatch is an event whose dispatch starts, as an [Observer] sees
// it. It must not be kept after the dispatch ended.
type EventDispatch struct {
	// Metadata is the identity of the event; its Handler is "".
	Metadata
	// Body is the event.
	Body any
	// Handlers is the number of handlers that will run.
	Handlers int
}

// Observe adds observers to the bus, after those of [Options.Observer] and
// of earlier calls. It affects dispatches that start after it returns.
// Observe panics on a nil bus or a nil observer.
func (b *Bus) Observe(obs ...Observer) {
	if b == nil {
		panic(fmt.Errorf("%w: Observe on a nil *Bus", ErrInvalidArgument))
	}
	for i, o := range obs {
		if o == nil {
			panic(fmt.Errorf("%w: Observe: observer %d is nil", ErrInvalidArgument, i))
		}
	}
	b.update(func(r *handlerTable) error {
		r.obs = append(r.obs[:len(r.obs):len(r.obs)], obs...)
		return nil
	})
}

// observation is what an observed handling keeps until it ends.
type observation struct {
	start  time.Time
	ends   []func(*HandlingEnd)
	result any
}

// observe starts the observation of f's handling of body by the bus's
// observers and returns the context the handler runs with: f itself when
// the bus has none.
func (f *frame) observe(body any, try int) context.Context {
	if len(f.e.obs) == 0 {
		return f
	}
	x := f.ext()
	kind, name := f.describe()
	h := &Handling{Metadata: x.meta.metadata(kind, name, f.e.handler), Body: body, Nested: x.parent != nil, Try: try}
	o := &observation{start: time.Now()}
	var ctx context.Context = f
	for _, ob := range f.e.obs {
		c, end := f.bus().startObserver(ctx, ob, h)
		if c != nil {
			ctx = c
		}
		if end != nil {
			o.ends = append(o.ends, end)
		}
	}
	x.obs = o
	return ctx
}

// startObserver calls ob.HandlerStarted, reporting a panic.
func (b *Bus) startObserver(ctx context.Context, ob Observer, h *Handling) (c context.Context, end func(*HandlingEnd)) {
	defer func() {
		if p := recover(); p != nil {
			b.report(ctx, fmt.Errorf("mb: Observer.HandlerStarted: %w", newPanicError(p)))
			c, end = nil, nil
		}
	}()
	return ob.HandlerStarted(ctx, h)
}

// setResult keeps a command's or query's result for its observers.
func (f *frame) setResult(x *frameExt, v any) {
	if x != nil && x.obs != nil {
		x.obs.result = v
	}
}

// endObservation ends the observation of f's handling, if there is one
// and it has not ended, with the handling's error and its unit's outcome.
// x is f's extension.
func (f *frame) endObservation(x *frameExt, err error, unit UnitOutcome) {
	if x == nil || x.obs == nil {
		return
	}
	o := x.obs
	x.obs = nil
	end := &HandlingEnd{Err: err, Duration: time.Since(o.start), Unit: unit}
	if err == nil {
		end.Result = o.result
	}
	for i := len(o.ends) - 1; i >= 0; i-- {
		f.bus().runObserverEnd(f.Context, func() { o.ends[i](end) })
	}
}

// runObserverEnd runs fn, reporting a panic.
func (b *Bus) runObserverEnd(ctx context.Context, fn func()) {
	defer func() {
		if p := recover(); p != nil {
			b.report(ctx, fmt.Errorf("mb: an Observer's end of handling: %w", newPanicError(p)))
		}
	}()
	fn()
}

// observeEvent tells the observers of table that the dispatch of rec to n
// handlers starts, and returns what to call when they have run, or nil.
func (b *Bus) observeEvent(ctx context.Context, obs []Observer, rec *eventRecord, n int) func() {
	md := rec.meta.metadata(KindEvent, rec.et.info.name, "")
	e := &EventDispatch{Metadata: md, Body: rec.value, Handlers: n}
	var dones []func()
	for _, ob := range obs {
		func() {
			defer func() {
				if p := recover(); p != nil {
					b.report(ctx, fmt.Errorf("mb: Observer.EventDispatched: %w", newPanicError(p)))
				}
			}()
			if done := ob.EventDispatched(ctx, e); done != nil {
				dones = append(dones, done)
			}
		}()
	}
	if len(dones) == 0 {
		return nil
	}
	return func() {
		for i := len(dones) - 1; i >= 0; i-- {
			b.runObserverEnd(ctx, dones[i])
		}
	}
}
