package mb

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
)

// msgType returns the type a message of static type M is dispatched by: M
// itself, or the dynamic type when M is an interface.
func msgType[M any](m M) reflect.Type {
	t := reflect.TypeFor[M]()
	if t.Kind() == reflect.Interface {
		return reflect.TypeOf(any(m))
	}
	return t
}

// lookup returns the handler of kind for messages of type t.
func (b *Bus) lookup(ctx context.Context, kind Kind, t reflect.Type) (*entry, error) {
	var e *entry
	if b != nil && ctx != nil && t != nil {
		if e = b.handlerOf(kind, t); e != nil && e.kind == kind {
			return e, nil
		}
	}
	return nil, b.lookupError(ctx, kind, t, e)
}

// handlerOf returns the command handler of t for KindCommand, its query or
// stream handler for the others, or nil.
func (b *Bus) handlerOf(kind Kind, t reflect.Type) *entry {
	r := b.table.Load()
	if kind == KindCommand {
		return r.commands[keyOf(t)]
	}
	return r.queries[keyOf(t)]
}

// lookupError is the error of a lookup that found no handler of kind, but
// e, if not nil, of another kind.
func (b *Bus) lookupError(ctx context.Context, kind Kind, t reflect.Type, e *entry) error {
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil *Bus", ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	case t == nil:
		return fmt.Errorf("%w: nil %s", ErrInvalidMessage, kind)
	}
	ti := b.typeInfo(t)
	if ti.err != nil {
		return ti.err
	}
	if e != nil {
		return fmt.Errorf("%w for %s %s (it has a %s handler)", ErrNoHandler, kind, ti.name, e.kind)
	}
	return fmt.Errorf("%w for %s %s", ErrNoHandler, kind, ti.name)
}

func checkResult(e *entry, want reflect.Type) error {
	if e.resultType == want || e.resultType.AssignableTo(want) {
		return nil
	}
	return fmt.Errorf("%w: %s %s returns %s, not %s", ErrResultType, e.kind, e.name, e.resultType, want)
}

// openCommand opens the frame a command handler runs in: nested in the unit
// of work of ctx when ctx belongs to an open unit of this bus, otherwise the
// root of a new unit.
func (b *Bus) openCommand(ctx context.Context, e *entry) (*frame, error) {
	if outer := frameFrom(ctx); outer != nil && outer.bus() == b && outer.hasUnit() {
		f, ok, err := nestSend(ctx, outer, e)
		if err != nil {
			return nil, err
		}
		if ok {
			return f, nil
		}
	}
	return newFrame(ctx, e), nil
}

// pooledRoot reports whether a command of handler e sent with ctx runs
// with a pooled context: e is pooled, and ctx belongs to no unit of work
// of b that the command would join.
func (b *Bus) pooledRoot(ctx context.Context, e *entry) bool {
	if e.pool == nil || b.opts.ConflictRetry != nil || len(e.obs) > 0 {
		return false
	}
	outer := frameFrom(ctx)
	return outer == nil || outer.bus() != b || !outer.hasUnit()
}

// finish ends the frame of a command handler that returned err; see
// finishRoot and finishNested.
func (f *frame) finish(err error) error {
	x := f.x.Load()
	if x == nil {
		// The common case, as in endUnit: a root frame whose handler
		// recorded nothing.
		if f.x.CompareAndSwap(nil, &doneExt) {
			return err
		}
		x = f.x.Load()
	}
	if x.parent != nil {
		return f.finishNested(x, err)
	}
	return f.finishRoot(x, err)
}

func callTyped[M, R any](ctx context.Context, fn func(context.Context, M) (R, error), m M) (r R, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx, m)
}

// callChain runs the handler of f through its middleware with body as the
// message.
// callChain runs the handler of f through its middleware with body as the
// message, in ctx (f, or a context an observer derived from it).
func callChain(ctx context.Context, f *frame, body any) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	m := f.message()
	m.Body = body
	return f.e.chain.Handle(ctx, m)
}

func resultAs[R any](e *entry, out any) (R, error) {
	r, ok := out.(R)
	if !ok && out != nil {
		var zero R
		return zero, fmt.Errorf("%w: middleware of %s %s returned a %T, not %s", ErrResultType, e.kind, e.name, out, reflect.TypeFor[R]())
	}
	return r, nil
}

// Send runs the handler of cmd in a unit of work and returns its result.
//
// Outside any handler, Send opens a unit of work (whose transaction, when
// the bus has a [Transactor], begins when the handler first asks for it
// with [TxFrom]); when the handler returns without error the
// unit prepares, commits and then dispatches the events the handler emitted,
// before Send returns. Once the unit has committed, its events and
// after-commit hooks run with a context that keeps ctx's values but not its
// cancellation or deadline, so that a caller that goes away (an HTTP client
// disconnecting) never drops committed events; bound them with
// [Options.EventTimeout]. If the handler fails or panics, the unit rolls back,
// its events are discarded and Send returns the handler's error (a panic
// becomes an error wrapping ErrPanic).
//
// Inside a command or event handler of the same bus, Send joins that
// handler's unit of work: its events are dispatched after the outermost unit
// commits, and if this handler fails only its own events (and, with a
// savepoint-capable transaction, its writes) are discarded.
//
// Send returns an error wrapping ErrNoHandler if cmd's type has no command
// handler, ErrResultType without running the handler if the handler's result
// cannot be returned as R, and ErrInvalidArgument for a nil bus or context.
// Event handler errors never fail Send; they go to [Options.ErrorHandler].
func Send[R, C any](ctx context.Context, bus *Bus, cmd C) (R, error) {
	var zero R
	e, err := bus.lookup(ctx, KindCommand, msgType(cmd))
	if err != nil {
		return zero, err
	}
	fn, fast := e.fn.(func(context.Context, C) (R, error))
	fast = fast && e.direct
	if !fast {
		if err := checkResult(e, reflect.TypeFor[R]()); err != nil {
			return zero, err
		}
	} else if bus.pooledRoot(ctx, e) {
		pf, pctx := e.pooledContext(ctx)
		res, err := callTyped(pctx, fn, cmd)
		if err = pf.end(err); err != nil {
			return zero, err
		}
		return res, nil
	}
	for try := 1; ; try++ {
		f, err := bus.openCommand(ctx, e)
		if err != nil {
			return zero, err
		}
		var hctx context.Context = f
		if len(e.obs) > 0 {
			hctx = f.observe(cmd, try)
		}
		var res R
		if fast {
			res, err = callTyped(hctx, fn, cmd)
		} else {
			var out any
			if out, err = callChain(hctx, f, cmd); err == nil {
				res, err = resultAs[R](e, out)
			}
		}
		if len(e.obs) > 0 {
			f.setResult(f.x.Load(), res)
		}
		again, err := f.finishTry(err, try)
		switch {
		case again:
			continue
		case err != nil:
			return zero, err
		}
		return res, nil
	}
}

// Exec runs the handler of cmd like [Send] and discards its result. It is how
// commands registered with [HandleCommandNoResult] are sent, and works for
// commands with a result too.
func Exec[C any](ctx context.Context, bus *Bus, cmd C) error {
	e, err := bus.lookup(ctx, KindCommand, msgType(cmd))
	if err != nil {
		return err
	}
	fn, fast := e.fn.(func(context.Context, C) error)
	fast = fast && e.direct
	if fast && bus.pooledRoot(ctx, e) {
		pf, pctx := e.pooledContext(ctx)
		return pf.end(callErr(pctx, fn, cmd))
	}
	for try := 1; ; try++ {
		f, err := bus.openCommand(ctx, e)
		if err != nil {
			return err
		}
		var hctx context.Context = f
		if len(e.obs) > 0 {
			hctx = f.observe(cmd, try)
		}
		var out any
		if fast {
			if err = callErr(hctx, fn, cmd); len(e.obs) > 0 {
				out = struct{}{}
			}
		} else {
			out, err = callChain(hctx, f, cmd)
		}
		if len(e.obs) > 0 {
			f.setResult(f.x.Load(), out)
		}
		if again, err := f.finishTry(err, try); !again {
			return err
		}
	}
}

// Run runs fn in a unit of work of bus, as [Send] runs a command's
// handler, for work that is not a command: an HTTP request (see package
// mbhttp), a job, a script. fn's context carries the unit: [Emit],
// [TxFrom], the hooks and Send of bus work in it. The unit commits when fn
// returns nil, rolls back when it returns an error or panics (a panic
// becomes an error wrapping ErrPanic), and its events are dispatched after
// the commit, before Run returns; [Options.ConflictRetry] runs fn again
// like a command's handler. Inside a handler of bus, Run joins that
// handler's unit as a nested Send does. fn runs without the bus's
// middleware; it is named "mb.Run" in errors and metadata, or name when
// one is given.
//
// Run returns fn's error (or the unit's: a failed commit), and an error
// wrapping ErrInvalidArgument for a nil bus, context or fn.
func Run(ctx context.Context, bus *Bus, name string, fn func(ctx context.Context) error) error {
	switch {
	case bus == nil:
		return fmt.Errorf("%w: Run on a nil *Bus", ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: Run with a nil context", ErrInvalidArgument)
	case fn == nil:
		return fmt.Errorf("%w: Run with a nil func", ErrInvalidArgument)
	}
	if name == "" {
		name = "mb.Run"
	}
	e := &entry{bus: bus, kind: KindCommand, name: name, handler: name, fnName: name, named: true, direct: true}
	for try := 1; ; try++ {
		f, err := bus.openCommand(ctx, e)
		if err != nil {
			return err
		}
		if again, err := f.finishTry(callRun(f.observe(nil, try), fn), try); !again {
			return err
		}
	}
}

func callRun(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx)
}

func callErr[M any](ctx context.Context, fn func(context.Context, M) error, m M) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx, m)
}

// Query runs the handler of q and returns its result. Queries run without a
// unit of work: [Emit] inside the handler returns ErrNoUnitOfWork. Errors are
// those of [Send]; a panicking handler returns an error wrapping ErrPanic.
func Query[R, Q any](ctx context.Context, bus *Bus, q Q) (R, error) {
	var zero R
	e, err := bus.lookup(ctx, KindQuery, msgType(q))
	if err != nil {
		return zero, err
	}
	fn, fast := e.fn.(func(context.Context, Q) (R, error))
	fast = fast && e.direct
	if !fast {
		if err := checkResult(e, reflect.TypeFor[R]()); err != nil {
			return zero, err
		}
	}
	if fast && e.pool != nil && len(e.obs) == 0 {
		pf, pctx := e.pooledContext(ctx)
		res, err := callTyped(pctx, fn, q)
		_ = pf.end(nil) // a query frame has no unit to end
		return res, err
	}
	f := newFrame(ctx, e)
	if len(e.obs) > 0 {
		return observedQuery(f, fn, q, fast)
	}
	if fast {
		return callTyped(f, fn, q)
	}
	out, err := callChain(f, f, q)
	if err != nil {
		return zero, err
	}
	return resultAs[R](e, out)
}

// observedQuery is Query's call of the handler of f when the bus has
// observers.
func observedQuery[R, Q any](f *frame, fn func(context.Context, Q) (R, error), q Q, fast bool) (res R, err error) {
	hctx := f.observe(q, 1)
	if fast {
		res, err = callTyped(hctx, fn, q)
	} else {
		var out any
		if out, err = callChain(hctx, f, q); err == nil {
			res, err = resultAs[R](f.e, out)
		}
	}
	x := f.x.Load()
	f.setResult(x, res)
	f.endObservation(x, err, NoUnit)
	return res, err
}

// Stream runs the streaming query handler of q and yields what it yields.
// Dispatch errors (no handler, a T other than the handler's) and a panic in
// the handler are yielded once as (zero, err) and end the sequence. Stopping
// the iteration early stops the handler's sequence. Middleware wraps the call
// that creates the handler's sequence, not its iteration.
func Stream[T, Q any](ctx context.Context, bus *Bus, q Q) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		var zero T
		e, err := bus.lookup(ctx, KindStream, msgType(q))
		if err == nil && e.resultType != reflect.TypeFor[T]() {
			err = fmt.Errorf("%w: stream %s yields %s, not %s", ErrResultType, e.name, e.resultType, reflect.TypeFor[T]())
		}
		if err != nil {
			yield(zero, err)
			return
		}
		f := newFrame(ctx, e)
		var hctx context.Context = f
		if len(e.obs) > 0 {
			hctx = f.observe(q, 1)
		}
		var seq iter.Seq2[T, error]
		if fn, ok := e.fn.(func(context.Context, Q) iter.Seq2[T, error]); ok && e.direct {
			seq, err = callStream(hctx, fn, q)
		} else {
			var out any
			if out, err = callChain(hctx, f, q); err == nil && out != nil {
				var ok bool
				if seq, ok = out.(iter.Seq2[T, error]); !ok {
					err = fmt.Errorf("%w: middleware of stream %s returned a %T", ErrResultType, e.name, out)
				}
			}
		}
		f.endObservation(f.x.Load(), err, NoUnit)
		if err != nil {
			yield(zero, err)
			return
		}
		if seq == nil {
			return
		}
		iterate(seq, yield)
	}
}

func callStream[Q, T any](ctx context.Context, fn func(context.Context, Q) iter.Seq2[T, error], q Q) (seq iter.Seq2[T, error], err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx, q), nil
}

// iterate ranges over the handler's seq, turning a panic of the handler into
// a final error while letting a panic of the consumer's loop body through.
func iterate[T any](seq iter.Seq2[T, error], yield func(T, error) bool) {
	inBody, stopped := false, false
	defer func() {
		if p := recover(); p != nil {
			if inBody {
				panic(p)
			}
			if !stopped {
				var zero T
				yield(zero, newPanicError(p))
			}
		}
	}()
	for v, err := range seq {
		inBody = true
		if !yield(v, err) {
			stopped = true
			return
		}
		inBody = false
	}
}

// Emit records events in the unit of work of ctx. They are dispatched to
// their handlers after the unit commits, in the order they were first
// emitted, and discarded if it rolls back, except for events whose
// DispatchOnRollback method returns true: those are dispatched either way.
// Events are struct values; Emit records all of them or, if one is invalid
// (nil, not a struct, a pointer), none and returns an error wrapping
// ErrInvalidMessage.
//
// Emit returns an error wrapping ErrNoUnitOfWork when ctx has no open unit of
// work: outside a handler, in a query handler, or after the handler returned.
// Emit is safe to call from goroutines the handler starts, as long as the
// handler waits for them.
func Emit(ctx context.Context, events ...any) error {
	if ctx == nil {
		return fmt.Errorf("%w: Emit with a nil context", ErrInvalidArgument)
	}
	f := frameFrom(ctx)
	if f == nil {
		return fmt.Errorf("%w: Emit outside a command or event handler; use mb.Publish", ErrNoUnitOfWork)
	}
	if !f.hasUnit() {
		return fmt.Errorf("%w: Emit in the handler of %s %s; queries have no unit of work", ErrNoUnitOfWork, f.e.kind, f.e.name)
	}
	return f.emit(events)
}

// Publish dispatches events to their handlers. Inside a command or event
// handler of bus, it is [Emit]: the events wait for the unit of work to
// commit. Elsewhere it dispatches them at once, in order, each handler in its
// own unit of work, cascades included, and returns when all are handled; as
// after a commit, the handlers' context keeps ctx's values but not its
// cancellation or deadline ([Options.EventTimeout] bounds each handler).
// Handler errors go to [Options.ErrorHandler], never to the caller; Publish
// returns an error only for invalid arguments (ErrInvalidArgument,
// ErrInvalidMessage), in which case nothing is dispatched.
func Publish(ctx context.Context, bus *Bus, events ...any) error {
	if bus == nil {
		return fmt.Errorf("%w: Publish on a nil *Bus", ErrInvalidArgument)
	}
	if ctx == nil {
		return fmt.Errorf("%w: Publish with a nil context", ErrInvalidArgument)
	}
	f := frameFrom(ctx)
	if f != nil && f.bus() == bus && f.hasUnit() {
		// emit fails with ErrNoUnitOfWork only when the unit has ended (a
		// retained ctx); then the events are dispatched now, as from
		// outside any handler.
		if err := f.emit(events); !errors.Is(err, ErrNoUnitOfWork) {
			return err
		}
	}
	var cause *meta
	if f != nil {
		cause = f.meta()
	}
	var recs []eventRecord
	var frames []eventFrame
	if len(events) == 1 {
		// The common case: one event, often with one handler, whose
		// record and frame then come in one allocation.
		et, err := bus.eventFor(bus.table.Load(), events[0])
		if err != nil {
			return err
		}
		recs, frames = newRecord(et)
		r := &recs[0]
		r.value, r.et, r.meta.cause = events[0], et, cause
		r.key, r.keyed, r.keep = eventKeys(et, r.value)
	} else {
		recs = make([]eventRecord, len(events))
		if err := fillRecords(bus, bus.table.Load(), recs, events, cause); err != nil {
			return err
		}
	}
	if f == nil {
		for i := range recs {
			recs[i].meta.inherit(ctx, nil)
		}
	}
	var buf [8]recorded
	first := buf[:0]
	for i := range recs {
		first = append(first, recorded{rec: &recs[i]})
	}
	bus.dispatch(detached(ctx), first, frames, nil)
	return nil
}
