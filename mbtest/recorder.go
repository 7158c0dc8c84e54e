package mbtest

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/mb-go/mb"
)

// Recorder records what happens on the buses it is attached to: every
// handler invocation (commands, queries, stream queries and each event
// handler, with what the handler returned), every dispatched event with its
// metadata, and the errors reported to [Recorder.ErrorHandler].
//
// Get one with [NewBus] (a new bus with the recorder and error capture
// wired) or [Record] (an existing bus). The zero value is ready to use: it
// records errors passed to its ErrorHandler, and everything else once
// [Recorder.Attach] has attached it to a bus.
//
// A Recorder is safe for concurrent use: handlers may run on many
// goroutines while a test reads. The accessors return copies, in the order
// things happened. A recorder stays attached for the life of the bus (mb
// has no way to remove middleware or subscriptions); use [Recorder.Reset]
// to start over.
type Recorder struct {
	mu       sync.Mutex
	buses    map[*mb.Bus]struct{}
	handled  []*Handling
	events   []Event
	errs     []error
	errsRead int // errs[:errsRead] have been returned by Errors
}

// Handling is one invocation of a handler, recorded by a [Recorder].
type Handling struct {
	// Metadata is the identity of the message handled: its kind, name,
	// id, correlation and causation ids, and the handler's name (the one
	// given with mb.WithName, otherwise "pkg.Func").
	mb.Metadata

	// Body is the command, query or event the handler received.
	Body any

	// Result is what a command or query handler returned: nil when it
	// failed, for event handlers and for stream queries, and struct{}{}
	// for commands registered with mb.HandleCommandNoResult.
	Result any

	// Err is the error of the handling: the handler's (a panic is an
	// *mb.PanicError), or, when the handler succeeded, its unit of
	// work's (a failed before-commit hook or commit).
	Err error

	// Committed reports, for command and event handlers, that the unit of
	// work the handler ran in committed with the handler's work in it. It
	// is false while the unit is open, when the handler failed, when the
	// unit (or, for a nested Send, any enclosing one) rolled back or failed
	// to commit, and for queries.
	Committed bool
}

// Event is an event that a [Recorder] saw dispatched: published with
// mb.Publish, or emitted by a handler whose unit of work committed.
type Event struct {
	// Metadata is the identity of the event: Kind is mb.KindEvent, Name
	// its message name, ID, CorrelationID and CausationID as its handlers
	// see them. Handler is "".
	mb.Metadata

	// Body is the event value.
	Body any
}

// Record attaches a new [Recorder] to bus and returns it. Errors reported to
// the bus's [mb.Options.ErrorHandler] are not captured unless the bus was
// built with rec.ErrorHandler; [NewBus] does that for you.
func Record(bus *mb.Bus) *Recorder {
	r := &Recorder{}
	r.Attach(bus)
	return r
}

// Attach makes r record what happens on bus: it adds r to the bus's
// observers ([mb.Bus.Observe]), from which it records every handler
// invocation and every dispatched event. It adds no handler and no
// middleware, so it changes nothing of what the bus does.
//
// Attach before dispatching; it may be called before or after registering
// handlers. Attaching r to the same bus again does nothing; one recorder
// may record several buses. Attach panics if bus is nil.
//
// An invocation is recorded once however many tries its middleware makes
// (mb.Retry), as it starts: before any middleware, so also when middleware
// rejects the message (mb.Validate, say).
func (r *Recorder) Attach(bus *mb.Bus) {
	if bus == nil {
		panic("mbtest: Recorder.Attach with a nil *mb.Bus")
	}
	r.mu.Lock()
	if _, ok := r.buses[bus]; ok {
		r.mu.Unlock()
		return
	}
	if r.buses == nil {
		r.buses = map[*mb.Bus]struct{}{}
	}
	r.buses[bus] = struct{}{}
	r.mu.Unlock()
	bus.Observe(r)
}

// HandlerStarted records a handling; it is r's side of [mb.Observer].
func (r *Recorder) HandlerStarted(ctx context.Context, hs *mb.Handling) (context.Context, func(*mb.HandlingEnd)) {
	h := &Handling{Metadata: hs.Metadata, Body: hs.Body}
	r.mu.Lock()
	r.handled = append(r.handled, h)
	r.mu.Unlock()
	if hs.Nested {
		// Its work commits only if every enclosing unit does: this hook
		// runs then, and is dropped with the nested scope's work if that
		// rolls back.
		_ = mb.AfterCommit(ctx, func(context.Context) {
			r.mu.Lock()
			h.Committed = true
			r.mu.Unlock()
		})
	}
	return ctx, func(end *mb.HandlingEnd) {
		r.mu.Lock()
		defer r.mu.Unlock()
		h.Err = end.Err
		if end.Err == nil && (h.Kind == mb.KindCommand || h.Kind == mb.KindQuery) {
			h.Result = end.Result
		}
		if end.Unit == mb.Committed {
			h.Committed = true
		}
	}
}

// EventDispatched records a dispatched event; it is r's side of
// [mb.Observer].
func (r *Recorder) EventDispatched(ctx context.Context, e *mb.EventDispatch) func() {
	r.mu.Lock()
	r.events = append(r.events, Event{Metadata: e.Metadata, Body: e.Body})
	r.mu.Unlock()
	return nil
}

// ErrorHandler records err. Use the method value as the bus's error hook,
// &mb.Options{ErrorHandler: rec.ErrorHandler}, to capture what mb reports
// there: failing or panicking event handlers (*mb.HandlerError), cascades
// past the depth limit and panicking after-commit hooks. [NewBus] wires it.
// It is safe to call from many goroutines at once.
func (r *Recorder) ErrorHandler(ctx context.Context, err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

// Errors returns the errors recorded by [Recorder.ErrorHandler], oldest
// first, and marks them as read: the check that [NewBus] runs at the end of
// the test only complains about errors that no one has read. Handler
// failures are also in [Recorder.Handled].
func (r *Recorder) Errors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errsRead = len(r.errs)
	return slices.Clone(r.errs)
}

// Handled returns every handler invocation recorded so far, in the order
// the handlers were called: commands, queries, stream queries and each
// event handler. An invocation whose handler is still running has no
// result or error yet.
func (r *Recorder) Handled() []Handling {
	return r.handlings(0)
}

// Commands returns the invocations of command handlers, in the order they
// were called: commands sent with mb.Send or mb.Exec that reached their
// handler, failed ones included. A command without a handler never reaches
// the recorder; its caller gets mb.ErrNoHandler.
func (r *Recorder) Commands() []Handling {
	return r.handlings(mb.KindCommand)
}

// Queries returns the invocations of query and stream query handlers, in
// the order they were called; Kind tells them apart.
func (r *Recorder) Queries() []Handling {
	hs := r.handlings(0)
	return slices.DeleteFunc(hs, func(h Handling) bool {
		return h.Kind != mb.KindQuery && h.Kind != mb.KindStream
	})
}

func (r *Recorder) handlings(kind mb.Kind) []Handling {
	r.mu.Lock()
	defer r.mu.Unlock()
	hs := make([]Handling, 0, len(r.handled))
	for _, h := range r.handled {
		if kind == 0 || h.Kind == kind {
			hs = append(hs, *h)
		}
	}
	return hs
}

// Events returns the events dispatched so far, in dispatch order: after a
// unit of work commits its events in first-emission order, de-duplicated,
// then the events their handlers emitted (breadth first). Events emitted by
// a handler that failed or whose unit rolled back are not dispatched and
// not recorded.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// Reset forgets everything recorded so far, errors included (they count as
// read). The recorder stays attached.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.handled, r.events, r.errs, r.errsRead = nil, nil, nil, 0
}

// unreadErrors returns the errors that Errors has not returned yet.
func (r *Recorder) unreadErrors() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs[r.errsRead:])
}

// EventsOf returns the bodies of the dispatched events that are of type T,
// in dispatch order. T may be an interface type: EventsOf[any] returns all.
func EventsOf[T any](rec *Recorder) []T {
	var out []T
	for _, e := range rec.Events() {
		if v, ok := e.Body.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// CommandsOf returns the commands of type T that reached their handler, in
// the order they were sent, failed ones included.
func CommandsOf[T any](rec *Recorder) []T {
	var out []T
	for _, h := range rec.Commands() {
		if v, ok := h.Body.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// NewBus returns a new bus configured by at most one *Options, with a
// [Recorder] attached and its [Recorder.ErrorHandler] wired as the bus's
// error hook (after which an ErrorHandler given in opts is still called).
//
// When the test ends, NewBus fails it with t.Errorf if errors were reported
// to the error hook that the test never read with [Recorder.Errors] (or
// checked with [AssertNoErrors], or dropped with [Recorder.Reset]): a
// failing event handler does not fail mb.Send, so without this check it
// would go unnoticed. NewBus fails the test at once, with t.Fatalf, for
// more than one *Options or options that mb.New rejects.
func NewBus(t testing.TB, opts ...*mb.Options) (*mb.Bus, *Recorder) {
	t.Helper()
	if len(opts) > 1 {
		t.Fatalf("mbtest.NewBus: got %d *mb.Options, want at most one", len(opts))
		return nil, nil
	}
	var o mb.Options
	if len(opts) == 1 && opts[0] != nil {
		o = *opts[0]
	}
	if err := o.Validate(); err != nil {
		t.Fatalf("mbtest.NewBus: %v", err)
		return nil, nil
	}
	rec := &Recorder{}
	if user := o.ErrorHandler; user != nil {
		o.ErrorHandler = func(ctx context.Context, err error) {
			rec.ErrorHandler(ctx, err)
			user(ctx, err)
		}
	} else {
		o.ErrorHandler = rec.ErrorHandler
	}
	bus := mb.New(&o)
	rec.Attach(bus)
	t.Cleanup(func() {
		t.Helper()
		if errs := rec.unreadErrors(); len(errs) > 0 {
			t.Errorf("mbtest.NewBus: %d unexpected %s reported to the bus's ErrorHandler (read them with rec.Errors() when the test expects them):\n%s",
				len(errs), plural(len(errs), "error", "errors"), formatErrors(errs))
		}
	})
	return bus, rec
}
