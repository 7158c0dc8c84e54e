package mbdrivertest

// Consumer-level subtests: mb's Publisher and Consumer over the driver,
// which is what an application sees of it. They check what the portable
// layer promises on top of the driver's guarantees: identity kept end to
// end, retries, dead-lettering, per-key order and the inbox.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

// suiteEvent is the event the consumer subtests publish.
type suiteEvent struct {
	N   int
	Key string
}

func (suiteEvent) MessageName() string    { return "mbdrivertest.event" }
func (e suiteEvent) PartitionKey() string { return e.Key }
func (suiteEvent) Extensions() map[string]string {
	return map[string]string{"suiteext": "on"}
}

// suiteProbe is published until the consumer handles one: then it is
// subscribed, whatever the driver's start position and delivery
// guarantees.
type suiteProbe struct{ N int }

func (suiteProbe) MessageName() string { return "mbdrivertest.probe" }

const suiteSource = "/mbdrivertest"

func (s *suite) consumerTests() []testCase {
	return []testCase{
		{"ConsumerRoundTrip", always, s.testConsumerRoundTrip},
		{"ConsumerRetry", always, s.testConsumerRetry},
		{"ConsumerDeadLetter", always, s.testConsumerDeadLetter},
		{"ConsumerPerKeyOrder", need("OrderingPerKey", func(c mbdriver.Capabilities) bool { return c.OrderingPerKey }), s.testConsumerPerKeyOrder},
		{"ConsumerInbox", need("OrderingPerKey", func(c mbdriver.Capabilities) bool { return c.OrderingPerKey }), s.testConsumerInbox},
	}
}

// app is one process of an application: a bus, the registry of the suite's
// events, a Publisher and (once started) a Consumer over one driver, all
// on one topic.
type app struct {
	s      *suite
	c      *conn
	topic  string
	group  string
	bus    *mb.Bus
	reg    *mb.Registry
	pub    *mb.Publisher
	sent   chan *mb.Envelope // what pub sent, in order
	probes chan int          // probes handled
	errs   chan error        // what the consumer reported
}

func (s *suite) newApp(t *testing.T, c *conn, topic, group string) *app {
	t.Helper()
	a := &app{
		s: s, c: c, topic: topic, group: group, bus: mb.New(),
		reg:    mb.NewRegistry(&mb.RegistryOptions{Source: suiteSource}),
		sent:   make(chan *mb.Envelope, 1000),
		probes: make(chan int, 1000),
		errs:   make(chan error, 1000),
	}
	mb.RegisterMessage[suiteEvent](a.reg)
	mb.RegisterMessage[suiteProbe](a.reg)
	mb.Subscribe(a.bus, func(ctx context.Context, p suiteProbe) error {
		a.probes <- p.N
		return nil
	}, mb.WithName("mbdrivertest.probe"))
	var err error
	a.pub, err = mb.NewPublisher(c, a.reg, &mb.PublisherOptions{
		Router:    func(string) string { return topic },
		OnPublish: func(_ context.Context, env *mb.Envelope) { cp := *env; a.sent <- &cp },
		Retry:     mb.RetryOptions{MaxAttempts: 20, Backoff: mb.Backoff{Min: retryPause, Max: retryPause}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// start runs a consumer of the app's topic and group with o until the end
// of the test or the returned stop, and returns once it handles messages:
// it publishes probes until one is handled.
func (a *app) start(t *testing.T, o mb.ConsumerOptions) (stop func() error) {
	t.Helper()
	o.Topic, o.Group = a.topic, a.group
	if a.s.caps.Replay {
		o.Start = mbdriver.StartOldest
	}
	o.ErrorHandler = func(_ context.Context, err error) {
		select {
		case a.errs <- err:
		default:
		}
	}
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := mb.NewConsumer(a.bus, a.c, a.reg, &o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(a.s.wait + mb.DefaultDrainTimeout):
				runErr = errors.New("Consumer.Run did not return after its context was cancelled")
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Consumer.Run: %v", err)
		}
	})
	a.waitProbe(t)
	return stop
}

// waitProbe publishes probes until the consumer handles one, within the
// suite's bound.
func (a *app) waitProbe(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(a.s.wait)
	tick := time.NewTicker(retryPause)
	defer tick.Stop()
	for n := 0; ; n++ {
		a.publish(t, suiteProbe{n})
		select {
		case <-a.probes:
			a.drainSent()
			return
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the consumer of %q handled none of %d probes within %v", a.topic, n+1, a.s.wait)
		}
	}
}

// drainSent forgets the envelopes sent so far (the probes).
func (a *app) drainSent() {
	for {
		select {
		case <-a.sent:
		default:
			return
		}
	}
}

func (a *app) publish(t *testing.T, events ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(mb.WithCorrelationID(context.Background(), "corr-"+a.topic), a.s.wait)
	defer cancel()
	if err := a.pub.Publish(ctx, events...); err != nil {
		t.Fatal(err)
	}
}

// sentEnvelopes returns the n envelopes sent after the probes.
func (a *app) sentEnvelopes(t *testing.T, n int) []*mb.Envelope {
	t.Helper()
	out := make([]*mb.Envelope, n)
	for i := range out {
		out[i] = <-a.sent // OnPublish ran before Publish returned
	}
	return out
}

// within waits for ch to yield, within the suite's bound.
func within[T any](t *testing.T, s *suite, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(s.wait):
		t.Fatalf("waited %v for %s", s.wait, what)
		panic("unreachable")
	}
}

// ConsumerRoundTrip: an event published with mb's Publisher reaches the
// handler of a Consumer with its identity (id, source, correlation id,
// extension attributes) and payload, and once handled it is acknowledged:
// a later consumer of the same group does not get it again.
func (s *suite) testConsumerRoundTrip(t *testing.T) {
	b := s.base(t)
	a := s.newApp(t, s.open(t), b, b+"-g")
	got := make(chan mb.Metadata, 10)
	var body suiteEvent
	mb.Subscribe(a.bus, func(ctx context.Context, e suiteEvent) error {
		md, _ := mb.MetadataFrom(ctx)
		body = e
		got <- md
		return nil
	}, mb.WithName("mbdrivertest.handler"))
	stop := a.start(t, mb.ConsumerOptions{})
	a.publish(t, suiteEvent{N: 7, Key: "k"})
	env := a.sentEnvelopes(t, 1)[0]
	md := within(t, s, got, "the event")
	want := mb.Metadata{Kind: mb.KindEvent, Name: "mbdrivertest.event", Handler: "mbdrivertest.handler",
		ID: env.ID, CorrelationID: "corr-" + b, Source: suiteSource, Extensions: map[string]string{"suiteext": "on"}}
	if md.ID != want.ID || md.Name != want.Name || md.CorrelationID != want.CorrelationID || md.Source != want.Source ||
		!maps.Equal(md.Extensions, want.Extensions) || body != (suiteEvent{N: 7, Key: "k"}) {
		t.Fatalf("handled %+v with metadata\n\t%+v\nwant\n\t%+v", body, md, want)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if !s.caps.Persistent {
		return
	}
	// A second consumer of the group gets new messages, not the handled one.
	a2 := s.newApp(t, s.open(t), b, b+"-g")
	again := make(chan int, 10)
	mb.Subscribe(a2.bus, func(ctx context.Context, e suiteEvent) error { again <- e.N; return nil })
	a2.start(t, mb.ConsumerOptions{})
	a2.publish(t, suiteEvent{N: 8})
	if n := within(t, s, again, "the event after the restart"); n != 8 {
		t.Fatalf("a consumer of the same group got event %d again after it was handled and acknowledged", n)
	}
}

// ConsumerRetry: a handler that fails once is run again and the event is
// handled, not dead-lettered; the failure is reported.
func (s *suite) testConsumerRetry(t *testing.T) {
	b := s.base(t)
	a := s.newApp(t, s.open(t), b, b+"-g")
	var mu sync.Mutex
	tries := 0
	done := make(chan struct{})
	mb.Subscribe(a.bus, func(ctx context.Context, e suiteEvent) error {
		mu.Lock()
		defer mu.Unlock()
		tries++
		if tries == 1 {
			return errors.New("the first try fails")
		}
		close(done)
		return nil
	})
	a.start(t, mb.ConsumerOptions{MaxAttempts: 5, Backoff: mb.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}})
	a.publish(t, suiteEvent{N: 1})
	within(t, s, done, "the second try")
	if err := within(t, s, a.errs, "the report of the first failure"); !strings.Contains(err.Error(), "the first try fails") {
		t.Fatalf("reported %v, want the handler's error", err)
	}
}

// ConsumerDeadLetter: an event whose handler keeps failing is moved, after
// MaxAttempts, to the dead-letter topic (on the same driver) with its id
// and payload unchanged and the error and attempt count attached.
func (s *suite) testConsumerDeadLetter(t *testing.T) {
	b := s.base(t)
	c := s.open(t)
	a := s.newApp(t, c, b, b+"-g")
	dlq := s.subscribe(t, s.open(t), mbdriver.Subscription{Topic: b + ".dlq", Group: b + "-ops", Start: mbdriver.StartNew})
	mb.Subscribe(a.bus, func(ctx context.Context, e suiteEvent) error { return errors.New("poison " + strconv.Itoa(e.N)) })
	a.start(t, mb.ConsumerOptions{MaxAttempts: 2, Backoff: mb.Backoff{Min: time.Millisecond, Max: 10 * time.Millisecond}, DeadLetter: c})
	a.publish(t, suiteEvent{N: 3})
	env := a.sentEnvelopes(t, 1)[0]
	got := s.receiveUntil(t, dlq, true, env.ID)
	m := got[slices.IndexFunc(got, func(m *mbdriver.Message) bool { return m.ID == env.ID })]
	if !strings.Contains(m.Headers[mb.HeaderError], "poison 3") || m.Headers[mb.HeaderAttempts] != "2" ||
		m.Headers[mb.HeaderGroup] != b+"-g" || string(m.Body) != string(env.Data) {
		t.Fatalf("dead letter %q: headers %v, body %q", m.ID, m.Headers, m.Body)
	}
}

// ConsumerPerKeyOrder: with several workers, the events of each partition
// key are handled in the order they were published.
func (s *suite) testConsumerPerKeyOrder(t *testing.T) {
	b := s.base(t)
	a := s.newApp(t, s.open(t), b, b+"-g")
	const keys, perKey = 3, 20
	var mu sync.Mutex
	seen := map[string][]int{}
	all := make(chan struct{})
	count := 0
	mb.Subscribe(a.bus, func(ctx context.Context, e suiteEvent) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.Key] = append(seen[e.Key], e.N)
		if count++; count == keys*perKey {
			close(all)
		}
		return nil
	})
	a.start(t, mb.ConsumerOptions{Concurrency: 4})
	var events []any
	for n := range perKey {
		for k := range keys {
			events = append(events, suiteEvent{N: n, Key: fmt.Sprint("key-", k)})
		}
	}
	a.publish(t, events...)
	within(t, s, all, fmt.Sprintf("%d events", keys*perKey))
	mu.Lock()
	defer mu.Unlock()
	for k, ns := range seen {
		if !slices.IsSorted(ns) || len(ns) != perKey {
			t.Errorf("key %s handled in the order %v", k, ns)
		}
	}
}

// ConsumerInbox: a message delivered twice (the same id and source) has one
// effect when the consumer has an Inbox.
func (s *suite) testConsumerInbox(t *testing.T) {
	b := s.base(t)
	c := s.open(t)
	a := s.newApp(t, c, b, b+"-g")
	var mu sync.Mutex
	effects := map[int]int{}
	marker := make(chan struct{})
	mb.Subscribe(a.bus, func(ctx context.Context, e suiteEvent) error {
		mu.Lock()
		defer mu.Unlock()
		effects[e.N]++
		if e.N == 2 {
			close(marker)
		}
		return nil
	}, mb.WithName("mbdrivertest.effect"))
	a.start(t, mb.ConsumerOptions{Inbox: &mbmem.Inbox{}})
	a.publish(t, suiteEvent{N: 1, Key: "k"})
	env := a.sentEnvelopes(t, 1)[0]
	// The same message again, as a redelivery would bring it, then a
	// marker with the same key: once the marker is handled, so is the copy.
	dup := &mbdriver.Message{ID: env.ID, Headers: env.ToHeaders(), Body: env.Data, PartitionKey: env.PartitionKey}
	s.publish(t, c, b, dup)
	a.publish(t, suiteEvent{N: 2, Key: "k"})
	within(t, s, marker, "the marker")
	mu.Lock()
	defer mu.Unlock()
	if effects[1] != 1 {
		t.Fatalf("the duplicated event had %d effects, want 1", effects[1])
	}
}
