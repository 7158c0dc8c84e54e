package mbtest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

// DefaultWait is the default of [HarnessOptions.Timeout].
const DefaultWait = 10 * time.Second

// HarnessOptions configure a [Harness]. The zero value is the default.
type HarnessOptions struct {
	// Timeout bounds how long [Harness.Wait] waits for the work in flight
	// to finish before it fails the test; 0 means [DefaultWait]. It is a
	// bound on a hung test, not a timing assertion: Wait returns as soon
	// as nothing is in flight.
	Timeout time.Duration
}

// Validate reports a negative Timeout, wrapping [mb.ErrInvalidArgument].
func (o *HarnessOptions) Validate() error {
	if o != nil && o.Timeout < 0 {
		return fmt.Errorf("%w: HarnessOptions.Timeout is negative (%v)", mb.ErrInvalidArgument, o.Timeout)
	}
	return nil
}

// Harness runs the services of a test over an in-memory broker and waits
// until everything a step caused has finished: the event cascades of
// every bus it tracks, the messages published to the consumers it runs,
// and the outbox messages of the outboxes it watches, relayed and handled.
// Then the test asserts on what its [Recorder]s saw. No broker, no
// sleeping: the harness knows when work is in flight from the buses'
// observers ([mb.Observer]), the broker's pending counts and the
// outboxes', and wakes when they change.
//
//	h := mbtest.NewHarness(t)
//	orders, ordersRec := h.Bus()                  // a tracked bus with a Recorder
//	pub := h.Publisher(reg)                       // publishes to the harness's broker
//	shipping, shippingRec := h.Bus()
//	h.Consume(shipping, reg, &mb.ConsumerOptions{Topic: "orders.placed", Group: "shipping"})
//	h.Do(func(ctx context.Context) error { return mb.Exec(ctx, orders, PlaceOrder{...}) })
//	mbtest.AssertEvents(t, shippingRec, OrderShipped{...})
//
// Everything the harness starts (consumers, relays) stops when the test
// ends. A Harness is safe for concurrent use.
type Harness struct {
	t       testing.TB
	tr      *mbmem.Transport
	timeout time.Duration

	mu       sync.Mutex
	inflight int // handlings running on tracked buses, and steps in Do
	chg      chan struct{}
	subs     []mbdriver.Subscription
	outboxes []*mbmem.Outbox
	tracked  map[*mb.Bus]bool
}

// NewHarness returns a Harness over a new in-memory broker, closed when t
// ends, with opts (none or nil for the defaults). Invalid options fail the
// test.
func NewHarness(t testing.TB, opts ...*HarnessOptions) *Harness {
	t.Helper()
	var o HarnessOptions
	for _, p := range opts {
		if err := p.Validate(); err != nil {
			t.Fatalf("mbtest: NewHarness: %v", err)
		}
		if p != nil {
			o = *p
		}
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultWait
	}
	h := &Harness{t: t, tr: mbmem.New(nil), timeout: o.Timeout, tracked: map[*mb.Bus]bool{}}
	t.Cleanup(func() { _ = h.tr.Close() })
	return h
}

// Transport returns the harness's in-memory broker: give it to the
// Publishers, Consumers and Relays a test builds itself. The harness waits
// only for the consumers it runs itself ([Harness.Consume]).
func (h *Harness) Transport() *mbmem.Transport { return h.tr }

// Bus returns a new bus, with opts (nil for the defaults), that the
// harness tracks, and a [Recorder] attached to it, as [NewBus] does:
// errors reported to the bus's error hook fail the test unless it reads
// them.
func (h *Harness) Bus(opts ...*mb.Options) (*mb.Bus, *Recorder) {
	h.t.Helper()
	bus, rec := NewBus(h.t, opts...)
	h.Track(bus)
	return bus, rec
}

// Track makes the harness wait for the handlings of bus: its event
// cascades, and its consumers' handlings. Tracking a bus twice does
// nothing.
func (h *Harness) Track(bus *mb.Bus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.tracked[bus] {
		return
	}
	h.tracked[bus] = true
	bus.Observe(harnessObserver{h})
}

// Publisher returns a Publisher to the harness's broker that encodes with
// reg.
func (h *Harness) Publisher(reg *mb.Registry, opts ...*mb.PublisherOptions) *mb.Publisher {
	h.t.Helper()
	var o *mb.PublisherOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	p, err := mb.NewPublisher(h.tr, reg, o)
	if err != nil {
		h.t.Fatalf("mbtest: Harness.Publisher: %v", err)
	}
	return p
}

// Consume runs a Consumer of bus over the harness's broker, with reg and
// opts (Topic and Group required), until the test ends, and makes the
// harness wait until its group has handled what was published to its
// topics. It tracks bus. Its group exists before Consume returns, so
// messages published afterwards are kept for it. Messages that cannot be
// handled go to the topic's dead-letter topic on the same broker, unless
// opts names another DeadLetter.
func (h *Harness) Consume(bus *mb.Bus, reg *mb.Registry, opts *mb.ConsumerOptions) {
	h.t.Helper()
	var o mb.ConsumerOptions
	if opts != nil {
		o = *opts
	}
	if o.DeadLetter == nil {
		o.DeadLetter = h.tr
	}
	topics := slices.DeleteFunc(append([]string{o.Topic}, o.Topics...), func(s string) bool { return s == "" })
	for _, topic := range topics {
		sub := mbdriver.Subscription{Topic: topic, Pattern: o.Pattern, Group: o.Group}
		r, err := h.tr.Subscribe(context.Background(), sub) // creates the group now
		if err != nil {
			h.t.Fatalf("mbtest: Harness.Consume: %v", err)
		}
		_ = r.Close()
		h.mu.Lock()
		h.subs = append(h.subs, sub)
		h.mu.Unlock()
	}
	c, err := mb.NewConsumer(bus, h.tr, reg, &o)
	if err != nil {
		h.t.Fatalf("mbtest: Harness.Consume: %v", err)
	}
	h.Track(bus)
	RunConsumer(h.t, context.Background(), c)
}

// Outbox returns an in-memory outbox store that the harness watches: it
// waits until every message due in it was relayed (or parked). Messages
// that wait for a later time (delayed ones, and retries) are not waited
// for.
func (h *Harness) Outbox() *mbmem.Outbox {
	o := &mbmem.Outbox{}
	h.mu.Lock()
	h.outboxes = append(h.outboxes, o)
	h.mu.Unlock()
	return o
}

// Relay runs a Relay of store to pub (the harness's broker when nil, or a
// LocalDelivery) with opts until the test ends.
func (h *Harness) Relay(store mbdriver.OutboxStore, pub mbdriver.Publisher, opts *mb.RelayOptions) {
	h.t.Helper()
	if pub == nil {
		pub = h.tr
	}
	r, err := mb.NewRelay(store, pub, opts)
	if err != nil {
		h.t.Fatalf("mbtest: Harness.Relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			h.t.Errorf("mbtest: Relay.Run: %v", err)
		}
	})
}

// Do runs step, then waits, as [Harness.Wait] does, until everything it
// caused has finished, and returns step's error.
func (h *Harness) Do(step func(ctx context.Context) error) error {
	h.t.Helper()
	h.add(1)
	err := func() error {
		defer h.add(-1)
		return step(context.Background())
	}()
	h.Wait()
	return err
}

// Wait waits until no work is in flight: no handling runs on a tracked
// bus, every consumer the harness runs has handled what was published to
// it, and every outbox it watches has relayed what is due. It fails the
// test with t.Fatalf, naming what is still in flight, if that takes
// longer than [HarnessOptions.Timeout]. Call it from the test's goroutine.
func (h *Harness) Wait() {
	h.t.Helper()
	deadline := time.NewTimer(h.timeout)
	defer deadline.Stop()
	for {
		chans, busy := h.busy()
		if busy == "" {
			return
		}
		cases := make([]reflect.SelectCase, 0, len(chans)+1)
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(deadline.C)})
		for _, ch := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			h.t.Fatalf("mbtest: Harness.Wait: still in flight after %v: %s", h.timeout, busy)
			return
		}
	}
}

// busy describes what is in flight ("" when nothing is), with the
// channels that close at the next change of it. The channels are taken
// before the state is read, so no change is missed.
func (h *Harness) busy() ([]<-chan struct{}, string) {
	chans := []<-chan struct{}{h.tr.Changed()}
	h.mu.Lock()
	if h.chg == nil {
		h.chg = make(chan struct{})
	}
	chans = append(chans, h.chg)
	inflight := h.inflight
	subs := slices.Clone(h.subs)
	outboxes := slices.Clone(h.outboxes)
	h.mu.Unlock()
	for _, o := range outboxes {
		chans = append(chans, o.Changed())
	}
	var busy []string
	if inflight > 0 {
		busy = append(busy, fmt.Sprintf("%d handling(s) or step(s) running", inflight))
	}
	for _, s := range subs {
		if n := h.tr.Pending(s); n > 0 {
			busy = append(busy, fmt.Sprintf("%d message(s) of %q not handled by group %q", n, s.Topic, s.Group))
		}
	}
	for i, o := range outboxes {
		if due, _ := o.Due(); due > 0 {
			busy = append(busy, fmt.Sprintf("%d message(s) due in outbox %d not relayed", due, i+1))
		}
	}
	return chans, strings.Join(busy, "; ")
}

// add changes the count of work in flight and wakes Wait.
func (h *Harness) add(n int) {
	h.mu.Lock()
	h.inflight += n
	if h.chg != nil {
		close(h.chg)
		h.chg = nil
	}
	h.mu.Unlock()
}

// harnessObserver counts the handlings of a tracked bus.
type harnessObserver struct{ h *Harness }

func (o harnessObserver) HandlerStarted(ctx context.Context, _ *mb.Handling) (context.Context, func(*mb.HandlingEnd)) {
	o.h.add(1)
	return ctx, func(*mb.HandlingEnd) { o.h.add(-1) }
}

func (o harnessObserver) EventDispatched(context.Context, *mb.EventDispatch) func() {
	o.h.add(1)
	return func() { o.h.add(-1) }
}
