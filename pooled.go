package mb

// Pooled contexts (WithPooledContext).
//
// A handler that promises not to keep its context past the call runs with
// a context taken from a pool instead of a frame allocated for the call.
// The pooled object, a pooledFrame, serves many calls one after another,
// each a generation. What makes reuse safe even when the promise is
// broken is that the context handed to the handler of generation g is a
// pointer to tags[g], a byte of the pooledFrame that holds g: every call
// gets a context value of its own, and a context kept past its call still
// points to its own generation's tag. Each method of that context first
// checks that its generation is the pooledFrame's current one; once the
// call has returned it is not, and the context behaves as cancelled and
// empty: no values, no frame, so Emit, TxFrom, the hooks and a nested Send
// see no unit of work (ErrNoUnitOfWork). A pooledFrame serves len(tags)
// generations and is then dropped, never reused, so a generation never
// comes round again.
//
// The common call touches nothing but the pooledFrame: the parent context
// is stored (two atomic words, read with a generation check before and
// after, so that a stale reader never sees a later call's parent), the
// handler runs, the generation advances. Only when the handler (or its
// goroutines) reaches mb through its context (frameFrom: Emit, TxFrom,
// MetadataFrom, BusFrom, a nested Send) is an ordinary frame allocated for
// the call (promote), under mu and again checked against the generation;
// from then on mb works with that frame, which is the call's own and ends
// as any other (end, then frame.finish).

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// pooledGens is how many calls one pooledFrame serves.
const pooledGens = 256

// frameTag is the context of one generation of a pooledFrame: the byte
// tags[g] of its pooledFrame, holding g.
type frameTag uint8

// pooledFrame is a context reused from call to call by a handler
// registered WithPooledContext. The goroutine that took it from the pool
// owns it until it puts it back; others may only read it through a
// frameTag.
type pooledFrame struct {
	e      *entry                // the handler; fixed for the pooledFrame's life
	gen    atomic.Uint32         // the generation running, or next to run
	mu     sync.Mutex            // serialises promote with the end of a call
	real   atomic.Pointer[frame] // the frame of the running generation, once promoted
	parent ctxWords              // the context the running generation was sent with
	tags   [pooledGens]frameTag
}

// ctxWords holds the two words of a context.Context so that they can be
// loaded while another goroutine stores new ones: a reader loads them
// between two checks of the generation and uses them only if it did not
// change.
type ctxWords struct {
	tab, data atomic.Pointer[byte]
}

// store stores c. A word that is already there is not stored again: a
// caller that sends with one context call after call pays for no atomic
// store.
func (w *ctxWords) store(c context.Context) {
	p := (*[2]*byte)(unsafe.Pointer(&c))
	if w.tab.Load() != p[0] {
		w.tab.Store(p[0])
	}
	if w.data.Load() != p[1] {
		w.data.Store(p[1])
	}
}

func (w *ctxWords) load() (c context.Context) {
	p := (*[2]*byte)(unsafe.Pointer(&c))
	p[0], p[1] = w.tab.Load(), w.data.Load()
	return c
}

// newPooledFrame returns a pooledFrame for handler e at generation 0.
func newPooledFrame(e *entry) *pooledFrame {
	pf := &pooledFrame{e: e}
	for i := range pf.tags {
		pf.tags[i] = frameTag(i)
	}
	return pf
}

// pooledContext takes a pooledFrame of e from its pool and returns it with
// the context its next generation runs with, whose parent is ctx.
func (e *entry) pooledContext(ctx context.Context) (*pooledFrame, context.Context) {
	pf, _ := e.pool.Get().(*pooledFrame)
	if pf == nil {
		pf = newPooledFrame(e)
	}
	pf.parent.store(ctx)
	return pf, &pf.tags[pf.gen.Load()]
}

// end ends the running generation, whose handler returned err: from now on
// its context is stale. If the call was promoted, its frame is finished
// like any command frame (the unit commits or rolls back and its events
// are dispatched) and end returns what finish returns; otherwise err. The
// pooledFrame goes back to the pool unless it has served all its
// generations.
func (pf *pooledFrame) end(err error) error {
	g := pf.gen.Load()
	pf.gen.Store(g + 1)
	// A promote that stored real before this load is seen here; one that
	// stores it after sees the new generation and takes it back (promote).
	if pf.real.Load() != nil {
		pf.mu.Lock()
		f := pf.real.Swap(nil)
		pf.mu.Unlock()
		if f != nil && f.hasUnit() {
			err = f.finish(err)
		}
	}
	if g+1 < pooledGens {
		// The parent stays until the next call replaces it, or until the
		// pool drops pf at a garbage collection: clearing it would cost
		// every call an atomic store.
		pf.e.pool.Put(pf)
	}
	return err
}

// shell returns the pooledFrame of t and the generation t stands for.
func (t *frameTag) shell() (*pooledFrame, uint32) {
	g := *t
	tags := unsafe.Add(unsafe.Pointer(t), -int(g))
	return (*pooledFrame)(unsafe.Add(tags, -int(unsafe.Offsetof(pooledFrame{}.tags)))), uint32(g)
}

// parentCtx returns the context t's generation was sent with, and false
// once that generation has ended.
func (t *frameTag) parentCtx() (context.Context, bool) {
	pf, g := t.shell()
	if pf.gen.Load() != g {
		return nil, false
	}
	c := pf.parent.load()
	if pf.gen.Load() != g {
		return nil, false
	}
	return c, true
}

// promote returns the frame of t's generation, allocating it on first use,
// or nil once that generation has ended.
func (t *frameTag) promote() *frame {
	pf, g := t.shell()
	if pf.gen.Load() != g {
		return nil
	}
	if f := pf.real.Load(); f != nil {
		if pf.gen.Load() != g {
			return nil
		}
		return f
	}
	pf.mu.Lock()
	defer pf.mu.Unlock()
	if pf.gen.Load() != g {
		return nil
	}
	f := pf.real.Load()
	if f == nil {
		f = &frame{Context: pf.parent.load(), e: pf.e}
		pf.real.Store(f)
	}
	// Stored after end advanced the generation, f would go unfinished:
	// take it back. (Stored before, end sees it and finishes it.)
	if pf.gen.Load() != g {
		pf.real.Store(nil)
		return nil
	}
	return f
}

// closed is the Done channel of a context whose call has ended.
var closed = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Deadline returns the deadline of the context the call was sent with;
// none once the call has ended.
func (t *frameTag) Deadline() (time.Time, bool) {
	if c, ok := t.parentCtx(); ok {
		return c.Deadline()
	}
	return time.Time{}, false
}

// Done returns the Done channel of the context the call was sent with; a
// closed channel once the call has ended.
func (t *frameTag) Done() <-chan struct{} {
	if c, ok := t.parentCtx(); ok {
		return c.Done()
	}
	return closed
}

// Err returns the error of the context the call was sent with;
// context.Canceled once the call has ended.
func (t *frameTag) Err() error {
	if c, ok := t.parentCtx(); ok {
		return c.Err()
	}
	return context.Canceled
}

// Value returns the call's frame for frameKey and defers other keys to the
// context the call was sent with; nil for every key once the call has
// ended.
func (t *frameTag) Value(key any) any {
	if key == (frameKey{}) {
		if f := t.promote(); f != nil {
			return f
		}
		return nil
	}
	if c, ok := t.parentCtx(); ok {
		return c.Value(key)
	}
	return nil
}
