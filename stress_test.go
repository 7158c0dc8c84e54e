package mb_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// Messages of the stress test. Each carries the id of the command at the
// root of its flow.
type (
	StressPlace  struct{ ID int }
	StressCharge struct{ ID int }
	StressPlaced struct{ ID int }
	StressBilled struct{ ID int }
	StressMailed struct{ ID int }
)

// stressModel records what each handler decided and what ran.
type stressModel struct {
	mu       sync.Mutex
	placeOK  map[int]bool // the command handler's own outcome
	chargeOK map[int]bool // the nested command's outcome
	placedOK map[int]bool // the first StressPlaced handler's outcome
	handled  map[string]int
}

func (m *stressModel) decide(into map[int]bool, id int, p float64) bool {
	ok := rand.Float64() >= p
	m.mu.Lock()
	into[id] = ok
	m.mu.Unlock()
	return ok
}

func (m *stressModel) ran(what string, id int) {
	m.mu.Lock()
	m.handled[fmt.Sprintf("%s/%d", what, id)]++
	m.mu.Unlock()
}

// Many goroutines send commands at once on a bus with a transaction per
// unit, concurrent event handlers and bus-wide middleware. Handlers fail
// or panic at random, a nested Send fails at random, and an event handler
// fails after emitting. Afterwards what ran must be exactly what the unit
// of work semantics say: events of failed units never dispatched, those of
// committed units dispatched once each, a failed nested Send dropping only
// its own events, a failed event handler dropping the events it emitted.
// The commands run once behind middleware, and once without it and with
// pooled contexts (WithPooledContext).
func TestStressUnitOfWorkSemantics(t *testing.T) {
	t.Parallel()
	for _, pooled := range []bool{false, true} {
		t.Run(fmt.Sprintf("pooled=%v", pooled), func(t *testing.T) {
			t.Parallel()
			stressUnitOfWork(t, pooled)
		})
	}
}

func stressUnitOfWork(t *testing.T, pooled bool) {
	const goroutines, perGoroutine = 8, 300
	m := &stressModel{placeOK: map[int]bool{}, chargeOK: map[int]bool{}, placedOK: map[int]bool{}, handled: map[string]int{}}
	var tx mbtest.Transactor
	passthrough := func(next mb.Handler) mb.Handler { return next }
	opts := &mb.Options{
		Transactor: &tx, EventConcurrency: 3, Middleware: []mb.Middleware{mb.Recover(), passthrough},
		ErrorHandler: func(context.Context, error) {}, // failing event handlers are expected
	}
	var cmdOpts []mb.HandlerOption
	if pooled {
		opts.Middleware = nil // pooled contexts are for handlers without middleware
		cmdOpts = append(cmdOpts, mb.WithPooledContext())
	}
	bus := mb.New(opts)
	fail := func(ok bool) error {
		if ok {
			return nil
		}
		if rand.IntN(2) == 0 {
			panic("boom")
		}
		return errors.New("declined")
	}
	// Half the handlings use the transaction, so that it begins in outer
	// units, in nested ones or not at all.
	maybeTx := func(ctx context.Context) error {
		if rand.IntN(2) == 0 {
			return nil
		}
		_, err := mb.TxFrom(ctx)
		return err
	}
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c StressPlace) error {
		if err := maybeTx(ctx); err != nil {
			return err
		}
		if err := mb.Emit(ctx, StressPlaced{c.ID}); err != nil {
			return err
		}
		_ = mb.Exec(ctx, bus, StressCharge{c.ID}) // its failure is not ours
		return fail(m.decide(m.placeOK, c.ID, 0.2))
	}, cmdOpts...)
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c StressCharge) error {
		if err := maybeTx(ctx); err != nil {
			return err
		}
		if err := mb.Emit(ctx, StressBilled{c.ID}); err != nil {
			return err
		}
		return fail(m.decide(m.chargeOK, c.ID, 0.5))
	}, cmdOpts...)
	mb.Subscribe(bus, func(ctx context.Context, e StressPlaced) error {
		if err := maybeTx(ctx); err != nil {
			return err
		}
		m.ran("placed-a", e.ID)
		if err := mb.Emit(ctx, StressMailed{e.ID}); err != nil {
			return err
		}
		return fail(m.decide(m.placedOK, e.ID, 0.3))
	})
	mb.Subscribe(bus, func(ctx context.Context, e StressPlaced) error { m.ran("placed-b", e.ID); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e StressBilled) error { m.ran("billed", e.ID); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e StressMailed) error { m.ran("mailed", e.ID); return nil })

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				id := g*perGoroutine + i
				err := mb.Exec(context.Background(), bus, StressPlace{id})
				m.mu.Lock()
				ok := m.placeOK[id]
				m.mu.Unlock()
				if (err == nil) != ok {
					t.Errorf("command %d: Exec = %v, but its handler decided ok=%v", id, err, ok)
				}
			}
		})
	}
	wg.Wait()

	m.mu.Lock()
	defer m.mu.Unlock()
	want := func(what string, id int, n int) {
		if got := m.handled[fmt.Sprintf("%s/%d", what, id)]; got != n {
			t.Errorf("%s of command %d ran %d times, want %d (place ok=%v, charge ok=%v, placed-a ok=%v)",
				what, id, got, n, m.placeOK[id], m.chargeOK[id], m.placedOK[id])
		}
	}
	one := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	for id := range goroutines * perGoroutine {
		committed := m.placeOK[id]
		want("placed-a", id, one(committed))
		want("placed-b", id, one(committed))
		want("billed", id, one(committed && m.chargeOK[id]))
		want("mailed", id, one(committed && m.placedOK[id]))
	}
	// Every transaction that began ended once.
	begins, ends := 0, 0
	for _, c := range tx.Calls() {
		switch {
		case strings.HasSuffix(c, " begin"):
			begins++
		case strings.HasSuffix(c, " commit"), strings.HasSuffix(c, " rollback"):
			ends++
		}
	}
	if begins != ends || begins == 0 {
		t.Errorf("%d transactions began and %d ended", begins, ends)
	}
}
