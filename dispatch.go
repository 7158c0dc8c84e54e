package mb

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

// dedupEntry is an event's type and DedupKey.
type dedupEntry struct {
	t   typeKey
	key string
}

// dedupSet is the (type, key) pairs dispatched in one cascade: a short
// array on the stack, then a map once the array is full. It does not point
// into itself, so that it stays on the stack of dispatch.
type dedupSet struct {
	n   int
	buf [8]dedupEntry
	m   map[dedupEntry]struct{}
}

// add records k and reports whether it is new.
func (s *dedupSet) add(k dedupEntry) bool {
	if s.m != nil {
		if _, dup := s.m[k]; dup {
			return false
		}
		s.m[k] = struct{}{}
		return true
	}
	if slices.Contains(s.buf[:s.n], k) {
		return false
	}
	if s.n < len(s.buf) {
		s.buf[s.n] = k
		s.n++
		return true
	}
	s.m = make(map[dedupEntry]struct{}, 4*len(s.buf))
	for _, e := range s.buf {
		s.m[e] = struct{}{}
	}
	s.m[k] = struct{}{}
	return true
}

// dispatch delivers a committed unit's events, and the events their handlers
// emit, breadth-first: each event's handlers run before the next event's,
// and events emitted by handlers join the end of the queue. An event whose
// type and DedupKey were already dispatched in this cascade is skipped.
// first is only read. frames0, if not nil, are the frames for the
// handlers of first[0], allocated with it (newRecord); dispatch allocates
// the others.
//
// With root set, the first event is one that arrived from a transport: its
// handlers run behind root.guard and their errors are collected in
// root.errs instead of being reported.
func (b *Bus) dispatch(ctx context.Context, first []recorded, frames0 []eventFrame, root *incomingRoot) {
	table := b.table.Load()
	var seen dedupSet
	var buf [8]*eventRecord
	queue := enqueue(buf[:0], first)
	for i := 0; i < len(queue); i++ {
		rec := queue[i]
		queue[i] = nil // let handled events go
		if rec.keyed && !seen.add(dedupEntry{rec.et.info.key, rec.key}) {
			continue
		}
		// Handlers were resolved when the event was recorded; resolve
		// again only if registrations changed since.
		et := rec.et
		if et.table != table {
			et = b.eventType(table, et.info.typ)
		}
		hs := et.handlers
		if len(hs) == 0 {
			if len(table.obs) > 0 {
				if done := b.observeEvent(ctx, table.obs, rec, 0); done != nil {
					done()
				}
			}
			continue
		}
		if int(rec.depth) > b.opts.MaxCascadeDepth {
			b.report(ctx, &HandlerError{
				Kind: KindEvent, Name: rec.et.info.name, ID: rec.meta.ID(), CorrelationID: rec.meta.correlation(),
				Err: fmt.Errorf("%w: depth %d, limit %d", ErrCascadeLimit, rec.depth, b.opts.MaxCascadeDepth),
			})
			continue
		}
		var guard guardFunc
		fail := b.report
		if i == 0 && root != nil {
			guard = root.guard
			fail = func(_ context.Context, err error) { root.errs = append(root.errs, err) }
		}
		frames := frames0
		if i != 0 || len(frames) != len(hs) {
			frames = make([]eventFrame, len(hs))
		}
		var done func()
		if len(table.obs) > 0 {
			done = b.observeEvent(ctx, table.obs, rec, len(hs))
		}
		if b.opts.EventConcurrency <= 1 || len(hs) == 1 {
			for j, h := range hs {
				evs, err := b.runEvent(ctx, &frames[j], h, rec, guard)
				if err != nil {
					fail(ctx, err)
				}
				queue = enqueue(queue, evs)
			}
		} else {
			emitted, errs := b.runConcurrently(ctx, frames, hs, rec, guard)
			for j, evs := range emitted {
				if errs[j] != nil {
					fail(ctx, errs[j])
				}
				queue = enqueue(queue, evs)
			}
		}
		if done != nil {
			done()
		}
	}
}

// enqueue appends the records of evs to queue.
func enqueue(queue []*eventRecord, evs []recorded) []*eventRecord {
	for _, e := range evs {
		queue = append(queue, e.rec)
	}
	return queue
}

// runConcurrently runs the handlers hs of rec, at most EventConcurrency at
// once, and returns what each emitted and its error, in handler order.
func (b *Bus) runConcurrently(ctx context.Context, frames []eventFrame, hs []*entry, rec *eventRecord, guard guardFunc) ([][]recorded, []error) {
	emitted := make([][]recorded, len(hs))
	errs := make([]error, len(hs))
	sem := make(chan struct{}, b.opts.EventConcurrency)
	var wg sync.WaitGroup
	for j, h := range hs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			emitted[j], errs[j] = b.runEvent(ctx, &frames[j], h, rec, guard)
		}()
	}
	wg.Wait()
	return emitted, errs
}

// guardFunc runs inside an event handler's unit of work, before the handler
// and its middleware, with the handler's context. It reports false to skip
// the handler (the unit then commits, counting as a success).
type guardFunc func(ctx context.Context, h *entry) (bool, error)

// runEvent runs one event handler in its own unit of work and returns the
// events it emitted, or its failure as a *HandlerError with the events
// that are dispatched even so (DispatchOnRollback). guard, if not nil, may
// skip the handler.
func (b *Bus) runEvent(ctx context.Context, ef *eventFrame, h *entry, rec *eventRecord, guard guardFunc) ([]recorded, error) {
	if d := b.opts.EventTimeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	for try := 1; ; try++ {
		if try > 1 {
			// A new frame: a context kept from the failed try must not
			// reach this one's unit.
			ef = &eventFrame{}
		}
		f := &ef.frame
		f.Context, f.e, ef.rec = ctx, h, rec
		hctx := f.observe(rec.value, try) // f itself without observers
		run, err := true, error(nil)
		if guard != nil {
			run, err = callGuard(hctx, guard, h)
		}
		if err == nil && run {
			if fn, ok := h.fn.(func(context.Context, any) error); ok && h.direct {
				err = callErr(hctx, fn, rec.value)
			} else {
				_, err = callChain(hctx, f, rec.value)
			}
		}
		evs, hooks, err := f.endUnit(f.x.Load(), err)
		if err == nil {
			if fw := b.opts.Forward; fw != nil && len(evs) > 0 {
				fw.afterCommit(b, ctx, evs)
			}
			if len(hooks) > 0 {
				b.runAfter(ctx, hooks)
			}
			return evs, nil
		}
		if b.retryConflict(ctx, err, try) {
			continue
		}
		return evs, &HandlerError{
			Kind: KindEvent, Name: rec.et.info.name, Handler: h.handler,
			ID: rec.meta.ID(), CorrelationID: rec.meta.correlation(), Err: err,
		}
	}
}

func callGuard(ctx context.Context, g guardFunc, h *entry) (ok bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			ok, err = false, newPanicError(p)
		}
	}()
	return g(ctx, h)
}

// incoming is the identity of an event that arrived from a transport. A
// context given a correlation id (WithCorrelationID) carries one with only
// that set.
type incoming struct {
	id, correlation, causation, source string
	extensions                         map[string]string
}

// incomingRoot controls the handling of an event that arrived from a
// transport; see dispatch.
type incomingRoot struct {
	guard guardFunc
	errs  []error
}

// dispatchIncoming dispatches an event that arrived from another process to
// its handlers, each in its own unit of work and through the middleware, as
// [Publish] does, but with the identity it arrived with: handlers see in.id
// as the message id, and the events they emit have it as their causation
// id. guard, if not nil, runs in each handler's unit before the handler and
// may skip it (the inbox). Events the handlers emit are dispatched (and
// their handlers' errors reported) before dispatchIncoming returns. It
// returns the errors of the event's own handlers that failed, each a
// *HandlerError, instead of reporting them.
func (b *Bus) dispatchIncoming(ctx context.Context, v any, in incoming, guard guardFunc) []error {
	if v == nil {
		return []error{fmt.Errorf("%w: nil event", ErrInvalidMessage)}
	}
	table := b.table.Load()
	et := b.eventType(table, reflect.TypeOf(v))
	if et.info.err != nil {
		return []error{et.info.err}
	}
	recs, frames := newRecord(et)
	rec := &recs[0]
	rec.value, rec.et, rec.meta.given = v, et, &in
	if in.id != "" {
		rec.meta.id.Store(&in.id)
	}
	root := &incomingRoot{guard: guard}
	b.dispatch(ctx, []recorded{{rec: rec}}, frames, root)
	return root.errs
}
