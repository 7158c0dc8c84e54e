package mb

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
)

type frameKey struct{}

// frame is the context a handler runs with. It carries the message being
// handled and, for commands and events, the unit of work. It is a
// context.Context itself, so that opening a unit costs one allocation.
type frame struct {
	context.Context
	bus    *Bus
	unit   *unit  // nil for queries
	parent *frame // the enclosing frame of the same unit, nil for the unit's root
	msg    Message
	meta   meta   // the identity of a command or query (events keep theirs in eventRecord)
	sp     string // savepoint set by a nested frame
	done   bool   // guarded by unit.mu: the handler has returned
}

// Value makes the frame findable with frameFrom and defers everything else
// to the parent.
func (f *frame) Value(key any) any {
	if key == (frameKey{}) {
		return f
	}
	return f.Context.Value(key)
}

func frameFrom(ctx context.Context) *frame {
	if ctx == nil {
		return nil
	}
	f, _ := ctx.Value(frameKey{}).(*frame)
	return f
}

// unitFrame is a unit of work together with its root frame: one allocation.
type unitFrame struct {
	frame
	u unit
}

// unit is one unit of work.
type unit struct {
	mu     sync.Mutex
	tx     Tx
	events []*eventRecord
	hooks  []hook
	closed bool
	depth  int // cascade depth of the events emitted in this unit
	spSeq  int
	evbuf  [1]*eventRecord
}

type hook struct {
	owner  *frame
	before func(ctx context.Context) error
	after  func(ctx context.Context)
}

// eventRecord is one emitted event on its way to its handlers.
type eventRecord struct {
	value any
	info  *typeInfo
	key   string
	keyed bool
	depth int
	owner *frame
	meta  meta
}

// within reports whether frame o is f or nested inside f.
func within(o, f *frame) bool {
	for ; o != nil; o = o.parent {
		if o == f {
			return true
		}
	}
	return false
}

// isOpen reports whether f can still record events. Call with u.mu held.
func (f *frame) isOpen() bool {
	if f.unit.closed {
		return false
	}
	for p := f; p != nil; p = p.parent {
		if p.done {
			return false
		}
	}
	return true
}

// newUnit starts a unit of work rooted at a new frame whose parent is ctx.
func (b *Bus) newUnit(ctx context.Context, uf *unitFrame) error {
	uf.Context = ctx
	uf.bus = b
	uf.unit = &uf.u
	uf.u.events = uf.u.evbuf[:0]
	if b.opts.Transactor != nil {
		tx, err := b.opts.Transactor.Begin(ctx)
		if err != nil {
			return fmt.Errorf("mb: begin transaction: %w", err)
		}
		if tx == nil {
			return errors.New("mb: begin transaction: Transactor returned a nil Tx")
		}
		uf.u.tx = tx
	}
	return nil
}

// nest opens a frame nested in outer's unit: the frame of a Send from inside
// a handler, or one attempt of the Retry middleware. It sets a savepoint when
// the transaction supports them. It reports false when outer's unit is no
// longer open.
func nest(ctx context.Context, outer *frame) (*frame, bool, error) {
	u := outer.unit
	f := &frame{Context: ctx, bus: outer.bus, unit: u, parent: outer}
	u.mu.Lock()
	if !outer.isOpen() {
		u.mu.Unlock()
		return nil, false, nil
	}
	u.spSeq++
	seq := u.spSeq
	u.mu.Unlock()
	if sp, ok := u.tx.(Savepointer); ok {
		f.sp = "mb_sp_" + strconv.Itoa(seq)
		if err := sp.Savepoint(ctx, f.sp); err != nil {
			return nil, true, fmt.Errorf("mb: savepoint: %w", err)
		}
	}
	return f, true, nil
}

// finishNested ends a nested frame: on error its events and hooks are
// discarded and its savepoint rolled back; on success the savepoint is
// released. It returns err, joined with any savepoint error.
func (f *frame) finishNested(err error) error {
	if f.sp != "" {
		sp := f.unit.tx.(Savepointer)
		if err != nil {
			if rerr := sp.RollbackToSavepoint(f.Context, f.sp); rerr != nil {
				err = errors.Join(err, fmt.Errorf("mb: rollback to savepoint: %w", rerr))
			}
		} else if rerr := sp.ReleaseSavepoint(f.Context, f.sp); rerr != nil {
			err = fmt.Errorf("mb: release savepoint: %w", rerr)
		}
	}
	u := f.unit
	u.mu.Lock()
	f.done = true
	if err != nil {
		u.discard(f)
	}
	u.mu.Unlock()
	return err
}

// discard drops the events and hooks recorded by f and the frames nested in
// it. Call with u.mu held.
func (u *unit) discard(f *frame) {
	evs := u.events[:0]
	for _, e := range u.events {
		if !within(e.owner, f) {
			evs = append(evs, e)
		}
	}
	clear(u.events[len(evs):])
	u.events = evs
	hooks := u.hooks[:0]
	for _, h := range u.hooks {
		if !within(h.owner, f) {
			hooks = append(hooks, h)
		}
	}
	clear(u.hooks[len(hooks):])
	u.hooks = hooks
}

// close ends the unit: nothing more can be recorded. It returns what was.
func (u *unit) close() ([]*eventRecord, []hook) {
	u.mu.Lock()
	u.closed = true
	evs, hooks := u.events, u.hooks
	u.events, u.hooks = nil, nil
	u.mu.Unlock()
	return evs, hooks
}

// prepare runs the before-commit hooks in registration order, including
// those registered by hooks. The first error stops them.
func (u *unit) prepare(f *frame) error {
	for i := 0; ; i++ {
		u.mu.Lock()
		if i >= len(u.hooks) {
			u.mu.Unlock()
			return nil
		}
		h := u.hooks[i]
		u.mu.Unlock()
		if h.before == nil {
			continue
		}
		if err := callHook(f, h.before); err != nil {
			return fmt.Errorf("mb: before-commit hook: %w", err)
		}
	}
}

func callHook(ctx context.Context, fn func(context.Context) error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
	}()
	return fn(ctx)
}

// endUnit ends the unit rooted at f after its handler returned err: on
// success it prepares and commits and returns what the unit recorded; on
// failure it rolls back and returns the handler's error (or the first
// failure of prepare or commit, or both joined with a rollback error).
func (f *frame) endUnit(err error) ([]*eventRecord, []hook, error) {
	u := f.unit
	ctx := f.Context
	if err == nil && len(u.hooks) > 0 {
		err = u.prepare(f)
	}
	u.mu.Lock()
	f.done = true
	u.mu.Unlock()
	if err != nil {
		u.close()
		if u.tx != nil {
			if rerr := u.tx.Rollback(ctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("mb: rollback: %w", rerr))
			}
		}
		return nil, nil, err
	}
	if u.tx != nil {
		if cerr := u.tx.Commit(ctx); cerr != nil {
			u.close()
			return nil, nil, fmt.Errorf("mb: commit: %w", cerr)
		}
	}
	evs, hooks := u.close()
	return evs, hooks, nil
}

// finishRoot ends the unit of a command sent from outside any handler and
// then dispatches its events and runs its after-commit hooks. Event handler
// errors go to the bus's error handler, not to the caller.
func (f *frame) finishRoot(err error) error {
	evs, hooks, err := f.endUnit(err)
	if err != nil {
		return err
	}
	if len(evs) > 0 {
		f.bus.dispatch(f.Context, evs)
	}
	f.bus.runAfter(f.Context, hooks)
	return nil
}

func (b *Bus) runAfter(ctx context.Context, hooks []hook) {
	for _, h := range hooks {
		if h.after == nil {
			continue
		}
		func() {
			defer func() {
				if p := recover(); p != nil {
					b.report(ctx, fmt.Errorf("mb: after-commit hook: %w", newPanicError(p)))
				}
			}()
			h.after(ctx)
		}()
	}
}

// emit validates events and records them in f's unit, all or none.
func (f *frame) emit(events []any) error {
	for _, v := range events {
		if _, err := f.bus.eventInfo(v); err != nil {
			return err
		}
	}
	u := f.unit
	recs := make([]*eventRecord, 0, 1)
	if len(events) > 1 {
		recs = make([]*eventRecord, 0, len(events))
	}
	for _, v := range events {
		ti, _ := f.bus.eventInfo(v)
		r := &eventRecord{value: v, info: ti, depth: u.depth, owner: f}
		r.meta.cause = f.msg.meta
		r.key, r.keyed = dedupKey(v)
		recs = append(recs, r)
	}
	u.mu.Lock()
	if !f.isOpen() {
		u.mu.Unlock()
		return fmt.Errorf("%w: the handler of %s %s has already returned", ErrNoUnitOfWork, f.msg.Kind, f.msg.Name)
	}
	u.events = append(u.events, recs...)
	u.mu.Unlock()
	return nil
}

func dedupKey(v any) (string, bool) {
	if d, ok := v.(interface{ DedupKey() string }); ok {
		return d.DedupKey(), true
	}
	return "", false
}

func (b *Bus) eventInfo(v any) (*typeInfo, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: nil event", ErrInvalidMessage)
	}
	ti := b.typeInfo(reflectTypeOf(v))
	if ti.err != nil {
		return nil, ti.err
	}
	return ti, nil
}

func invalidMessage(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, args...)...)
}

// addHook records a hook in the unit of ctx.
func addHook(ctx context.Context, h hook, what string) error {
	if ctx == nil {
		return fmt.Errorf("%w: %s with a nil context", ErrInvalidArgument, what)
	}
	f := frameFrom(ctx)
	if f == nil || f.unit == nil {
		return fmt.Errorf("%w: %s outside a command or event handler", ErrNoUnitOfWork, what)
	}
	h.owner = f
	u := f.unit
	u.mu.Lock()
	defer u.mu.Unlock()
	if !f.isOpen() {
		return fmt.Errorf("%w: %s after the handler of %s %s returned", ErrNoUnitOfWork, what, f.msg.Kind, f.msg.Name)
	}
	u.hooks = append(u.hooks, h)
	return nil
}

// BeforeCommit registers fn to run when the unit of work of ctx prepares to
// commit, after its handler returned successfully and before the transaction
// commits. fn runs with the handler's context, so it can reach the
// transaction and emit events. An error or panic from fn rolls the unit back
// and is returned to the caller of Send. If the handler that registered fn
// fails, fn is discarded with its events. BeforeCommit returns an error
// wrapping ErrNoUnitOfWork outside a unit of work.
func BeforeCommit(ctx context.Context, fn func(ctx context.Context) error) error {
	if fn == nil {
		return fmt.Errorf("%w: BeforeCommit with a nil func", ErrInvalidArgument)
	}
	return addHook(ctx, hook{before: fn}, "BeforeCommit")
}

// AfterCommit registers fn to run after the unit of work of ctx has
// committed and its events have been dispatched. It does not run if the unit
// rolls back. fn runs with the context the unit was started with (no unit of
// work), so a Send from fn starts a new one. A panic in fn is reported to the
// bus's error handler. AfterCommit returns an error wrapping ErrNoUnitOfWork
// outside a unit of work.
func AfterCommit(ctx context.Context, fn func(ctx context.Context)) error {
	if fn == nil {
		return fmt.Errorf("%w: AfterCommit with a nil func", ErrInvalidArgument)
	}
	return addHook(ctx, hook{after: fn}, "AfterCommit")
}
