package mb

import (
	"context"
	"fmt"
	"reflect"
	"sync"
)

// dedupSet remembers the (type, key) pairs dispatched in one cascade. Small
// cascades use a slice; large ones a map.
type dedupSet struct {
	list []dedupEntry
	m    map[dedupEntry]struct{}
}

type dedupEntry struct {
	t   reflect.Type
	key string
}

// add reports whether (t, key) was new.
func (s *dedupSet) add(t reflect.Type, key string) bool {
	k := dedupEntry{t, key}
	if s.m != nil {
		if _, ok := s.m[k]; ok {
			return false
		}
		s.m[k] = struct{}{}
		return true
	}
	for _, e := range s.list {
		if e == k {
			return false
		}
	}
	s.list = append(s.list, k)
	if len(s.list) > 32 {
		s.m = make(map[dedupEntry]struct{}, 2*len(s.list))
		for _, e := range s.list {
			s.m[e] = struct{}{}
		}
		s.list = nil
	}
	return true
}

// dispatch delivers a committed unit's events, and the events their handlers
// emit, breadth-first: each event's handlers run before the next event's,
// and events emitted by handlers join the end of the queue. An event whose
// type and DedupKey were already dispatched in this cascade is skipped.
func (b *Bus) dispatch(ctx context.Context, queue []*eventRecord) {
	reg := b.reg.Load()
	var seen dedupSet
	for i := 0; i < len(queue); i++ {
		rec := queue[i]
		queue[i] = nil // let handled events go
		if rec.keyed && !seen.add(rec.info.typ, rec.key) {
			continue
		}
		hs := reg.handlersFor(rec.info.typ)
		if len(hs) == 0 {
			continue
		}
		if rec.depth > b.opts.MaxCascadeDepth {
			b.report(ctx, &HandlerError{
				Kind: KindEvent, Message: rec.info.name, MessageID: rec.meta.ID(),
				Err: fmt.Errorf("%w: depth %d, limit %d", ErrCascadeLimit, rec.depth, b.opts.MaxCascadeDepth),
			})
			continue
		}
		frames := make([]unitFrame, len(hs))
		if b.opts.EventConcurrency <= 1 || len(hs) == 1 {
			for j, h := range hs {
				queue = append(queue, b.handleEvent(ctx, &frames[j], h, rec)...)
			}
			continue
		}
		emitted := make([][]*eventRecord, len(hs))
		sem := make(chan struct{}, b.opts.EventConcurrency)
		var wg sync.WaitGroup
		for j, h := range hs {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				emitted[j] = b.handleEvent(ctx, &frames[j], h, rec)
			}()
		}
		wg.Wait()
		for _, evs := range emitted {
			queue = append(queue, evs...)
		}
	}
}

// handleEvent runs one event handler in its own unit of work and returns the
// events it emitted, or reports its failure and returns none.
func (b *Bus) handleEvent(ctx context.Context, uf *unitFrame, h *entry, rec *eventRecord) []*eventRecord {
	fail := func(err error) []*eventRecord {
		b.report(ctx, &HandlerError{
			Kind: KindEvent, Message: rec.info.name, Handler: h.handler,
			MessageID: rec.meta.ID(), Err: err,
		})
		return nil
	}
	if err := b.newUnit(ctx, uf); err != nil {
		return fail(err)
	}
	uf.u.depth = rec.depth + 1
	f := &uf.frame
	f.msg = Message{Kind: KindEvent, Name: rec.info.name, Handler: h.handler, meta: &rec.meta}
	var err error
	if fn, ok := h.fn.(func(context.Context, any) error); ok && h.direct {
		err = callErr(f, fn, rec.value)
	} else {
		f.msg.Body = rec.value
		_, err = callChain(f, h.chain)
	}
	evs, hooks, err := f.endUnit(err)
	if err != nil {
		return fail(err)
	}
	b.runAfter(ctx, hooks)
	return evs
}
