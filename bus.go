package mb

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultMaxCascadeDepth is the cascade depth limit used when
// [Options.MaxCascadeDepth] is zero.
const DefaultMaxCascadeDepth = 16

// Options configure a [Bus] (see [New]). The zero value is valid and gives
// the defaults.
type Options struct {
	// Middleware wraps every command, query, stream query and event
	// handler, outermost first, outside any per-handler middleware.
	Middleware []Middleware

	// Transactor, if set, gives every unit of work a transaction (one for
	// each Send from outside a handler, one for each event handler),
	// begun the first time a handler or hook of the unit asks for it with
	// [TxFrom]: units that never touch the database begin none. Nested
	// units use savepoints when the transaction supports them
	// ([Savepointer]).
	Transactor Transactor

	// ErrorHandler receives the errors that have no caller to return to:
	// failing or panicking event handlers ([*HandlerError]), cascades past
	// the depth limit (ErrCascadeLimit) and panicking after-commit hooks.
	// It may be called from several goroutines at once. The default logs
	// them with Logger at error level.
	ErrorHandler func(ctx context.Context, err error)

	// Logger is used by the default ErrorHandler. Nil means slog.Default().
	Logger *slog.Logger

	// MaxCascadeDepth bounds how deep events emitted by event handlers may
	// cascade: events emitted by a command are at depth 0, events emitted
	// by their handlers at depth 1, and so on. Events deeper than the limit
	// are not dispatched and are reported to ErrorHandler with
	// ErrCascadeLimit. Zero means DefaultMaxCascadeDepth.
	MaxCascadeDepth int

	// EventConcurrency is how many handlers of one event may run at once.
	// Zero or one runs them one after another in registration order.
	// Events themselves are always dispatched one after another.
	EventConcurrency int

	// EventTimeout, if positive, bounds the unit of work of each event
	// handler (its transaction, middleware, handler and commit): its
	// context is cancelled after EventTimeout, and the handler's error
	// goes to ErrorHandler. Zero means no bound. Committed events are
	// dispatched with a context that keeps the values of the caller's
	// context but not its cancellation or deadline (see [Send]), so this
	// is how a program bounds the time its event handlers may take.
	EventTimeout time.Duration

	// ConflictRetry, if set, runs a unit of work again from the start when
	// the database aborted its transaction as a whole: a serialization
	// failure or a deadlock, which Retry's savepoints cannot repair. The
	// handler runs again in a new unit with a fresh transaction, up to
	// ConflictRetry.MaxAttempts tries in all, ConflictRetry.Backoff
	// apart; the events and hooks of a failed try are discarded
	// (DispatchOnRollback events too, but for the last try's). Which
	// errors are conflicts is ConflictRetry.IsRetryable's call, by default
	// the Transactor's IsConflict(error) bool method (mbsql and mbpgx
	// have one; without it, nothing is retried).
	//
	// Only outermost units are retried: a Send from outside any handler,
	// the unit of each event handler (and so each handling of a consumed
	// message). A nested Send shares its outer unit's transaction; its
	// conflict fails the outer unit, which is retried as a whole. A
	// retried handler must be safe to run again: what it does outside
	// the transaction happens once per try. Nil means no such retry.
	ConflictRetry *RetryOptions

	// Observer, if set, watches every handling and event dispatch; see
	// [Observer] and [Bus.Observe], which adds more.
	Observer Observer

	// Forward, if set, also sends the events that units of work emit to
	// other processes: through an *[Outbox], in the unit's transaction,
	// never lost, or through a *[Publisher] after the commit, lost if the
	// process dies in between. See [Forwarder].
	Forward Forwarder
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix. [New] panics with
// this error; call Validate first to handle it instead.
func (o *Options) Validate() error {
	var p problems
	if o.MaxCascadeDepth < 0 {
		p.add("Options.MaxCascadeDepth is %d; use 0 for the default (%d) or a positive depth", o.MaxCascadeDepth, DefaultMaxCascadeDepth)
	}
	if o.EventTimeout < 0 {
		p.add("Options.EventTimeout is %v; use 0 for no bound or a positive duration", o.EventTimeout)
	}
	if o.EventConcurrency < 0 {
		p.add("Options.EventConcurrency is %d; use 0 or 1 for sequential handlers or a positive limit", o.EventConcurrency)
	}
	for i, mw := range o.Middleware {
		if mw == nil {
			p.add("Options.Middleware[%d] is nil; remove it", i)
		}
	}
	if o.ConflictRetry != nil {
		o.ConflictRetry.check(&p, "Options.ConflictRetry")
	}
	return p.err()
}

// observers returns the observers the options install.
func (o *Options) observers() []Observer {
	if o.Observer == nil {
		return nil
	}
	return []Observer{o.Observer}
}

// withDefaults returns a copy of valid options with the zero fields filled
// and the slices the bus keeps cloned.
func (o Options) withDefaults() Options {
	o.Middleware = slices.Clone(o.Middleware)
	if o.ConflictRetry != nil {
		r := *o.ConflictRetry
		if r.IsRetryable == nil {
			c, ok := o.Transactor.(interface{ IsConflict(error) bool })
			if ok {
				r.IsRetryable = c.IsConflict
			} else {
				r.IsRetryable = func(error) bool { return false }
			}
		}
		r = r.withDefaults()
		o.ConflictRetry = &r
	}
	if o.MaxCascadeDepth == 0 {
		o.MaxCascadeDepth = DefaultMaxCascadeDepth
	}
	if o.EventConcurrency == 0 {
		o.EventConcurrency = 1
	}
	if o.ErrorHandler == nil {
		logger := o.Logger
		o.ErrorHandler = func(ctx context.Context, err error) {
			l := logger
			if l == nil {
				l = slog.Default() // the default at the time of the error
			}
			l.ErrorContext(ctx, "mb: unhandled error", "error", err)
		}
	}
	return o
}

// Bus dispatches commands, queries and events to their handlers.
//
// Create one with [New], register handlers with [HandleCommand], [HandleQuery],
// [HandleStream], [Subscribe] and [Bus.Install], then dispatch with [Send],
// [Exec], [Query], [Stream] and [Publish]. A Bus is safe for concurrent use;
// registering while dispatching is allowed and takes effect for dispatches
// that start afterwards. Dispatch takes no lock shared between goroutines.
// A Bus holds no resources and needs no closing.
type Bus struct {
	opts Options // with the defaults filled in

	mu    sync.Mutex // serialises registration
	table atomic.Pointer[handlerTable]
	types sync.Map // reflect.Type -> *typeInfo
}

// New returns a bus configured by opts: at most one *Options, which may be
// nil; none gives the defaults. The bus keeps a copy. New panics with an
// error wrapping [ErrInvalidArgument], naming each problem, if given more
// than one *Options or invalid ones ([Options.Validate]): both are
// mistakes in the program's set-up.
func New(opts ...*Options) *Bus {
	o := oneOptions("New", opts)
	mustValid(o.Validate())
	b := &Bus{opts: o.withDefaults()}
	b.table.Store(&handlerTable{
		commands: map[typeKey]*entry{},
		queries:  map[typeKey]*entry{},
		mw:       b.opts.Middleware,
		obs:      b.opts.observers(),
	})
	return b
}

// Use appends middleware that wraps every handler, inside the middleware
// given in [Options.Middleware] and any added by earlier calls. It affects
// dispatches that start after it returns. Use panics on a nil bus or a nil
// middleware.
func (b *Bus) Use(mw ...Middleware) {
	if b == nil {
		panic(fmt.Errorf("%w: Use on a nil *Bus", ErrInvalidArgument))
	}
	for i, m := range mw {
		if m == nil {
			panic(fmt.Errorf("%w: Use: middleware %d is nil", ErrInvalidArgument, i))
		}
	}
	b.update(func(r *handlerTable) error {
		r.mw = append(r.mw[:len(r.mw):len(r.mw)], mw...)
		return nil
	})
}

// Clone returns a new bus with b's options, middleware and handlers,
// detached from b: handlers and middleware registered on either
// afterwards do not reach the other. Handlers registered on b run on the
// clone as they do on b, with the clone as their bus ([BusFrom]). A
// typical use is a test that adds a handler or a middleware to a bus set
// up once. Clone is safe to call concurrently with dispatch and
// registration on b.
func (b *Bus) Clone() *Bus {
	if b == nil {
		panic(fmt.Errorf("%w: Clone of a nil *Bus", ErrInvalidArgument))
	}
	c := &Bus{opts: b.opts}
	c.opts.Middleware = slices.Clone(b.opts.Middleware)
	c.table.Store(b.table.Load().rebuild(c))
	return c
}

// Module registers a package's handlers on a bus. A package exposes one
// Module so that a program wires it in with one line:
//
//	func Register(bus *mb.Bus) error {
//		return errors.Join(
//			mb.HandleCommandSafely(bus, createUser),
//			mb.SubscribeSafely(bus, sendWelcomeEmail),
//		)
//	}
type Module func(bus *Bus) error

// Install runs the modules in order and returns their errors joined. Modules
// registered before a failing one stay registered; a program should treat
// an error from Install as fatal.
func (b *Bus) Install(modules ...Module) error {
	if b == nil {
		return fmt.Errorf("%w: Install on a nil *Bus", ErrInvalidArgument)
	}
	var errs []error
	for i, m := range modules {
		if m == nil {
			errs = append(errs, fmt.Errorf("%w: Install: module %d is nil", ErrInvalidHandler, i))
			continue
		}
		if err := m(b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Bus) typeInfo(t reflect.Type) *typeInfo {
	if ti, ok := b.types.Load(t); ok {
		return ti.(*typeInfo)
	}
	ti, _ := b.types.LoadOrStore(t, newTypeInfo(t))
	return ti.(*typeInfo)
}

func (b *Bus) report(ctx context.Context, err error) {
	defer func() {
		// A panicking error handler must not take the dispatcher down.
		_ = recover()
	}()
	b.opts.ErrorHandler(ctx, err)
}

// handlerTable is an immutable snapshot of a bus's handlers. Registration copies
// it, so dispatch reads it without locking.
type handlerTable struct {
	commands map[typeKey]*entry
	queries  map[typeKey]*entry // queries and stream queries
	subs     []*entry           // event handlers in registration order
	mw       []Middleware
	obs      []Observer
	// events caches, per concrete event type, its type info and resolved
	// handlers. It is copied on write: after warm-up, dispatch reads a
	// plain map.
	events atomic.Pointer[map[typeKey]*eventType]
}

// eventType is what dispatch needs to know about one concrete event type,
// as of one handler table.
type eventType struct {
	info     *typeInfo
	table    *handlerTable // the table handlers were resolved against
	handlers []*entry
}

// eventType returns the cached eventType of t, resolving it on first use.
func (b *Bus) eventType(r *handlerTable, t reflect.Type) *eventType {
	k := keyOf(t)
	if m := r.events.Load(); m != nil {
		if et, ok := (*m)[k]; ok {
			return et
		}
	}
	et := &eventType{info: b.typeInfo(t), table: r}
	if et.info.err == nil {
		et.handlers = r.handlersFor(t)
	}
	for {
		old := r.events.Load()
		var m map[typeKey]*eventType
		if old == nil {
			m = make(map[typeKey]*eventType)
		} else {
			if cur, ok := (*old)[k]; ok {
				return cur
			}
			m = make(map[typeKey]*eventType, len(*old)+1)
			for k, v := range *old {
				m[k] = v
			}
		}
		m[k] = et
		if r.events.CompareAndSwap(old, &m) {
			return et
		}
	}
}

func (b *Bus) update(fn func(r *handlerTable) error) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.table.Load()
	r := &handlerTable{
		commands: maps.Clone(old.commands),
		queries:  maps.Clone(old.queries),
		subs:     slices.Clip(old.subs),
		mw:       old.mw,
		obs:      old.obs,
	}
	if err := fn(r); err != nil {
		return err
	}
	b.table.Store(r.rebuild(b))
	return nil
}

// rebuild returns a copy of t whose entries belong to bus and have their
// middleware chains built anew (cheap, and only at set-up), with an empty
// event type cache.
func (t *handlerTable) rebuild(bus *Bus) *handlerTable {
	r := &handlerTable{
		commands: make(map[typeKey]*entry, len(t.commands)),
		queries:  make(map[typeKey]*entry, len(t.queries)),
		subs:     make([]*entry, len(t.subs)),
		mw:       slices.Clip(t.mw),
		obs:      slices.Clip(t.obs),
	}
	own := func(e *entry) *entry {
		ce := *e
		ce.bus = bus
		ce.build(r.mw, r.obs)
		return &ce
	}
	for k, e := range t.commands {
		r.commands[k] = own(e)
	}
	for k, e := range t.queries {
		r.queries[k] = own(e)
	}
	for i, e := range t.subs {
		r.subs[i] = own(e)
	}
	return r
}

// handlersFor returns the event handlers for events of concrete type t:
// those subscribed to t itself and those subscribed to an interface that t
// implements, by ascending priority, then t's own before interfaces before
// any, then in registration order. A handler reachable more than once runs
// once.
func (r *handlerTable) handlersFor(t reflect.Type) []*entry {
	var hs []*entry
	for _, s := range r.subs {
		if s.msgType != t && (s.msgType.Kind() != reflect.Interface || !t.Implements(s.msgType)) {
			continue
		}
		dup := false
		for _, h := range hs {
			if s.fnID != 0 && h.fnID == s.fnID && h.msgType == s.msgType {
				dup = true
				break
			}
		}
		if !dup {
			hs = append(hs, s)
		}
	}
	slices.SortStableFunc(hs, func(a, b *entry) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(subscriptionClass(a.msgType), subscriptionClass(b.msgType)))
	})
	return hs
}

// subscriptionClass orders handlers of equal priority: 0 for a struct
// type, 1 for an interface with methods, 2 for any.
func subscriptionClass(t reflect.Type) int {
	switch {
	case t.Kind() != reflect.Interface:
		return 0
	case t.NumMethod() > 0:
		return 1
	}
	return 2
}

// BusFrom returns the bus whose handler ctx belongs to, or nil outside any
// handler. A handler uses it to send a nested command or query without a
// global variable or a closure over the bus:
//
//	func placeOrder(ctx context.Context, cmd PlaceOrder) (Order, error) {
//		price, err := mb.Query[Price](ctx, mb.BusFrom(ctx), GetPrice{cmd.Item})
//		...
//	}
//
// Called with nil, Send, Exec, Query, Stream and Publish return an error
// wrapping ErrInvalidArgument.
func BusFrom(ctx context.Context) *Bus {
	if f := frameFrom(ctx); f != nil {
		return f.bus()
	}
	return nil
}

// subscribersOf returns the event handlers, registered now, that events
// of the given types reach.
func (b *Bus) subscribersOf(types []reflect.Type) []*entry {
	var hs []*entry
	r := b.table.Load()
	for _, s := range r.subs {
		for _, t := range types {
			if mayOverlap(s.msgType, t) {
				hs = append(hs, s)
				break
			}
		}
	}
	return hs
}
