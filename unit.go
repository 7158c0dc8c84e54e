package mb

// The unit of work.
//
// Lifecycle. A Send from outside any handler, and each event handler,
// opens a unit: a root frame (newFrame for a command, runEvent for an
// event handler) whose extension holds the unit. The handler runs with the
// frame as its context; Emit, BeforeCommit, AfterCommit and AfterRollback
// record into the unit; TxFrom begins its transaction on first use
// (txFor). When the handler returns, endUnit runs the before-commit hooks,
// commits (or rolls back on any failure) and closes the unit; finishRoot
// (or dispatch, for an event handler's unit) then dispatches the recorded
// events and runs the after-commit hooks. A Send from inside a handler
// (nestSend), and each try of the Retry middleware (nestTry), opens a
// nested frame in the same unit instead, with a savepoint when the
// transaction has begun; finishNested releases it, or on failure rolls it
// back and discards what the frame and the frames inside it recorded
// (discard), keeping only DispatchOnRollback events.
//
// Frame shapes, each one allocation: a bare frame (a handler without
// middleware that records nothing: Send's common case), a unitFrame or a
// queryFrame (frame, extension and Message together, when middleware will
// read the message), a frame whose unitExt is allocated on first use
// (ext), and a nestedFrame (frame, frameExt and Message, for nested
// frames). A unit keeps room for its first event record (unit.first), so a
// handler that emits one event allocates its unitExt and nothing more; the
// transaction's state (txState) and the hooks (hookList) are allocated
// only when a unit has them. A root Send or a Query of a handler
// registered WithPooledContext runs with a context reused from call to
// call instead (pooledFrame, in pooled.go), which allocates an ordinary
// frame for its call only when mb is reached through it.
//
// Locks. unit.mu guards the events, hooks and frame states of a unit; it
// is held only for short bookkeeping, never while user code runs or I/O
// happens. txState.mu serialises beginning the transaction, setting
// savepoints and the end of the unit's transaction; it is held during
// Begin and Savepoint calls. The two are never held together: txFor and
// endUnit take mu, release it, then take txState.mu. A frame's extension
// is published with an atomic compare-and-swap (frame.ext); a frame that
// ends without one is marked done with another (doneExt), so that the
// common path takes no lock.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"
)

type frameKey struct{}

// frame is the context a handler runs with. It is a context.Context itself
// and is kept to 32 bytes: a command that records nothing costs this one
// allocation. Everything else a handler may need (its message, identity and
// unit of work) lives in a frameExt created on first use. The frame of an
// event handler is the first field of an eventFrame (see record).
type frame struct {
	context.Context
	e *entry // the handler being run
	// x is the extension: nil while there is none and the handler runs,
	// &doneExt once the handler has returned without one.
	x atomic.Pointer[frameExt]
}

// eventFrame is the frame of an event handler, with the event it handles.
type eventFrame struct {
	frame
	rec *eventRecord
}

// doneExt marks a frame whose handler returned before it had an
// extension. It is never written.
var doneExt frameExt

// record returns the event f's handler handles, nil for a command or
// query handler. Every frame of an event handler is the first field of an
// eventFrame (dispatch, recordAndFrame, nestTry), which makes the
// conversion valid.
func (f *frame) record() *eventRecord {
	if f.e.kind != KindEvent {
		return nil
	}
	return (*eventFrame)(unsafe.Pointer(f)).rec
}

// done reports whether f's handler has returned. For a frame with an
// extension in a unit, call it with the unit's mu held.
func (f *frame) done() bool {
	x := f.x.Load()
	return x == &doneExt || x != nil && x.done
}

// frameExt is the part of a frame that is created when first needed: at
// once for nested frames and middleware; lazily when a handler emits,
// registers a hook, begins a transaction or asks for its metadata.
type frameExt struct {
	unit   *unit    // nil for queries
	parent *frame   // the enclosing frame of the same unit, nil for a unit's root
	meta   *meta    // the message's identity: own, the event's, or a Retry try's outer frame's
	msg    *Message // what middleware sees; nil until callChain needs it
	sp     int32    // the savepoint a nested frame set (spName), 0 for none
	done   bool     // the handler has returned; guarded by unit.mu
	obs    *observation
	own    meta // the identity of a command or query
}

// unitExt is a frameExt with the unit of work it roots: one allocation.
type unitExt struct {
	frameExt
	u unit
}

// unitExtMsg is a unitExt with room for the Message of a handler behind
// middleware.
type unitExtMsg struct {
	unitExt
	m Message
}

// nestedFrame is a frame nested in another's unit, with its extension. It
// is an eventFrame so that a Retry try of an event handler has its event.
type nestedFrame struct {
	eventFrame
	ext frameExt
	m   Message
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

func (f *frame) bus() *Bus { return f.e.bus }

// hasUnit reports whether handlers of f's kind run in a unit of work.
func (f *frame) hasUnit() bool { return f.e.kind == KindCommand || f.e.kind == KindEvent }

// describe returns the kind and name of the message f handles: for an
// event, the name of the event's own type, whatever the handler
// subscribed to.
func (f *frame) describe() (Kind, string) {
	if rec := f.record(); rec != nil {
		return KindEvent, rec.et.info.name
	}
	return f.e.kind, f.e.name
}

// meta returns the identity of the message f handles.
func (f *frame) meta() *meta {
	if rec := f.record(); rec != nil {
		return &rec.meta
	}
	return f.ext().meta
}

// ext returns f's extension, creating it on first use. Safe for concurrent
// use: the handler's goroutines may race to create it; one wins. Made
// after the handler returned, it is done: it records nothing.
func (f *frame) ext() *frameExt {
	for {
		x := f.x.Load()
		if x != nil && x != &doneExt {
			return x
		}
		nx := f.newExt()
		nx.done = x == &doneExt
		if f.x.CompareAndSwap(x, nx) {
			return nx
		}
	}
}

func (f *frame) newExt() *frameExt {
	switch {
	case !f.hasUnit():
		return f.initExt(&frameExt{})
	case f.e.direct:
		return f.initUnitExt(&unitExt{})
	}
	ux := &unitExtMsg{}
	ux.msg = &ux.m
	return f.initUnitExt(&ux.unitExt)
}

// initUnitExt makes the zero ux (its msg set, if any) f's extension with
// the unit of work it roots, and returns it; the caller stores it in f.x.
func (f *frame) initUnitExt(ux *unitExt) *frameExt {
	ux.u.events = ux.u.evbuf[:0]
	ux.unit = &ux.u
	return f.initExt(&ux.frameExt)
}

// initExt fills the zero x (its unit and msg set, if any) for f and
// returns it.
func (f *frame) initExt(x *frameExt) *frameExt {
	if rec := f.record(); rec != nil {
		x.unit.depth = rec.depth + 1
		x.meta = &rec.meta
	} else {
		x.meta = &x.own
		x.own.inherit(f.Context, frameFrom(f.Context))
	}
	if x.msg != nil {
		f.initMessage(x.msg, x.meta)
	}
	return x
}

func (f *frame) initMessage(m *Message, md *meta) {
	m.Kind, m.Name = f.describe()
	m.Handler, m.meta = f.e.handler, md
}

// message returns the Message middleware sees for f, creating it on
// first use. Only the goroutine that runs f's middleware calls it.
func (f *frame) message() *Message {
	x := f.ext()
	if x.msg == nil {
		m := &Message{}
		f.initMessage(m, x.meta)
		x.msg = m
	}
	return x.msg
}

// unitFrame is a frame, the extension with its unit and the Message
// middleware sees, in one allocation.
type unitFrame struct {
	frame
	ux unitExt
	m  Message
}

// queryFrame is a frame of a query or stream handler, its extension and
// its Message, in one allocation.
type queryFrame struct {
	frame
	x frameExt
	m Message
}

// newFrame returns a frame for handler e with ctx, allocated with its
// extension when e.eagerExt says it will need one.
func newFrame(ctx context.Context, e *entry) *frame {
	if !e.eagerExt {
		return &frame{Context: ctx, e: e}
	}
	if e.kind == KindQuery || e.kind == KindStream {
		qf := &queryFrame{}
		qf.Context, qf.e = ctx, e
		qf.x.msg = &qf.m
		qf.frame.x.Store(qf.initExt(&qf.x))
		return &qf.frame
	}
	uf := &unitFrame{}
	uf.Context, uf.e = ctx, e
	uf.ux.msg = &uf.m
	uf.frame.x.Store(uf.initUnitExt(&uf.ux))
	return &uf.frame
}

func parentOf(f *frame) *frame {
	if x := f.x.Load(); x != nil {
		return x.parent
	}
	return nil
}

// within reports whether frame o is f or nested inside f.
func within(o, f *frame) bool {
	for ; o != nil; o = parentOf(o) {
		if o == f {
			return true
		}
	}
	return false
}

// isOpen reports whether f can still record into u. Call with u.mu held.
func (f *frame) isOpen(u *unit) bool {
	if u.closed {
		return false
	}
	for p := f; p != nil; p = parentOf(p) {
		if p.done() {
			return false
		}
	}
	return true
}

// unit is one unit of work.
type unit struct {
	mu       sync.Mutex
	events   []recorded
	evbuf    [1]recorded
	hooks    *hookList               // nil until the first hook
	tx       atomic.Pointer[txState] // nil until the transaction is asked for (txFor)
	depth    int32                   // cascade depth of the events emitted in this unit
	closed   bool
	txEnded  bool // the unit is ending: no transaction may begin
	firstUse bool // first holds a record
	first    eventRecord
}

// txState is a unit's transaction, begun on first use (see txFor). mu
// serialises beginning it, savepoints and the end of the unit.
type txState struct {
	mu    sync.Mutex
	tx    Tx
	err   error // why the transaction could not begin; fails the unit
	ended bool  // the unit has ended: no transaction may begin
	spSeq int32
}

// hookList is the hooks of a unit in registration order, with room for
// two (an Inbox claim registers two).
type hookList struct {
	list []hook
	buf  [2]hook
}

type hook struct {
	owner    *frame
	before   func(ctx context.Context) error
	after    func(ctx context.Context)
	rollback func(ctx context.Context) // AfterRollback
}

// eventRecord is one emitted event on its way to its handlers.
type eventRecord struct {
	value any
	et    *eventType // resolved against et.table when the record was made
	key   string
	depth int32
	keyed bool
	keep  bool // dispatched even if its unit rolls back
	meta  meta
}

// recorded is an event recorded in a unit of work, with the frame that
// recorded it (nil for an event published from outside any handler).
type recorded struct {
	rec   *eventRecord
	owner *frame
}

// rootOf returns the root frame of f's unit.
func rootOf(f *frame) *frame {
	for p := parentOf(f); p != nil; p = parentOf(p) {
		f = p
	}
	return f
}

// txFor returns the unit's transaction for frame f, beginning it on first
// use with the context the unit was opened with. A unit whose handlers never
// ask for it has none: nothing to begin or commit. When the transaction
// begins inside nested frames (a Send from a handler, a Retry try), it
// sets their savepoints then, outermost first: nothing was written before,
// so this is the state they would have saved when they opened. A failure
// to begin (or to set those savepoints) is kept and fails the unit, even
// if the handler ignores it.
func (u *unit) txFor(f *frame, t Transactor) (Tx, error) {
	u.mu.Lock()
	ended, open := u.txEnded, f.isOpen(u)
	ts := u.tx.Load()
	if ts == nil && !ended && open {
		ts = &txState{}
		u.tx.Store(ts)
	}
	u.mu.Unlock()
	if ts == nil {
		return nil, txGone(ended)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch {
	case ts.tx != nil:
		return ts.tx, nil
	case ts.err != nil:
		return nil, ts.err
	case ts.ended || ended || !open:
		return nil, txGone(ts.ended || ended)
	}
	tx, err := t.Begin(rootOf(f).Context)
	switch {
	case err != nil:
		ts.err = fmt.Errorf("mb: begin transaction: %w", err)
		return nil, ts.err
	case tx == nil:
		ts.err = errors.New("mb: begin transaction: the Transactor returned a nil Tx")
		return nil, ts.err
	}
	ts.tx = tx
	sp, ok := tx.(Savepointer)
	if !ok {
		return tx, nil
	}
	var nested []*frame // the nested frames from f outwards
	for p := f; p != nil; p = parentOf(p) {
		if parentOf(p) != nil {
			nested = append(nested, p)
		}
	}
	for i := len(nested) - 1; i >= 0; i-- {
		if err := ts.savepoint(sp, nested[i]); err != nil {
			ts.err = err
			return nil, err
		}
	}
	return tx, nil
}

// txGone is the error of TxFrom once the handler has returned or its unit
// has ended.
func txGone(ended bool) error {
	if ended {
		return fmt.Errorf("%w: TxFrom after the unit of work ended", ErrNoUnitOfWork)
	}
	return fmt.Errorf("%w: TxFrom after the handler returned", ErrNoUnitOfWork)
}

// spName is the name of savepoint n.
func spName(n int32) string { return "mb_sp_" + strconv.Itoa(int(n)) }

// savepoint sets the savepoint of the nested frame f. Call with ts.mu
// held.
func (ts *txState) savepoint(sp Savepointer, f *frame) error {
	ts.spSeq++
	x := f.x.Load()
	if err := sp.Savepoint(f.Context, spName(ts.spSeq)); err != nil {
		return fmt.Errorf("mb: savepoint: %w", err)
	}
	x.sp = ts.spSeq
	return nil
}

// nestSend opens the frame of a Send from inside a handler: handler e,
// nested in outer's unit, with outer's message as its cause. See open.
func nestSend(ctx context.Context, outer *frame, e *entry) (*frame, bool, error) {
	nf := &nestedFrame{}
	f, x := &nf.frame, &nf.ext
	f.Context, f.e = ctx, e
	x.meta, x.msg = &x.own, &nf.m
	x.own.cause = outer.meta()
	f.initMessage(x.msg, x.meta)
	return nf.open(outer)
}

// nestTry opens the frame of one try of the Retry middleware: the same
// handler and message as outer, in a scope of its own. See open.
func nestTry(ctx context.Context, outer *frame) (*frame, bool, error) {
	nf := &nestedFrame{}
	f, x := &nf.frame, &nf.ext
	f.Context, f.e, nf.rec = ctx, outer.e, outer.record()
	ox := outer.ext()
	x.meta, x.msg = ox.meta, ox.msg
	return nf.open(outer)
}

// open nests nf, whose handler and message are set, in outer's unit, and
// sets its savepoint when the unit's transaction has begun and supports
// them. It reports false when outer's unit is no longer open.
func (nf *nestedFrame) open(outer *frame) (*frame, bool, error) {
	f, x := &nf.frame, &nf.ext
	u := outer.ext().unit
	x.unit, x.parent = u, outer
	f.x.Store(x)
	u.mu.Lock()
	open := outer.isOpen(u)
	u.mu.Unlock()
	if !open {
		return nil, false, nil
	}
	// Without a transaction yet, there is nothing to save: txFor sets the
	// savepoint if one begins inside f.
	ts := u.tx.Load()
	if ts == nil {
		return f, true, nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if sp, ok := ts.tx.(Savepointer); ok {
		if err := ts.savepoint(sp, f); err != nil {
			return nil, true, err
		}
	}
	return f, true, nil
}

// finishNested ends a nested frame: on error its events and hooks are
// discarded and its savepoint rolled back; on success the savepoint is
// released. x is f's extension. It returns err, joined with any savepoint
// error.
func (f *frame) finishNested(x *frameExt, err error) error {
	u := x.unit
	if ts := u.tx.Load(); ts != nil {
		ts.mu.Lock()
		n, tx := x.sp, ts.tx
		ts.mu.Unlock()
		if n != 0 {
			sp := tx.(Savepointer)
			if err != nil {
				if rerr := sp.RollbackToSavepoint(f.Context, spName(n)); rerr != nil {
					err = errors.Join(err, fmt.Errorf("mb: rollback to savepoint: %w", rerr))
				}
			} else if rerr := sp.ReleaseSavepoint(f.Context, spName(n)); rerr != nil {
				err = fmt.Errorf("mb: release savepoint: %w", rerr)
			}
		}
	}
	var undone []hook
	u.mu.Lock()
	x.done = true
	if err != nil {
		undone = u.discard(f)
	}
	u.mu.Unlock()
	f.bus().runRollback(f.Context, undone)
	if x.obs != nil {
		outcome := Joined
		if err != nil {
			outcome = RolledBack
		}
		f.endObservation(x, err, outcome)
	}
	return err
}

// discard drops the events and hooks recorded by f and the frames nested in
// it, and returns the dropped hooks. Call with u.mu held.
func (u *unit) discard(f *frame) []hook {
	evs := u.events[:0]
	for _, e := range u.events {
		if e.rec.keep || !within(e.owner, f) {
			evs = append(evs, e)
		}
	}
	clear(u.events[len(evs):])
	u.events = evs
	if u.hooks == nil {
		return nil
	}
	hooks := u.hooks.list[:0]
	var dropped []hook
	for _, h := range u.hooks.list {
		if !within(h.owner, f) {
			hooks = append(hooks, h)
		} else if h.rollback != nil {
			dropped = append(dropped, h)
		}
	}
	clear(u.hooks.list[len(hooks):])
	u.hooks.list = hooks
	return dropped
}

// hookCount returns how many hooks u has. Call with u.mu held.
func (u *unit) hookCount() int {
	if u.hooks == nil {
		return 0
	}
	return len(u.hooks.list)
}

// close ends the unit: nothing more can be recorded. It returns what was.
func (u *unit) close() ([]recorded, []hook) {
	u.mu.Lock()
	u.closed = true
	evs := u.events
	var hooks []hook
	if u.hooks != nil {
		hooks = u.hooks.list
	}
	u.events, u.hooks = nil, nil
	u.mu.Unlock()
	return evs, hooks
}

// prepare runs the before-commit hooks in registration order, including
// those registered by hooks. The first error stops them.
func (u *unit) prepare(f *frame) error {
	for i := 0; ; i++ {
		u.mu.Lock()
		if i >= u.hookCount() {
			u.mu.Unlock()
			return nil
		}
		h := u.hooks.list[i]
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
// failure it rolls back and returns the events that are dispatched even
// then (DispatchOnRollback) and the handler's error (or the first failure
// of prepare or commit, joined with a rollback error if any). x is f's
// extension as the caller loaded it, nil if there was none yet.
func (f *frame) endUnit(x *frameExt, err error) ([]recorded, []hook, error) {
	evs, hooks, err := f.closeUnit(x, err)
	if x != nil && x.obs != nil {
		outcome := Committed
		if err != nil {
			outcome = RolledBack
		}
		f.endObservation(x, err, outcome)
	}
	return evs, hooks, err
}

// closeUnit is endUnit but for the observers.
func (f *frame) closeUnit(x *frameExt, err error) ([]recorded, []hook, error) {
	if x == nil {
		// The handler recorded nothing and there is no transaction: the
		// common case costs one atomic operation. A goroutine of the
		// handler that emits concurrently either lands before this point
		// (and its extension is seen) or sees the frame done and fails.
		if f.x.CompareAndSwap(nil, &doneExt) {
			return nil, nil, err
		}
		x = f.x.Load()
	}
	u := x.unit
	ctx := f.Context
	if err == nil {
		u.mu.Lock()
		n := u.hookCount()
		u.mu.Unlock()
		if n > 0 {
			err = u.prepare(f)
		}
		if fw := f.bus().opts.Forward; err == nil && fw != nil {
			u.mu.Lock()
			evs := slices.Clone(u.events)
			u.mu.Unlock()
			if len(evs) > 0 {
				err = fw.beforeCommit(f.bus(), f, evs)
			}
		}
	}
	u.mu.Lock()
	x.done = true
	u.txEnded = true
	ts := u.tx.Load()
	u.mu.Unlock()
	var tx Tx
	if ts != nil {
		ts.mu.Lock()
		ts.ended = true
		var txErr error
		tx, txErr = ts.tx, ts.err
		ts.mu.Unlock()
		if txErr != nil && !errors.Is(err, txErr) {
			err = errors.Join(err, txErr)
		}
	}
	if err != nil {
		evs, hooks := u.close()
		if tx != nil {
			if rerr := tx.Rollback(ctx); rerr != nil {
				err = errors.Join(err, fmt.Errorf("mb: rollback: %w", rerr))
			}
		}
		f.bus().runRollback(ctx, hooks)
		return kept(evs), nil, err
	}
	if tx != nil {
		if cerr := tx.Commit(ctx); cerr != nil {
			evs, hooks := u.close()
			f.bus().runRollback(ctx, hooks)
			return kept(evs), nil, fmt.Errorf("mb: commit: %w", cerr)
		}
	}
	evs, hooks := u.close()
	return evs, hooks, nil
}

// finishTry ends f like finish, except that when f roots a unit of work
// that failed with a conflict the bus retries (Options.ConflictRetry), it
// leaves the unit rolled back with nothing dispatched and reports again:
// the caller runs the handler again, in a new frame, as try+1.
func (f *frame) finishTry(err error, try int) (again bool, _ error) {
	b := f.bus()
	if b.opts.ConflictRetry == nil {
		return false, f.finish(err)
	}
	x := f.x.Load()
	if x == nil {
		if f.x.CompareAndSwap(nil, &doneExt) {
			return err != nil && b.retryConflict(f.Context, err, try), err
		}
		x = f.x.Load()
	}
	if x.parent != nil {
		return false, f.finishNested(x, err)
	}
	evs, hooks, err := f.endUnit(x, err)
	if err != nil && b.retryConflict(f.Context, err, try) {
		return true, err
	}
	return false, f.afterUnit(evs, hooks, err)
}

// retryConflict reports whether an outermost unit that failed with err on
// try runs again (Options.ConflictRetry), after waiting its backoff; false
// when ctx ends first.
func (b *Bus) retryConflict(ctx context.Context, err error, try int) bool {
	r := b.opts.ConflictRetry
	if r == nil || try >= r.MaxAttempts || !r.IsRetryable(err) {
		return false
	}
	return sleepCtx(ctx, r.Backoff.Delay(try)) == nil
}

// kept returns the events among evs that are dispatched even though their
// unit rolled back, in order.
func kept(evs []recorded) []recorded {
	out := evs[:0]
	for _, e := range evs {
		if e.rec.keep {
			out = append(out, e)
		}
	}
	clear(evs[len(out):])
	return out
}

// finishRoot ends the unit of a command sent from outside any handler and
// then dispatches its events and runs its after-commit hooks. Event handler
// errors go to the bus's error handler, not to the caller.
func (f *frame) finishRoot(x *frameExt, err error) error {
	evs, hooks, err := f.endUnit(x, err)
	return f.afterUnit(evs, hooks, err)
}

// afterUnit does what follows the end of the unit rooted at f, with what
// endUnit returned: dispatching the events and running the after-commit
// hooks of a committed unit, or the DispatchOnRollback events of one that
// rolled back. It returns err.
func (f *frame) afterUnit(evs []recorded, hooks []hook, err error) error {
	if err != nil {
		if len(evs) > 0 {
			f.bus().dispatch(detached(f.Context), evs, nil, nil)
		}
		return err
	}
	if len(evs) > 0 || len(hooks) > 0 {
		// Committed: what follows must happen whatever becomes of the
		// caller's context.
		ctx := detached(f.Context)
		if fw := f.bus().opts.Forward; fw != nil && len(evs) > 0 {
			fw.afterCommit(f.bus(), ctx, evs)
		}
		if len(evs) > 0 {
			f.bus().dispatch(ctx, evs, nil, nil)
		}
		if len(hooks) > 0 {
			f.bus().runAfter(ctx, hooks)
		}
	}
	return nil
}

// detached returns ctx without its cancellation and deadline: ctx itself
// when it has neither (a background context and its values), which
// context.WithoutCancel would wrap for nothing.
func detached(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		if _, ok := ctx.Deadline(); !ok {
			return ctx
		}
	}
	return context.WithoutCancel(ctx)
}

// runAfter runs the after-commit hooks among hooks in registration order.
func (b *Bus) runAfter(ctx context.Context, hooks []hook) {
	for _, h := range hooks {
		b.runHook(ctx, h.after, "after-commit")
	}
}

// runRollback runs the after-rollback hooks among hooks, last registered
// first.
func (b *Bus) runRollback(ctx context.Context, hooks []hook) {
	for i := len(hooks) - 1; i >= 0; i-- {
		b.runHook(ctx, hooks[i].rollback, "after-rollback")
	}
}

// runHook runs fn, if set, reporting a panic to the error handler: after
// commit or rollback there is no caller to return it to.
func (b *Bus) runHook(ctx context.Context, fn func(context.Context), what string) {
	if fn == nil {
		return
	}
	defer func() {
		if p := recover(); p != nil {
			b.report(ctx, fmt.Errorf("mb: %s hook: %w", what, newPanicError(p)))
		}
	}()
	fn(ctx)
}

// emit validates events and records them in f's unit, all or none.
func (f *frame) emit(events []any) error {
	x := f.ext()
	if len(events) == 1 {
		return f.emitOne(x, events[0])
	}
	u := x.unit
	b := f.bus()
	recs := make([]eventRecord, len(events))
	if err := fillRecords(b, b.table.Load(), recs, events, x.meta); err != nil {
		return err
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if !f.isOpen(u) {
		return f.emitClosed()
	}
	for i := range recs {
		recs[i].depth = u.depth
		u.events = append(u.events, recorded{&recs[i], f})
	}
	return nil
}

// emitOne is emit of one event, v, whose record goes in the room the unit
// keeps for its first, if that is free. x is f's extension.
func (f *frame) emitOne(x *frameExt, v any) error {
	u := x.unit
	et, err := f.bus().eventFor(f.bus().table.Load(), v)
	if err != nil {
		return err
	}
	key, keyed, keep := eventKeys(et, v)
	u.mu.Lock()
	defer u.mu.Unlock()
	if !f.isOpen(u) {
		return f.emitClosed()
	}
	r := &u.first
	if u.firstUse {
		r = new(eventRecord)
	}
	u.firstUse = true
	r.value, r.et, r.key, r.keyed, r.keep = v, et, key, keyed, keep
	r.depth, r.meta.cause = u.depth, x.meta
	u.events = append(u.events, recorded{r, f})
	return nil
}

// emitClosed is the error of an Emit into f's unit after f's handler
// returned.
func (f *frame) emitClosed() error {
	kind, name := f.describe()
	return fmt.Errorf("%w: the handler of %s %s has already returned", ErrNoUnitOfWork, kind, name)
}

// fillRecords validates events and makes recs, zero records of the same
// length, theirs, resolved against table and caused by cause.
func fillRecords(b *Bus, table *handlerTable, recs []eventRecord, events []any, cause *meta) error {
	for i, v := range events {
		et, err := b.eventFor(table, v)
		if err != nil {
			return err
		}
		recs[i].value, recs[i].et, recs[i].meta.cause = v, et, cause
	}
	// Keys are computed once all events are known to be valid: DedupKey is
	// the user's code.
	for i := range recs {
		r := &recs[i]
		r.key, r.keyed, r.keep = eventKeys(r.et, r.value)
	}
	return nil
}

// recordAndFrame is the record of an event with one handler and the frame
// that handler runs with: one allocation.
type recordAndFrame struct {
	rec   [1]eventRecord
	frame [1]eventFrame
}

// newRecord returns a zero record for an event of type et, in a slice of
// one, and the frames its handlers run with when it can allocate them
// with it (an event with one handler), nil otherwise.
func newRecord(et *eventType) ([]eventRecord, []eventFrame) {
	if len(et.handlers) != 1 {
		return make([]eventRecord, 1), nil
	}
	rf := &recordAndFrame{}
	return rf.rec[:], rf.frame[:]
}

// eventFor returns the eventType of event v resolved against table, or
// the error that says why v cannot be an event.
func (b *Bus) eventFor(table *handlerTable, v any) (*eventType, error) {
	if v == nil {
		return nil, fmt.Errorf("%w: nil event", ErrInvalidMessage)
	}
	et := b.eventType(table, reflect.TypeOf(v))
	if et.info.err != nil {
		return nil, et.info.err
	}
	return et, nil
}

type (
	dedupKeyer     interface{ DedupKey() string }
	rollbackKeeper interface{ DispatchOnRollback() bool }
)

// eventKeys calls the optional DedupKey and DispatchOnRollback methods of
// event v, of type et, if its type has them.
func eventKeys(et *eventType, v any) (key string, keyed, keep bool) {
	if et.info.keyed {
		key, keyed = v.(dedupKeyer).DedupKey(), true
	}
	if et.info.keeps {
		keep = v.(rollbackKeeper).DispatchOnRollback()
	}
	return key, keyed, keep
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
	if f == nil || !f.hasUnit() {
		return fmt.Errorf("%w: %s outside a command or event handler", ErrNoUnitOfWork, what)
	}
	h.owner = f
	u := f.ext().unit
	u.mu.Lock()
	defer u.mu.Unlock()
	if !f.isOpen(u) {
		kind, name := f.describe()
		return fmt.Errorf("%w: %s after the handler of %s %s returned", ErrNoUnitOfWork, what, kind, name)
	}
	if u.hooks == nil {
		u.hooks = &hookList{}
		u.hooks.list = u.hooks.buf[:0]
	}
	u.hooks.list = append(u.hooks.list, h)
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
// committed. For a command sent from outside any handler it runs after the
// unit's events (and their cascade) have been dispatched; for an event
// handler's unit it runs right after that unit commits, while the events the
// handler emitted wait in the dispatch queue. It does not run if the unit
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

// AfterRollback registers fn to run when the work of the handler of ctx is
// undone: when its unit of work rolls back (the handler, a before-commit
// hook or the commit failed), or, for a nested scope (a [Send] from inside a
// handler, one try of the [Retry] middleware), when that scope fails and is
// discarded. It does not run if the unit commits. Hooks run last registered
// first, after the transaction (or savepoint) has been rolled back, with the
// context the unit or scope was started with. A panic in fn is reported to
// the bus's error handler.
//
// AfterRollback is the counterpart of [AfterCommit] for resources that live
// outside the transaction, such as an in-memory [Inbox] claim that must be
// released when the handler's effects are undone. AfterRollback returns an
// error wrapping ErrNoUnitOfWork outside a unit of work.
func AfterRollback(ctx context.Context, fn func(ctx context.Context)) error {
	if fn == nil {
		return fmt.Errorf("%w: AfterRollback with a nil func", ErrInvalidArgument)
	}
	return addHook(ctx, hook{rollback: fn}, "AfterRollback")
}
