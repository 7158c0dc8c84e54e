package mb

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Messages and a Transactor of the pooled context tests.
type (
	pooledCmd   struct{ N int }
	pooledStray struct{ N int }
	pooledEv    struct{ Call int }
	pooledQuery struct{}
	callKey     struct{}
)

// countingTx counts the transactions it begins and ends.
type countingTx struct{ begins, ends atomic.Int64 }

func (c *countingTx) Begin(context.Context) (Tx, error) { c.begins.Add(1); return c, nil }
func (c *countingTx) Commit(context.Context) error      { c.ends.Add(1); return nil }
func (c *countingTx) Rollback(context.Context) error    { c.ends.Add(1); return nil }

// shellOf returns the pooledFrame and generation of a pooled context, or
// nil if ctx is not one.
func shellOf(ctx context.Context) (*pooledFrame, uint32) {
	t, ok := ctx.(*frameTag)
	if !ok {
		return nil, 0
	}
	return t.shell()
}

// wantStale checks that ctx, kept past its call, reaches nothing: no unit
// of work, no values, no frame; it reports itself cancelled.
func wantStale(t *testing.T, bus *Bus, ctx context.Context) {
	t.Helper()
	noUnit := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, ErrNoUnitOfWork) {
			t.Errorf("%s with a kept context: %v, want ErrNoUnitOfWork", what, err)
		}
	}
	noUnit("Emit", Emit(ctx, pooledEv{Call: -1}))
	_, err := TxFrom(ctx)
	noUnit("TxFrom", err)
	noUnit("BeforeCommit", BeforeCommit(ctx, func(context.Context) error { t.Error("before-commit hook of a kept context ran"); return nil }))
	noUnit("AfterCommit", AfterCommit(ctx, func(context.Context) { t.Error("after-commit hook of a kept context ran") }))
	noUnit("AfterRollback", AfterRollback(ctx, func(context.Context) { t.Error("after-rollback hook of a kept context ran") }))
	if md, ok := MetadataFrom(ctx); ok {
		t.Errorf("MetadataFrom a kept context = %+v, want none", md)
	}
	if b := BusFrom(ctx); b != nil {
		t.Error("BusFrom a kept context returned a bus")
	}
	if v := ctx.Value(callKey{}); v != nil {
		t.Errorf("a kept context carries the value %v", v)
	}
	if _, ok := ctx.Deadline(); ok {
		t.Error("a kept context has a deadline")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Errorf("Err of a kept context = %v, want context.Canceled", ctx.Err())
	}
	select {
	case <-ctx.Done():
	default:
		t.Error("Done of a kept context is not closed")
	}
}

// A context kept past its call, against the promise of WithPooledContext,
// cannot emit into, begin a transaction in, register hooks in or read the
// values of the later call that reuses its pooled frame; a Send or Publish
// with it runs on its own, as from outside any handler. The later call's
// unit of work holds exactly its own events.
func TestPooledContextKeptPastItsCall(t *testing.T) {
	var tx countingTx
	bus := New(&Options{Transactor: &tx, ErrorHandler: func(_ context.Context, err error) { t.Errorf("reported: %v", err) }})
	var mu sync.Mutex
	var got []string // "event call / value of the committing call's context"
	Subscribe(bus, func(ctx context.Context, e pooledEv) error {
		mu.Lock()
		got = append(got, fmt.Sprintf("%d/%v", e.Call, ctx.Value(callKey{})))
		mu.Unlock()
		return nil
	})
	HandleCommandNoResult(bus, func(ctx context.Context, c pooledStray) error {
		return Emit(ctx, pooledEv{Call: c.N})
	}, WithPooledContext())
	var kept context.Context
	reused := false
	HandleCommand(bus, func(ctx context.Context, c pooledCmd) (int, error) {
		if c.N == 1 {
			kept = ctx
			return 1, Emit(ctx, pooledEv{Call: 1})
		}
		kpf, kg := shellOf(kept)
		pf, g := shellOf(ctx)
		if pf == nil || kpf != pf || g == kg {
			return 0, nil // not the same pooled frame this time: try again
		}
		reused = true
		wantStale(t, bus, kept)
		// A Send or Publish with the kept context dispatches at once, on
		// its own, not in this call's unit.
		if err := Exec(kept, bus, pooledStray{100}); err != nil {
			t.Errorf("Exec with a kept context: %v", err)
		}
		if err := Publish(kept, bus, pooledEv{Call: 101}); err != nil {
			t.Errorf("Publish with a kept context: %v", err)
		}
		if _, err := TxFrom(ctx); err != nil {
			return 0, err
		}
		return 2, Emit(ctx, pooledEv{Call: 2})
	}, WithPooledContext())

	for attempt := 0; attempt < 100 && !reused; attempt++ {
		mu.Lock()
		got = nil
		mu.Unlock()
		tx.begins.Store(0)
		if _, err := Send[int](context.WithValue(context.Background(), callKey{}, "first"), bus, pooledCmd{1}); err != nil {
			t.Fatal(err)
		}
		wantStale(t, bus, kept) // right after the call, before any other
		if _, err := Send[int](context.WithValue(context.Background(), callKey{}, "second"), bus, pooledCmd{2}); err != nil {
			t.Fatal(err)
		}
	}
	if !reused {
		t.Fatal("no later call reused the pooled frame of a kept context")
	}
	want := []string{"1/first", "100/<nil>", "101/<nil>", "2/second"}
	if !slices.Equal(got, want) {
		t.Errorf("dispatched %q, want %q", got, want)
	}
	if b, e := tx.begins.Load(), tx.ends.Load(); b != 1 || e < b {
		t.Errorf("%d transactions began (want the later call's one) and %d ended", b, e)
	}
}

// Every call gets a context of its own: a pooled frame serves a bounded
// number of generations and is then dropped, so no generation (no context
// value) ever comes round again, and a context kept from the first call
// is still stale after the frame's last.
func TestPooledContextsAreNeverReused(t *testing.T) {
	bus := New()
	seen := map[context.Context]bool{}
	var first context.Context
	HandleQuery(bus, func(ctx context.Context, q pooledQuery) (int, error) {
		if seen[ctx] {
			t.Fatalf("a context was handed to two calls")
		}
		seen[ctx] = true
		if first == nil {
			first = ctx
		}
		return 0, nil
	}, WithPooledContext())
	for range 3 * pooledGens {
		if _, err := Query[int](context.Background(), bus, pooledQuery{}); err != nil {
			t.Fatal(err)
		}
	}
	pf, _ := shellOf(first)
	if pf == nil {
		t.Fatal("the handler did not run with a pooled context")
	}
	if g := pf.gen.Load(); g > pooledGens {
		t.Errorf("a pooled frame served %d generations, at most %d", g, pooledGens)
	}
	wantStale(t, bus, first)
}

// Concurrent calls whose contexts are kept and abused by other goroutines
// while later calls run: under -race, no data race; no event, transaction
// or value crosses from one call to another; every transaction that began
// ended.
func TestPooledContextsKeptConcurrently(t *testing.T) {
	t.Parallel()
	const goroutines, calls, abusers = 4, 300, 2
	var tx countingTx
	bus := New(&Options{Transactor: &tx, ErrorHandler: func(_ context.Context, err error) { t.Errorf("reported: %v", err) }})
	var dispatched sync.Map // call -> count of its own event
	Subscribe(bus, func(ctx context.Context, e pooledEv) error {
		// Dispatched by the Send of the call that emitted it, whose
		// context carries its number.
		if v, _ := ctx.Value(callKey{}).(int); e.Call >= 0 && v != e.Call {
			t.Errorf("the event of call %d was dispatched by call %v", e.Call, ctx.Value(callKey{}))
		}
		if e.Call >= 0 {
			n, _ := dispatched.LoadOrStore(e.Call, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
		return nil
	})
	type keptCtx struct {
		ctx  context.Context
		call int
	}
	leaked := make(chan keptCtx, 64)
	HandleCommandNoResult(bus, func(ctx context.Context, c pooledCmd) error {
		select {
		case leaked <- keptCtx{ctx, c.N}:
		default:
		}
		if c.N%3 == 0 {
			if _, err := TxFrom(ctx); err != nil {
				return err
			}
		}
		if err := Emit(ctx, pooledEv{Call: c.N}); err != nil {
			return err
		}
		if c.N%5 == 0 {
			return errors.New("declined") // rolls back: its event is not dispatched
		}
		return nil
	}, WithPooledContext())

	var abusing sync.WaitGroup
	stop := make(chan struct{})
	for range abusers {
		abusing.Go(func() {
			for {
				var k keptCtx
				select {
				case k = <-leaked:
				case <-stop:
					return
				}
				// While its call runs (if it still does) and after.
				for i := 0; i < 10 || k.ctx.Err() == nil; i++ {
					if v := k.ctx.Value(callKey{}); v != nil && v != k.call {
						t.Errorf("the context of call %d carries the value of call %v", k.call, v)
					}
					// Lands in the context's own call while it runs, or
					// fails; the event handler checks which call
					// dispatches it.
					if err := Emit(k.ctx, pooledEv{Call: k.call}); err != nil && !errors.Is(err, ErrNoUnitOfWork) {
						t.Errorf("Emit with a kept context: %v", err)
					}
					if _, err := TxFrom(k.ctx); err != nil && !errors.Is(err, ErrNoUnitOfWork) {
						t.Errorf("TxFrom with a kept context: %v", err)
					}
					runtime.Gosched()
				}
				wantStale(t, bus, k.ctx)
			}
		})
	}
	var sending sync.WaitGroup
	for g := range goroutines {
		sending.Go(func() {
			for i := range calls {
				n := g*calls + i
				err := Exec(context.WithValue(context.Background(), callKey{}, n), bus, pooledCmd{n})
				if (err == nil) != (n%5 != 0) {
					t.Errorf("call %d: %v", n, err)
				}
			}
		})
	}
	sending.Wait()
	close(stop)
	abusing.Wait()
	for n := range goroutines * calls {
		v, ok := dispatched.Load(n)
		switch {
		case n%5 == 0 && ok:
			t.Errorf("call %d rolled back, but %d of its events were dispatched", n, v.(*atomic.Int64).Load())
		case n%5 != 0 && (!ok || v.(*atomic.Int64).Load() < 1):
			t.Errorf("call %d committed, but its event was not dispatched", n)
		}
	}
	if b, e := tx.begins.Load(), tx.ends.Load(); b != e || b == 0 {
		t.Errorf("%d transactions began and %d ended", b, e)
	}
}

// WithPooledContext applies to commands and queries; a pooled handler
// behind middleware runs with an ordinary context.
func TestPooledContextRegistration(t *testing.T) {
	bus := New()
	if err := SubscribeSafely(bus, func(context.Context, pooledEv) error { return nil }, WithPooledContext()); !errors.Is(err, ErrInvalidHandler) {
		t.Errorf("Subscribe WithPooledContext: %v, want ErrInvalidHandler", err)
	}
	bus.Use(func(next Handler) Handler { return next })
	HandleQuery(bus, func(ctx context.Context, q pooledQuery) (bool, error) {
		pf, _ := shellOf(ctx)
		return pf == nil, nil
	}, WithPooledContext())
	if ordinary, err := Query[bool](context.Background(), bus, pooledQuery{}); err != nil || !ordinary {
		t.Errorf("a pooled handler behind middleware: ordinary context = %v, %v", ordinary, err)
	}
}

// While its call runs, a pooled context is the context the call was sent
// with, and mb works through it as through any other.
func TestPooledContextDuringItsCall(t *testing.T) {
	var tx countingTx
	bus := New(&Options{Transactor: &tx, ErrorHandler: func(_ context.Context, err error) { t.Errorf("reported: %v", err) }})
	var events []int
	Subscribe(bus, func(ctx context.Context, e pooledEv) error { events = append(events, e.Call); return nil })
	HandleCommandNoResult(bus, func(ctx context.Context, c pooledStray) error {
		if err := Emit(ctx, pooledEv{Call: c.N}); err != nil {
			return err
		}
		return errors.New("inner fails") // only its own event is discarded
	}, WithPooledContext())
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), callKey{}, "v"), time.Now().Add(time.Hour))
	defer cancel()
	HandleCommandNoResult(bus, func(hctx context.Context, c pooledCmd) error {
		if pf, _ := shellOf(hctx); pf == nil {
			t.Error("the handler did not run with a pooled context")
		}
		if hctx.Value(callKey{}) != "v" || hctx.Done() != ctx.Done() || hctx.Err() != nil {
			t.Error("the pooled context is not the one the call was sent with")
		}
		if d, ok := hctx.Deadline(); !ok || !d.Equal(func() time.Time { d, _ := ctx.Deadline(); return d }()) {
			t.Error("the pooled context lost the deadline")
		}
		md, ok := MetadataFrom(hctx)
		if again, _ := MetadataFrom(hctx); !ok || md.ID != again.ID || md.Name == "" {
			t.Errorf("metadata %+v, then %+v", md, again)
		}
		if BusFrom(hctx) != bus {
			t.Error("BusFrom a pooled context")
		}
		if _, err := TxFrom(hctx); err != nil {
			return err
		}
		if err := Emit(hctx, pooledEv{Call: 1}); err != nil {
			return err
		}
		if err := Exec(hctx, bus, pooledStray{2}); err == nil {
			t.Error("the nested command did not fail")
		}
		return AfterCommit(hctx, func(context.Context) { events = append(events, 3) })
	}, WithPooledContext())
	if err := Exec(ctx, bus, pooledCmd{}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(events, []int{1, 3}) {
		t.Errorf("events and hooks %v, want [1 3]", events)
	}
	if b, e := tx.begins.Load(), tx.ends.Load(); b != 1 || e != 1 {
		t.Errorf("%d transactions began and %d ended, want one", b, e)
	}
}
