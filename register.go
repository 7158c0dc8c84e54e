package mb

import (
	"context"
	"fmt"
	"iter"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"unsafe"
)

// entry is one registered handler.
type entry struct {
	bus        *Bus
	kind       Kind
	msgType    reflect.Type // the type the handler was registered for
	name       string       // message name ("" for interface subscriptions)
	handler    string       // handler name
	fnName     string       // the Go function name
	named      bool         // the name was given with WithName
	priority   int          // event handlers: lower runs first
	resultType reflect.Type // commands and queries: what the handler returns
	fnID       uintptr      // identity of the handler func value
	fn         any          // the typed handler func, for the fast path
	base       Handler      // the handler behind the boxed interface
	own        []Middleware // per-handler middleware
	chain      Handler      // base wrapped in all middleware
	direct     bool         // no middleware at all: call fn directly
	// eagerExt: a frame of this handler needs its extension at once
	// (middleware reads the message), so it is allocated with it
	// (newFrame).
	eagerExt bool
	obs      []Observer // the bus's observers
	pooled   bool       // registered WithPooledContext
	pool     *sync.Pool // of *pooledFrame, for a pooled handler without middleware
}

func (e *entry) build(busMW []Middleware, obs []Observer) {
	e.obs = obs
	e.direct = len(busMW) == 0 && len(e.own) == 0
	e.eagerExt = !e.direct
	e.pool = nil
	if e.pooled && e.direct {
		e.pool = &sync.Pool{} // its own: a pooledFrame belongs to one entry
	}
	h := e.base
	for i := len(e.own) - 1; i >= 0; i-- {
		h = e.own[i](h)
	}
	for i := len(busMW) - 1; i >= 0; i-- {
		h = busMW[i](h)
	}
	e.chain = h
}

// HandlerOption configures one handler at registration.
type HandlerOption interface {
	apply(*handlerConfig)
}

type handlerConfig struct {
	name        string
	mw          []Middleware
	priority    int
	hasPriority bool
	pooled      bool
}

type optionFunc func(*handlerConfig)

func (f optionFunc) apply(c *handlerConfig) { f(c) }

// WithName names the handler in errors, logs, telemetry and [InboxKey]s.
// The default is the Go function name without its package path, such as
// "billing.chargeCard" or, for a method value, "billing.(*Service).Charge".
// Function literals get names the compiler generates ("billing.New.func1"),
// which change when the code around them does: a [Consumer] with an Inbox
// refuses event handlers named that way, and they need WithName.
func WithName(name string) HandlerOption {
	return optionFunc(func(c *handlerConfig) { c.name = name })
}

// WithPriority orders the handlers of one event: they run by ascending
// priority (the default is 0, negative values run earlier). Among handlers
// of equal priority, those subscribed to the event's own type run first,
// then those subscribed to an interface it implements, then those
// subscribed to any, each group in registration order. With
// [Options.EventConcurrency] above one, the order is the order in which
// handlers start. WithPriority applies to event handlers only; other
// registrations refuse it with an error wrapping [ErrInvalidHandler].
func WithPriority(n int) HandlerOption {
	return optionFunc(func(c *handlerConfig) { c.priority, c.hasPriority = n, true })
}

// WithPooledContext is a promise that the handler does not keep its
// context, nor any context derived from it, beyond its return: it does not
// store it, and any goroutine it starts with it has finished using it when
// the handler returns. In exchange the handler runs with a context reused
// from call to call instead of one allocated for each call, so that a Send
// or Query that records nothing allocates nothing for its context, and
// parallel calls do not make garbage for the collector.
//
// While the handler runs, its context is what it would be without the
// option: it carries the values, deadline and cancellation of the context
// the call was sent with, and Emit, TxFrom, the hooks, MetadataFrom,
// BusFrom and a nested Send work as usual (the first of these allocates
// the call's own bookkeeping, as an ordinary call would). A context kept
// against the promise is safe but useless once the handler has returned:
// it reports itself cancelled (Done is closed, Err is context.Canceled),
// carries no values, and reaches no unit of work, its own or a later
// call's: Emit, TxFrom, BeforeCommit, AfterCommit and AfterRollback return
// errors wrapping ErrNoUnitOfWork, MetadataFrom reports false and BusFrom
// returns nil. A Send with it opens a new unit of work, as from outside
// any handler.
//
// WithPooledContext applies to command and query handlers; registering
// another kind with it fails with an error wrapping ErrInvalidHandler. A
// handler behind middleware, a Send with a result type other than the
// handler's, and a Send from inside a handler (which joins that handler's
// unit of work) run with an ordinary context. Pooled contexts are kept per
// handler and per processor (sync.Pool), so concurrent calls share none.
func WithPooledContext() HandlerOption {
	return optionFunc(func(c *handlerConfig) { c.pooled = true })
}

// WithMiddleware wraps this handler only, inside the bus-wide middleware,
// outermost first.
func WithMiddleware(mw ...Middleware) HandlerOption {
	return optionFunc(func(c *handlerConfig) { c.mw = append(c.mw, mw...) })
}

// funcID returns the identity of a func value: the address of its closure
// record. The very same function value registered twice has the same id;
// two closures of one literal that capture different variables do not.
func funcID[F any](fn F) uintptr {
	return uintptr(*(*unsafe.Pointer)(unsafe.Pointer(&fn)))
}

// funcName returns the name of fn as package.Function (or
// package.(*Type).Method for a method value), without the package path.
func funcName(fn any) string {
	f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
	if f == nil {
		return "?"
	}
	name := strings.TrimSuffix(f.Name(), "-fm") // the wrapper of a method value
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return name
}

// generatedName reports whether name, a funcName, is one the compiler
// made up for a function literal ("pkg.f.func1", "pkg.f.func2.1",
// "pkg.glob..func1"): it depends on the order of the literals around it,
// so it changes when the code does.
func generatedName(name string) bool {
	for part := range strings.SplitSeq(name, ".") {
		if n, ok := strings.CutPrefix(part, "func"); ok && n != "" && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	return false
}

// stableName returns an error wrapping ErrInvalidHandler when e's name is
// generated for a function literal: such a name must not key an inbox.
func (e *entry) stableName() error {
	if e.named || !generatedName(e.handler) {
		return nil
	}
	return fmt.Errorf("%w: the %s handler %s for %s has a name the compiler generated for a function literal, which changes when the code around it does; an inbox keys what each handler has handled by its name, so give it a stable one with WithName",
		ErrInvalidHandler, e.kind, e.handler, e.msgType)
}

func newEntry[M, F any](bus *Bus, kind Kind, fn F, opts []HandlerOption) (*entry, error) {
	t := reflect.TypeFor[M]()
	if bus == nil {
		return nil, fmt.Errorf("%w: registering a %s handler for %s on a nil *Bus", ErrInvalidHandler, kind, t)
	}
	if reflect.ValueOf(fn).IsNil() {
		return nil, fmt.Errorf("%w: the %s handler for %s is nil", ErrInvalidHandler, kind, t)
	}
	e := &entry{bus: bus, kind: kind, msgType: t, fn: fn, fnID: funcID(fn), fnName: funcName(fn)}
	e.handler = e.fnName
	if kind == KindEvent && t.Kind() == reflect.Interface {
		e.name = t.String()
	} else {
		ti := bus.typeInfo(t)
		if ti.err != nil {
			return nil, fmt.Errorf("%w: cannot register a %s handler for %s: %w", ErrInvalidHandler, kind, t, ti.err)
		}
		e.name = ti.name
	}
	var cfg handlerConfig
	for _, o := range opts {
		if o == nil {
			return nil, fmt.Errorf("%w: nil HandlerOption for the %s handler of %s", ErrInvalidHandler, kind, t)
		}
		o.apply(&cfg)
	}
	for i, m := range cfg.mw {
		if m == nil {
			return nil, fmt.Errorf("%w: middleware %d of the %s handler for %s is nil", ErrInvalidHandler, i, kind, t)
		}
	}
	if cfg.name != "" {
		e.handler, e.named = cfg.name, true
	}
	if cfg.hasPriority && kind != KindEvent {
		return nil, fmt.Errorf("%w: WithPriority orders event handlers; the %s handler for %s has no others to run before or after", ErrInvalidHandler, kind, t)
	}
	if cfg.pooled && kind != KindCommand && kind != KindQuery {
		return nil, fmt.Errorf("%w: WithPooledContext applies to command and query handlers, not to the %s handler for %s", ErrInvalidHandler, kind, t)
	}
	e.priority = cfg.priority
	e.own = cfg.mw
	e.pooled = cfg.pooled
	return e, nil
}

func (b *Bus) addSingle(e *entry) error {
	return b.update(func(r *handlerTable) error {
		m := r.commands
		if e.kind != KindCommand {
			m = r.queries
		}
		k := keyOf(e.msgType)
		if old, ok := m[k]; ok {
			return fmt.Errorf("%w: %s %s already handled by %s, cannot add %s", ErrDuplicateHandler, old.kind, e.name, old.handler, e.handler)
		}
		m[k] = e
		return nil
	})
}

func mustRegister(err error) {
	if err != nil {
		panic(err)
	}
}

func typeMismatch(kind Kind, want reflect.Type, body any) error {
	return fmt.Errorf("%w: %s handler for %s got a %T", ErrInvalidMessage, kind, want, body)
}

// HandleCommand registers h as the handler of commands of type C, which must
// be a struct type. [Send] runs it in a unit of work and returns its result.
//
// HandleCommand panics with an error wrapping ErrDuplicateHandler if C
// already has a handler (registering the very same function again included)
// and with ErrInvalidHandler for a nil bus, a nil h or a C that is not a
// struct, like http.ServeMux does for a duplicate pattern. Use
// [HandleCommandSafely] to get the error instead.
func HandleCommand[C, R any](bus *Bus, h func(ctx context.Context, cmd C) (R, error), opts ...HandlerOption) {
	mustRegister(HandleCommandSafely(bus, h, opts...))
}

// HandleCommandSafely is [HandleCommand] returning the error instead of
// panicking.
func HandleCommandSafely[C, R any](bus *Bus, h func(ctx context.Context, cmd C) (R, error), opts ...HandlerOption) error {
	e, err := newEntry[C](bus, KindCommand, h, opts)
	if err != nil {
		return err
	}
	e.resultType = reflect.TypeFor[R]()
	e.base = HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		c, ok := m.Body.(C)
		if !ok {
			return nil, typeMismatch(KindCommand, e.msgType, m.Body)
		}
		return h(ctx, c)
	})
	return bus.addSingle(e)
}

// HandleCommandNoResult registers h as the handler of commands of type C
// that return only an error. Dispatch them with [Exec]. It panics like
// [HandleCommand]; [HandleCommandNoResultSafely] returns the error instead.
func HandleCommandNoResult[C any](bus *Bus, h func(ctx context.Context, cmd C) error, opts ...HandlerOption) {
	mustRegister(HandleCommandNoResultSafely(bus, h, opts...))
}

// HandleCommandNoResultSafely is [HandleCommandNoResult] returning the error
// instead of panicking.
func HandleCommandNoResultSafely[C any](bus *Bus, h func(ctx context.Context, cmd C) error, opts ...HandlerOption) error {
	e, err := newEntry[C](bus, KindCommand, h, opts)
	if err != nil {
		return err
	}
	e.resultType = reflect.TypeFor[struct{}]()
	e.base = HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		c, ok := m.Body.(C)
		if !ok {
			return nil, typeMismatch(KindCommand, e.msgType, m.Body)
		}
		return struct{}{}, h(ctx, c)
	})
	return bus.addSingle(e)
}

// HandleQuery registers h as the handler of queries of type Q, which must be
// a struct type. [Query] runs it without a unit of work: [Emit] inside it
// fails with ErrNoUnitOfWork. It panics like [HandleCommand];
// [HandleQuerySafely] returns the error instead. A type has at most one
// query or stream query handler.
func HandleQuery[Q, R any](bus *Bus, h func(ctx context.Context, q Q) (R, error), opts ...HandlerOption) {
	mustRegister(HandleQuerySafely(bus, h, opts...))
}

// HandleQuerySafely is [HandleQuery] returning the error instead of
// panicking.
func HandleQuerySafely[Q, R any](bus *Bus, h func(ctx context.Context, q Q) (R, error), opts ...HandlerOption) error {
	e, err := newEntry[Q](bus, KindQuery, h, opts)
	if err != nil {
		return err
	}
	e.resultType = reflect.TypeFor[R]()
	e.base = HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		q, ok := m.Body.(Q)
		if !ok {
			return nil, typeMismatch(KindQuery, e.msgType, m.Body)
		}
		return h(ctx, q)
	})
	return bus.addSingle(e)
}

// HandleStream registers h as the handler of streaming queries of type Q.
// [Stream] calls it and yields what its sequence yields. It panics like
// [HandleCommand]; [HandleStreamSafely] returns the error instead.
func HandleStream[Q, T any](bus *Bus, h func(ctx context.Context, q Q) iter.Seq2[T, error], opts ...HandlerOption) {
	mustRegister(HandleStreamSafely(bus, h, opts...))
}

// HandleStreamSafely is [HandleStream] returning the error instead of
// panicking.
func HandleStreamSafely[Q, T any](bus *Bus, h func(ctx context.Context, q Q) iter.Seq2[T, error], opts ...HandlerOption) error {
	e, err := newEntry[Q](bus, KindStream, h, opts)
	if err != nil {
		return err
	}
	e.resultType = reflect.TypeFor[T]()
	e.base = HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		q, ok := m.Body.(Q)
		if !ok {
			return nil, typeMismatch(KindStream, e.msgType, m.Body)
		}
		return h(ctx, q), nil
	})
	return bus.addSingle(e)
}

// Subscribe registers h as a handler of events of type E. E is either a
// struct type, or an interface type: the handler then receives every event
// whose type implements E, and with E = any it receives every event.
// Subscribing the very same function value twice is allowed; it still runs
// once per event.
//
// The handlers of an event run by ascending [WithPriority] (0 by default);
// among equal priorities, handlers of the event's own type run first, then
// those subscribed to an interface, then those subscribed to any, each in
// registration order.
//
// Handlers that one event can reach must have distinct names (the name
// given with [WithName], or the Go function name): the name keys an
// [Inbox], logs and test assertions. Two closures of one function literal
// share a Go function name, so subscribing both to one event needs
// WithName.
//
// Subscribe panics with an error wrapping ErrInvalidHandler for a nil bus,
// a nil h or an E that is neither a struct nor an interface, and with one
// wrapping ErrDuplicateHandler for a name taken by another handler that
// may receive the same events; [SubscribeSafely] returns the error
// instead.
func Subscribe[E any](bus *Bus, h func(ctx context.Context, event E) error, opts ...HandlerOption) {
	mustRegister(SubscribeSafely(bus, h, opts...))
}

// SubscribeSafely is [Subscribe] returning the error instead of panicking.
func SubscribeSafely[E any](bus *Bus, h func(ctx context.Context, event E) error, opts ...HandlerOption) error {
	e, err := newEntry[E](bus, KindEvent, h, opts)
	if err != nil {
		return err
	}
	e.fn = func(ctx context.Context, v any) error {
		ev, ok := v.(E)
		if !ok {
			return typeMismatch(KindEvent, e.msgType, v)
		}
		return h(ctx, ev)
	}
	e.base = HandlerFunc(func(ctx context.Context, m *Message) (any, error) {
		ev, ok := m.Body.(E)
		if !ok {
			return nil, typeMismatch(KindEvent, e.msgType, m.Body)
		}
		return nil, h(ctx, ev)
	})
	return bus.update(func(r *handlerTable) error {
		for _, s := range r.subs {
			if s.handler != e.handler || !mayOverlap(s.msgType, e.msgType) {
				continue
			}
			if s.fnID == e.fnID && s.msgType == e.msgType {
				break // the same function again: it runs once
			}
			other := s.fnName
			if other == e.fnName {
				other = "another closure of the same function literal"
			}
			return fmt.Errorf("%w: event handler name %q, for %s, is taken by %s, subscribed to %s: handlers that one event may reach need distinct names (they key inboxes, logs and assertions); give this one its own with WithName",
				ErrDuplicateHandler, e.handler, e.msgType, other, s.msgType)
		}
		r.subs = append(r.subs, e)
		return nil
	})
}

// mayOverlap reports whether one event type may reach handlers subscribed
// to a and to b: the same type, a struct and an interface it implements,
// or two interfaces (some type may implement both).
func mayOverlap(a, b reflect.Type) bool {
	ai, bi := a.Kind() == reflect.Interface, b.Kind() == reflect.Interface
	switch {
	case a == b, ai && bi:
		return true
	case ai:
		return b.Implements(a)
	case bi:
		return a.Implements(b)
	}
	return false
}
