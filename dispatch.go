package mb

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
)

type dedupEntry struct {
	t   reflect.Type
	key string
}

// dispatch delivers a committed unit's events, and the events their handlers
// emit, breadth-first: each event's handlers run before the next event's,
// and events emitted by handlers join the end of the queue. An event whose
// type and DedupKey were already dispatched in this cascade is skipped.
//
// The first events come as pointers (a unit's) or as a slice of records
// (published from outside a handler).
func (b *Bus) dispatch(ctx context.Context, first []*eventRecord, firstRecs []eventRecord) {
	reg := b.reg.Load()
	// The (type, key) pairs dispatched so far: a short list, then a map.
	var seenBuf [4]dedupEntry
	seen := seenBuf[:0]
	var seenMap map[dedupEntry]struct{}
	var buf [8]*eventRecord
	queue := append(buf[:0], first...)
	for i := range firstRecs {
		queue = append(queue, &firstRecs[i])
	}
	for i := 0; i < len(queue); i++ {
		rec := queue[i]
		queue[i] = nil // let handled events go
		if rec.keyed {
			k := dedupEntry{rec.info.typ, rec.key}
			if seenMap != nil {
				if _, dup := seenMap[k]; dup {
					continue
				}
				seenMap[k] = struct{}{}
			} else {
				if slices.Contains(seen, k) {
					continue
				}
				seen = append(seen, k)
				if len(seen) > 16 {
					seenMap = make(map[dedupEntry]struct{}, 64)
					for _, s := range seen {
						seenMap[s] = struct{}{}
					}
				}
			}
		}
		hs := b.eventType(reg, rec.info.typ).handlers
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
		frames := make([]frame, len(hs))
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
func (b *Bus) handleEvent(ctx context.Context, f *frame, h *entry, rec *eventRecord) []*eventRecord {
	f.Context, f.e, f.rec = ctx, h, rec
	err := f.begin()
	if err == nil {
		if fn, ok := h.fn.(func(context.Context, any) error); ok && h.direct {
			err = callErr(f, fn, rec.value)
		} else {
			_, err = callChain(f, rec.value)
		}
		var evs []*eventRecord
		var hooks []hook
		if evs, hooks, err = f.endUnit(err); err == nil {
			if len(hooks) > 0 {
				b.runAfter(ctx, hooks)
			}
			return evs
		}
	}
	b.report(ctx, &HandlerError{
		Kind: KindEvent, Message: rec.info.name, Handler: h.handler,
		MessageID: rec.meta.ID(), Err: err,
	})
	return nil
}
