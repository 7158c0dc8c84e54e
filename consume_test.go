package mb_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbtest"
)

// Message types of the consumer tests.

type CxOrderPlaced struct {
	Order string
	Key   string
	Seq   int
}

func (CxOrderPlaced) MessageName() string    { return "cx.order.placed" }
func (e CxOrderPlaced) PartitionKey() string { return e.Key }

type CxOrderBilled struct{ Order string }

func (CxOrderBilled) MessageName() string { return "cx.order.billed" }

// CxAudited is an in-process event only (not registered on the wire).
type CxAudited struct{ Order string }

const cxGroup = "billing"

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func cxRegistry(t *testing.T) *mb.Registry {
	t.Helper()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/test"})
	mb.RegisterMessage[CxOrderPlaced](reg)
	mb.RegisterMessage[CxOrderBilled](reg)
	return reg
}

// cxBroker returns an in-memory broker, closed at the end of the test, with
// the consumer group cxGroup created on each topic, and the registry of the
// cx messages.
func cxBroker(t *testing.T, topics ...string) (*mbmem.Transport, *mb.Registry) {
	t.Helper()
	tr := mbmem.New(nil)
	t.Cleanup(func() { _ = tr.Close() })
	for _, topic := range topics {
		precreate(t, tr, topic, cxGroup)
	}
	return tr, cxRegistry(t)
}

// cxDLQ subscribes to the dead-letter topic of topic, before anything can be
// dead-lettered; the receiver is closed at the end of the test.
func cxDLQ(t *testing.T, tr *mbmem.Transport, topic string) mbdriver.Receiver {
	t.Helper()
	dlq, err := tr.Subscribe(context.Background(), mbdriver.Subscription{Topic: topic + ".dlq", Group: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = dlq.Close() })
	return dlq
}

// precreate creates the group of topic so that messages published before
// the consumer subscribes are kept for it.
func precreate(t *testing.T, tr *mbmem.Transport, topic, group string) {
	t.Helper()
	r, err := tr.Subscribe(context.Background(), mbdriver.Subscription{Topic: topic, Group: group})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
}

// eventually waits up to 10s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// recv waits up to 10s for a value on ch.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}

// recordingPublisher records what it publishes.
type recordingPublisher struct {
	mbdriver.Publisher
	mu   sync.Mutex
	sent map[string][]*mbdriver.Message
}

func (p *recordingPublisher) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	p.mu.Lock()
	if p.sent == nil {
		p.sent = map[string][]*mbdriver.Message{}
	}
	p.sent[topic] = append(p.sent[topic], msgs...)
	p.mu.Unlock()
	return p.Publisher.Publish(ctx, topic, msgs)
}

func (p *recordingPublisher) get(topic string) []*mbdriver.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*mbdriver.Message(nil), p.sent[topic]...)
}

func newCx(t *testing.T, bus *mb.Bus, sub mbdriver.Subscriber, reg *mb.Registry, o mb.ConsumerOptions) *mb.Consumer {
	t.Helper()
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = func(context.Context, error) {}
	}
	c, err := mb.NewConsumer(bus, sub, reg, &o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestConsumerRoundTripKeepsMetadata(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	reg := cxRegistry(t)
	rp := &recordingPublisher{Publisher: tr}
	pub, err := mb.NewPublisher(rp, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := mb.New()
	type seen struct {
		md  mb.Metadata
		val any
	}
	placed, billed, audited := make(chan seen, 1), make(chan seen, 1), make(chan seen, 1)
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		md, _ := mb.MetadataFrom(ctx)
		placed <- seen{md, e}
		if err := mb.Emit(ctx, CxAudited{e.Order}); err != nil {
			return err
		}
		return pub.Publish(ctx, CxOrderBilled{e.Order})
	}, mb.WithName("bill"))
	mb.Subscribe(bus, func(ctx context.Context, e CxAudited) error {
		md, _ := mb.MetadataFrom(ctx)
		audited <- seen{md, e}
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderBilled) error {
		md, _ := mb.MetadataFrom(ctx)
		billed <- seen{md, e}
		return nil
	})
	precreate(t, tr, "cx.order.placed", cxGroup)
	precreate(t, tr, "cx.order.billed", cxGroup)

	ctx := mb.WithCorrelationID(context.Background(), "corr-1")
	if err := pub.Publish(ctx, CxOrderPlaced{Order: "o1"}); err != nil {
		t.Fatal(err)
	}
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topics: []string{"cx.order.placed", "cx.order.billed"}, Group: cxGroup})
	stop := mbtest.RunConsumer(t, context.Background(), c)

	p := recv(t, placed)
	wire := rp.get("cx.order.placed")
	if len(wire) != 1 {
		t.Fatalf("published %d messages to cx.order.placed, want 1", len(wire))
	}
	id := wire[0].ID
	if p.val != (CxOrderPlaced{Order: "o1"}) {
		t.Errorf("handler got %#v", p.val)
	}
	if p.md.ID != id || p.md.CorrelationID != "corr-1" || p.md.CausationID != "" || p.md.Name != "cx.order.placed" || p.md.Handler != "bill" {
		t.Errorf("metadata in handler = %+v, want id %s, correlation corr-1, no causation", p.md, id)
	}
	a := recv(t, audited)
	if a.md.CausationID != id || a.md.CorrelationID != "corr-1" || a.md.ID == id {
		t.Errorf("in-process cascade metadata = %+v, want causation %s, correlation corr-1", a.md, id)
	}
	b := recv(t, billed)
	if b.md.CausationID != id || b.md.CorrelationID != "corr-1" || b.md.ID == id {
		t.Errorf("published-from-handler metadata = %+v, want causation %s, correlation corr-1", b.md, id)
	}
	if got := rp.get("cx.order.billed"); len(got) != 1 || got[0].Headers["ce-causationid"] != id || got[0].Headers["ce-source"] != "/test" {
		t.Errorf("billed on the wire = %+v", got)
	}
	for _, topic := range []string{"cx.order.placed", "cx.order.billed"} {
		eventually(t, "ack of "+topic, func() bool {
			return tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}) == 0
		})
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
}

// A consumer whose group does not exist yet, with Start StartOldest,
// handles the events published before it first ran, then the later ones.
// Run again, also with StartOldest, its group keeps its position: nothing
// is handled twice.
func TestConsumerStartOldestHandlesEarlierEvents(t *testing.T) {
	const topic = "cx.order.placed"
	tr := mbmem.New(nil)
	defer tr.Close()
	reg := cxRegistry(t)
	pub, err := mb.NewPublisher(tr, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	ctx := context.Background()
	publish := func(order string) {
		t.Helper()
		if err := pub.Publish(ctx, CxOrderPlaced{Order: order}); err != nil {
			t.Fatal(err)
		}
	}
	// No group exists yet: the broker only retains these.
	early := []string{"early-1", "early-2", "early-3"}
	for _, o := range early {
		publish(o)
	}

	bus := mb.New()
	handled := make(chan string, 10)
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		handled <- e.Order
		return nil
	})
	opts := mb.ConsumerOptions{Topic: topic, Group: cxGroup, Start: mbdriver.StartOldest, Concurrency: 1}
	stop := mbtest.RunConsumer(t, context.Background(), newCx(t, bus, tr, reg, opts))
	for _, want := range early {
		if got := recv(t, handled); got != want {
			t.Fatalf("handled %q, want %q: the events published before the consumer first ran, in order", got, want)
		}
	}
	publish("late")
	if got := recv(t, handled); got != "late" {
		t.Fatalf("handled %q, want late", got)
	}
	sub := mbdriver.Subscription{Topic: topic, Group: cxGroup}
	eventually(t, "the acks", func() bool { return tr.Pending(sub) == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}

	stop = mbtest.RunConsumer(t, context.Background(), newCx(t, bus, tr, reg, opts))
	publish("after restart")
	if got := recv(t, handled); got != "after restart" {
		t.Fatalf("after the restart handled %q, want \"after restart\": an existing group must not start over", got)
	}
	eventually(t, "the ack", func() bool { return tr.Pending(sub) == 0 })
	if err := stop(); err != nil {
		t.Fatalf("second Run = %v, want nil after cancel", err)
	}
	if len(handled) != 0 {
		t.Errorf("%d more events handled, want none", len(handled))
	}
}

func TestConsumerDeadLettersUndecodableAtOnce(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	dlq := cxDLQ(t, tr, topic)
	bus := mb.New()
	got := make(chan string, 10)
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		got <- e.Order
		return nil
	})
	pub, err := mb.NewPublisher(tr, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good := func(order string) {
		t.Helper()
		if err := pub.Publish(ctx, CxOrderPlaced{Order: order}); err != nil {
			t.Fatal(err)
		}
	}
	good("before")
	bad := []*mbdriver.Message{
		{ID: "no-envelope", Headers: map[string]string{"x": "y"}, Body: []byte(`{}`)},
		{ID: "corrupt", Headers: map[string]string{"ce-id": "corrupt", "ce-source": "/t", "ce-specversion": "1.0", "ce-type": "cx.order.placed", "content-type": "application/json"}, Body: []byte(`not json`)},
		{ID: "unknown", Headers: map[string]string{"ce-id": "unknown", "ce-source": "/t", "ce-specversion": "1.0", "ce-type": "cx.nobody.knows"}, Body: []byte(`{}`)},
	}
	if err := tr.Publish(ctx, topic, bad); err != nil {
		t.Fatal(err)
	}
	good("after")

	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, DeadLetter: tr, Concurrency: 1})
	stop := mbtest.RunConsumer(t, context.Background(), c)
	if a, b := recv(t, got), recv(t, got); a != "before" || b != "after" {
		t.Errorf("handled %q, %q; want before, after", a, b)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dead := map[string]*mbdriver.Message{}
	for len(dead) < len(bad) {
		msgs, err := dlq.Receive(rctx, 10)
		if err != nil {
			t.Fatalf("dead-letter receive: %v (have %d)", err, len(dead))
		}
		for _, m := range msgs {
			dead[m.ID] = m
		}
	}
	for _, b := range bad {
		m := dead[b.ID]
		if m == nil {
			t.Errorf("%s not dead-lettered", b.ID)
			continue
		}
		if string(m.Body) != string(b.Body) || m.Headers["ce-type"] != b.Headers["ce-type"] {
			t.Errorf("%s: dead letter changed the message: %+v", b.ID, m)
		}
		if m.Headers[mb.HeaderError] == "" || m.Headers[mb.HeaderAttempts] != "1" ||
			m.Headers[mb.HeaderTopic] != topic || m.Headers[mb.HeaderGroup] != cxGroup {
			t.Errorf("%s: dead-letter headers %v", b.ID, m.Headers)
		}
	}
	if e := dead["unknown"].Headers[mb.HeaderError]; !strings.Contains(e, "not a registered message name") {
		t.Errorf("mb-error of unknown = %q", e)
	}
	eventually(t, "all acked", func() bool { return tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// noCaps hides the driver's capabilities: the consumer then assumes no
// redelivery and retries in process.
type noCaps struct{ mbdriver.Subscriber }

func TestConsumerDeadLettersAfterMaxAttempts(t *testing.T) {
	for _, tc := range []struct {
		name string
		sub  func(*mbmem.Transport) mbdriver.Subscriber
	}{
		{"redelivery", func(tr *mbmem.Transport) mbdriver.Subscriber { return tr }},
		{"in-process", func(tr *mbmem.Transport) mbdriver.Subscriber { return noCaps{tr} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const topic = "cx.order.placed"
			tr, reg := cxBroker(t, topic)
			dlq := cxDLQ(t, tr, topic)
			bus := mb.New()
			var calls atomic.Int32
			boom := errors.New("boom: ledger unavailable")
			mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
				calls.Add(1)
				return boom
			})
			rp := &recordingPublisher{Publisher: tr}
			pub, _ := mb.NewPublisher(rp, reg, nil)
			if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "o1"}); err != nil {
				t.Fatal(err)
			}
			var log errSink
			c := newCx(t, bus, tc.sub(tr), reg, mb.ConsumerOptions{
				Topic: topic, Group: cxGroup, DeadLetter: tr, MaxAttempts: 3,
				Backoff: mb.Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}, ErrorHandler: log.handle,
			})
			stop := mbtest.RunConsumer(t, context.Background(), c)
			rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			msgs, err := dlq.Receive(rctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			orig := rp.get(topic)[0]
			m := msgs[0]
			if len(msgs) != 1 || m.ID != orig.ID || string(m.Body) != string(orig.Body) || m.Headers["ce-id"] != orig.ID {
				t.Fatalf("dead letters %+v, want the original %+v", msgs, orig)
			}
			if m.Headers[mb.HeaderAttempts] != "3" || !strings.Contains(m.Headers[mb.HeaderError], boom.Error()) {
				t.Errorf("headers %v", m.Headers)
			}
			first, err1 := time.Parse(time.RFC3339Nano, m.Headers[mb.HeaderFirstFailure])
			last, err2 := time.Parse(time.RFC3339Nano, m.Headers[mb.HeaderLastFailure])
			if err1 != nil || err2 != nil || last.Before(first) {
				t.Errorf("failure times %q, %q", m.Headers[mb.HeaderFirstFailure], m.Headers[mb.HeaderLastFailure])
			}
			eventually(t, "ack", func() bool { return tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}) == 0 })
			if n := calls.Load(); n != 3 {
				t.Errorf("handler ran %d times, want 3", n)
			}
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			reported := log.get()
			var he *mb.HandlerError
			if len(reported) == 0 || !errors.As(reported[0], &he) || !errors.Is(reported[0], boom) {
				t.Errorf("reported errors %v, want ones wrapping a *HandlerError and the handler's error", reported)
			}
		})
	}
}

func TestConsumerWithoutDeadLetterNacks(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	if err := tr.Publish(context.Background(), topic, []*mbdriver.Message{{ID: "x", Body: []byte("?")}}); err != nil {
		t.Fatal(err)
	}
	var buf syncBuffer
	c := newCx(t, mb.New(), tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	stop := mbtest.RunConsumer(t, context.Background(), c)
	eventually(t, "loud log", func() bool { return strings.Contains(buf.String(), "no DeadLetter publisher") })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}); n != 1 {
		t.Errorf("pending = %d, want the message kept", n)
	}
}

func TestConsumerInboxRerunsOnlyFailedHandlers(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	bus := mb.New()
	var ok, flaky atomic.Int32
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		ok.Add(1)
		return nil
	}, mb.WithName("ok"))
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		if flaky.Add(1) < 3 {
			return errors.New("not yet")
		}
		return nil
	}, mb.WithName("flaky"))
	pub, _ := mb.NewPublisher(tr, reg, nil)
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "o1"}); err != nil {
		t.Fatal(err)
	}
	inbox := &mbmem.Inbox{}
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{
		Topic: topic, Group: cxGroup, Inbox: inbox,
		Backoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond},
	})
	stop := mbtest.RunConsumer(t, context.Background(), c)
	eventually(t, "ack", func() bool { return tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}) == 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if ok.Load() != 1 || flaky.Load() != 3 {
		t.Errorf("ok ran %d times (want 1), flaky %d (want 3)", ok.Load(), flaky.Load())
	}
	if inbox.Len() != 2 {
		t.Errorf("inbox has %d keys, want 2", inbox.Len())
	}
}

// cxBundle is what a consumer test works with: an in-memory broker with
// the group cxGroup on the bundle's topic, the registry of the cx
// messages, a bus, a publisher whose messages are recorded, and the sink
// of the consumer's reported errors.
type cxBundle struct {
	topic string
	tr    *mbmem.Transport
	reg   *mb.Registry
	bus   *mb.Bus
	sent  *recordingPublisher
	pub   *mb.Publisher
	errs  *errSink
}

func setupCx(t *testing.T, topic string) *cxBundle {
	t.Helper()
	b := &cxBundle{topic: topic, bus: mb.New(), errs: &errSink{}}
	b.tr, b.reg = cxBroker(t, topic)
	b.sent = &recordingPublisher{Publisher: b.tr}
	var err error
	if b.pub, err = mb.NewPublisher(b.sent, b.reg, nil); err != nil {
		t.Fatal(err)
	}
	return b
}

// consumer returns a consumer of the bundle's topic and group through sub
// (nil: the bundle's transport), reporting to b.errs unless o says
// otherwise.
func (b *cxBundle) consumer(t *testing.T, sub mbdriver.Subscriber, o mb.ConsumerOptions) *mb.Consumer {
	t.Helper()
	if sub == nil {
		sub = b.tr
	}
	if o.Topic == "" && len(o.Topics) == 0 {
		o.Topic = b.topic
	}
	if o.Group == "" {
		o.Group = cxGroup
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = b.errs.handle
	}
	return newCx(t, b.bus, sub, b.reg, o)
}

// run runs a consumer of the bundle's transport until the returned stop.
func (b *cxBundle) run(t *testing.T, o mb.ConsumerOptions) (stop func() error) {
	t.Helper()
	return mbtest.RunConsumer(t, context.Background(), b.consumer(t, nil, o))
}

func (b *cxBundle) publish(t *testing.T, events ...any) {
	t.Helper()
	if err := b.pub.Publish(context.Background(), events...); err != nil {
		t.Fatal(err)
	}
}

// settled waits until the group has nothing pending on the topic.
func (b *cxBundle) settled(t *testing.T) {
	t.Helper()
	eventually(t, "all messages settled", func() bool {
		return b.tr.Pending(mbdriver.Subscription{Topic: b.topic, Group: cxGroup}) == 0
	})
}

func TestConsumerInboxDuplicateHasOneEffect(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var effects atomic.Int32
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error {
		effects.Add(1)
		return nil
	}, mb.WithName("effect"))
	b.publish(t, CxOrderPlaced{Order: "o1"})
	// The same message (same id) again, as a redelivery or a duplicate
	// publish would bring it.
	if err := b.tr.Publish(context.Background(), b.topic, b.sent.get(b.topic)); err != nil {
		t.Fatal(err)
	}
	inbox := &mbmem.Inbox{}
	stop := b.run(t, mb.ConsumerOptions{Inbox: inbox, Concurrency: 2})
	b.settled(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := effects.Load(); n != 1 {
		t.Errorf("%d effects, want 1", n)
	}
	key := mb.InboxKey{Group: cxGroup, Handler: "effect", Source: "/test", MessageID: b.sent.get(b.topic)[0].ID}
	if !inbox.Seen(key) {
		t.Errorf("inbox has not seen %q", key)
	}
}

func TestConsumerKeepsPerKeyOrder(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	bus := mb.New()
	const keys, perKey = 4, 25
	var mu sync.Mutex
	next := map[string]int{}
	var bad []string
	done := make(chan struct{}, keys*perKey)
	var inFlight, maxInFlight atomic.Int32
	// The first message of every key waits (boundedly) until the first
	// messages of all keys run: with Concurrency 4 they run at once.
	var firsts sync.WaitGroup
	firsts.Add(keys)
	allFirst := make(chan struct{})
	go func() { firsts.Wait(); close(allFirst) }()
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		n := inFlight.Add(1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		defer inFlight.Add(-1)
		if e.Seq == 0 {
			firsts.Done()
			select {
			case <-allFirst:
			case <-time.After(5 * time.Second):
			}
		}
		mu.Lock()
		if next[e.Key] != e.Seq {
			bad = append(bad, fmt.Sprintf("%s: got %d, want %d", e.Key, e.Seq, next[e.Key]))
		}
		next[e.Key] = e.Seq + 1
		mu.Unlock()
		done <- struct{}{}
		return nil
	})
	pub, _ := mb.NewPublisher(tr, reg, &mb.PublisherOptions{MaxBatch: 7})
	var evs []any
	for s := range perKey {
		for k := range keys {
			evs = append(evs, CxOrderPlaced{Key: fmt.Sprintf("k%d", k), Seq: s})
		}
	}
	if err := pub.Publish(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, Concurrency: 4, BatchSize: 16})
	stop := mbtest.RunConsumer(t, context.Background(), c)
	for range keys * perKey {
		recv(t, done)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("out of order: %v", bad)
	}
	if n := maxInFlight.Load(); n < 2 {
		t.Errorf("at most %d handler ran at once; want parallel workers", n)
	}
}

func TestConsumerDrainsGracefully(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	bus := mb.New()
	started, release, finished := make(chan struct{}), make(chan struct{}), make(chan struct{})
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		close(started)
		<-release
		close(finished)
		return ctx.Err() // the handler context is not cancelled by Run's
	})
	pub, _ := mb.NewPublisher(tr, reg, nil)
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "o1"}); err != nil {
		t.Fatal(err)
	}
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- c.Run(ctx) }()
	recv(t, started)
	cancel()
	select {
	case err := <-ran:
		t.Fatalf("Run returned %v while a handler was running", err)
	default:
	}
	close(release)
	if err := recv(t, ran); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	recv(t, finished)
	if n := tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}); n != 0 {
		t.Errorf("pending = %d after drain, want 0 (acked)", n)
	}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("second Run = %v, want an error", err)
	}
}

func TestConsumerDrainTimeoutAbandons(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	bus := mb.New()
	started := make(chan struct{})
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	pub, _ := mb.NewPublisher(tr, reg, nil)
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "o1"}); err != nil {
		t.Fatal(err)
	}
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, DrainTimeout: 20 * time.Millisecond})
	stop := mbtest.RunConsumer(t, context.Background(), c)
	recv(t, started)
	err := stop()
	if err == nil || !strings.Contains(err.Error(), "1 message(s) abandoned") {
		t.Fatalf("Run = %v, want an error saying one message was abandoned", err)
	}
	if n := tr.Pending(mbdriver.Subscription{Topic: topic, Group: cxGroup}); n != 1 {
		t.Errorf("pending = %d, want the abandoned message back", n)
	}
}

func TestNewConsumerInvalidOptions(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	bad := &mb.ConsumerOptions{
		Topics: []string{"a", "", "a"}, Concurrency: -1, BatchSize: -1, MaxAttempts: -2,
		Backoff: mb.Backoff{Min: -1}, ReconnectBackoff: mb.Backoff{Max: -1}, DrainTimeout: -1,
	}
	_, err := mb.NewConsumer(nil, tr, nil, bad)
	wantErr(t, err, mb.ErrInvalidArgument)
	// Validate names the problems of the options alone.
	verr := bad.Validate()
	wantErr(t, verr, mb.ErrInvalidArgument)
	if strings.Contains(verr.Error(), "Group") || !strings.Contains(verr.Error(), "ConsumerOptions.DrainTimeout") {
		t.Errorf("Validate: %v", verr)
	}
	for _, want := range []string{"bus is nil", "registry is nil", "Topics[1]", "given twice", "ConsumerOptions.Group",
		"ConsumerOptions.Concurrency", "ConsumerOptions.BatchSize", "ConsumerOptions.MaxAttempts", "ConsumerOptions.Backoff", "ConsumerOptions.ReconnectBackoff", "ConsumerOptions.DrainTimeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := mb.NewConsumer(mb.New(), tr, mb.NewRegistry(), nil); err == nil || !strings.Contains(err.Error(), "ConsumerOptions.Topic is empty") {
		t.Errorf("nil options: %v", err)
	}
	if _, err := mb.NewConsumer(mb.New(), noCaps{tr}, mb.NewRegistry(), &mb.ConsumerOptions{Topic: "t.*", Pattern: true}); err == nil || !strings.Contains(err.Error(), "Pattern") {
		t.Errorf("pattern without the capability: %v", err)
	}
	if _, err := mb.NewConsumer(mb.New(), noCaps{tr}, mb.NewRegistry(), &mb.ConsumerOptions{Topic: "t", Start: mbdriver.StartOldest}); err == nil || !strings.Contains(err.Error(), "Replay") {
		t.Errorf("StartOldest without the capability: %v", err)
	}
	if _, err := mb.NewConsumer(mb.New(), tr, mb.NewRegistry(), &mb.ConsumerOptions{Topic: "t", Group: "g", Start: 7}); err == nil || !strings.Contains(err.Error(), "StartPosition(7)") {
		t.Errorf("an unknown start position: %v", err)
	}
	var nilc *mb.Consumer
	if err := nilc.Run(context.Background()); !errors.Is(err, mb.ErrInvalidArgument) {
		t.Errorf("nil consumer Run = %v", err)
	}
}

// failingSubscriber fails to receive.
type failingSubscriber struct {
	err   error
	calls atomic.Int32
	fails int32
}

func (s *failingSubscriber) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	return &failingReceiver{s: s}, nil
}

func (s *failingSubscriber) IsRetryable(err error) bool { return mb.IsRetryable(err) }

type failingReceiver struct {
	s      *failingSubscriber
	closed atomic.Bool
}

func (r *failingReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	if n := r.s.calls.Add(1); n <= r.s.fails {
		return nil, mb.Retryable(errors.New("connection reset"))
	}
	return nil, r.s.err
}
func (r *failingReceiver) Ack(context.Context, []*mbdriver.Message) error { return nil }
func (r *failingReceiver) Nack(context.Context, []*mbdriver.Message, time.Duration) error {
	return nil
}
func (r *failingReceiver) Close() error { r.closed.Store(true); return nil }

func TestConsumerReceiveErrors(t *testing.T) {
	fatal := errors.New("auth failed")
	s := &failingSubscriber{err: fatal, fails: 2}
	var log errSink
	c := newCx(t, mb.New(), s, mb.NewRegistry(), mb.ConsumerOptions{Topic: "t", ReconnectBackoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}, ErrorHandler: log.handle})
	err := c.Run(context.Background())
	if !errors.Is(err, fatal) {
		t.Fatalf("Run = %v, want the non-retryable receive error", err)
	}
	if n := s.calls.Load(); n != 3 {
		t.Errorf("Receive called %d times, want 3 (two retried)", n)
	}
	reported := log.get()
	if len(reported) != 2 {
		t.Errorf("reported %d retried receive errors, want 2: %v", len(reported), reported)
	}
}

// tagCodec is JSON under another media type, standing in for a second
// payload format on one topic.
type tagCodec struct{ ct string }

func (c tagCodec) ContentType() string              { return c.ct }
func (tagCodec) Marshal(v any) ([]byte, error)      { return mb.JSONCodec{}.Marshal(v) }
func (tagCodec) Unmarshal(data []byte, v any) error { return mb.JSONCodec{}.Unmarshal(data, v) }

// A consumer with several codecs decodes each message with the one its
// content type names; a format none of them reads is dead-lettered.
func TestConsumerCodecsByContentType(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	dlq := cxDLQ(t, tr, topic)
	for _, codec := range []mb.Codec{mb.JSONCodec{}, tagCodec{"application/x-tag"}, tagCodec{"application/x-unknown"}} {
		pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{Codec: codec, Router: func(string) string { return topic }})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(context.Background(), CxOrderPlaced{Order: codec.ContentType()}); err != nil {
			t.Fatal(err)
		}
	}
	handled := make(chan string, 3)
	bus := mb.New()
	mb.Subscribe(bus, func(_ context.Context, e CxOrderPlaced) error { handled <- e.Order; return nil })
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{
		Topic: topic, Group: cxGroup, Concurrency: 1, DeadLetter: tr, ErrorHandler: func(context.Context, error) {},
		Codecs: []mb.Codec{tagCodec{"application/x-tag; v=1"}},
	})
	mbtest.RunConsumer(t, context.Background(), c)
	got := []string{recv(t, handled), recv(t, handled)}
	if got[0] != "application/json" || got[1] != "application/x-tag" {
		t.Errorf("handled %q, want the JSON and the x-tag message", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msgs, err := dlq.Receive(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Headers["content-type"] != "application/x-unknown" || !strings.Contains(msgs[0].Headers[mb.HeaderError], "content type") {
		t.Errorf("dead letters %+v, want the x-unknown message with a content-type error", msgs)
	}
	if _, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{Topic: topic, Group: cxGroup, Codecs: []mb.Codec{nil}}); err == nil || !strings.Contains(err.Error(), "Codecs[0]") {
		t.Errorf("a nil codec: %v", err)
	}
}

// ackFailing wraps a driver whose receivers fail every Ack.
type ackFailing struct{ *mbmem.Transport }

func (a ackFailing) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := a.Transport.Subscribe(ctx, sub)
	if err != nil {
		return nil, err
	}
	return ackFailingReceiver{r}, nil
}

type ackFailingReceiver struct{ mbdriver.Receiver }

func (ackFailingReceiver) Ack(context.Context, []*mbdriver.Message) error {
	return errors.New("connection reset")
}

// A failed ack is reported with the ids it concerned (the messages will
// come back: what an inbox is for); the consumer goes on.
func TestConsumerReportsFailedAcks(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	handled := make(chan string, 4)
	bus := mb.New()
	mb.Subscribe(bus, func(_ context.Context, e CxOrderPlaced) error { handled <- e.Order; return nil })
	var log errSink
	c := newCx(t, bus, ackFailing{tr}, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, ErrorHandler: log.handle})
	pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{Router: func(string) string { return topic }})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "1"}); err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, context.Background(), c)
	if got := recv(t, handled); got != "1" {
		t.Fatalf("handled %q", got)
	}
	eventually(t, "the failed ack reported", func() bool {
		reported := log.get()
		for _, err := range reported {
			if strings.Contains(err.Error(), "ack of 1 message(s)") && strings.Contains(err.Error(), "connection reset") {
				return true
			}
		}
		return false
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// A foreign producer's partition key header in another case still routes
// messages of one key to one worker, in order.
func TestConsumerPartitionKeyHeaderAnyCase(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	var mu sync.Mutex
	var seqs []int
	done := make(chan struct{})
	bus := mb.New()
	mb.Subscribe(bus, func(_ context.Context, e CxOrderPlaced) error {
		mu.Lock()
		defer mu.Unlock()
		seqs = append(seqs, e.Seq)
		if len(seqs) == 20 {
			close(done)
		}
		return nil
	})
	c := newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: topic, Group: cxGroup, Concurrency: 4})
	var msgs []*mbdriver.Message
	for i := range 20 {
		env, err := reg.Encode(CxOrderPlaced{Order: "o", Seq: i}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		h := env.ToHeaders()
		h["Ce-PartitionKey"] = "order-o" // as some producers spell it
		msgs = append(msgs, &mbdriver.Message{ID: env.ID, Headers: h, Body: env.Data})
	}
	if err := tr.Publish(context.Background(), topic, msgs); err != nil {
		t.Fatal(err)
	}
	mbtest.RunConsumer(t, context.Background(), c)
	recv(t, done)
	mu.Lock()
	defer mu.Unlock()
	for i, s := range seqs {
		if s != i {
			t.Fatalf("handled in order %v, want 0..19", seqs)
		}
	}
}

// A redelivery that overtakes a handling still in progress (here: the
// broker's visibility timeout runs out) must not be acknowledged as done:
// if the first handling then fails, the message is handled again and
// takes effect once.
// noExtend hides the Extend capability of an in-memory transport.
type noExtend struct{ *mbmem.Transport }

func (n noExtend) Capabilities() mbdriver.Capabilities {
	c := n.Transport.Capabilities()
	c.Extend = false
	return c
}

func TestConsumerInboxInFlightHandlingThatFails(t *testing.T) {
	const topic = "cx.order.placed"
	tr := mbmem.New(&mbmem.Options{AckTimeout: 50 * time.Millisecond})
	t.Cleanup(func() { _ = tr.Close() })
	precreate(t, tr, topic, cxGroup)
	reg := cxRegistry(t)

	// secondClaim is closed once the redelivered copy has asked the inbox.
	secondClaim := make(chan struct{})
	var claims atomic.Int32
	base := &mbmem.Inbox{}
	inbox := mb.InboxFunc(func(ctx context.Context, key mb.InboxKey) (bool, error) {
		ok, err := base.Claim(ctx, key)
		if claims.Add(1) == 2 {
			if !errors.Is(err, mb.ErrInFlight) {
				t.Errorf("second claim while the first handling runs = %v, %v; want ErrInFlight", ok, err)
			}
			close(secondClaim)
		}
		return ok, err
	})
	var calls, effects atomic.Int32
	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		if calls.Add(1) == 1 {
			// The first handling lasts until the redelivered copy has
			// asked the inbox, then fails.
			select {
			case <-secondClaim:
			case <-time.After(10 * time.Second):
			}
			return errors.New("first attempt fails")
		}
		effects.Add(1)
		return nil
	}, mb.WithName("effect"))
	// Without extensions, the broker hands the message out again while
	// its first handling runs, as a consumer that stalled past the ack
	// timeout would see.
	c := newCx(t, bus, noExtend{tr}, reg, mb.ConsumerOptions{
		Topic: topic, Group: cxGroup, Inbox: inbox, Concurrency: 2,
		Backoff: mb.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond},
	})
	pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{Router: func(string) string { return topic }})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "1"}); err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, context.Background(), c)
	select {
	case <-secondClaim:
	case <-time.After(10 * time.Second):
		t.Fatal("the message was not redelivered while its first handling ran")
	}
	eventually(t, "the event's effect after the first handling failed", func() bool { return effects.Load() == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if n := effects.Load(); n != 1 {
		t.Errorf("%d effects, want 1", n)
	}
}

// CloudEvents ids are unique per source only: an event of another producer
// that reuses an id is a different event, and the inbox must not take it
// for a redelivery.
func TestConsumerInboxTellsSourcesApart(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var got recorder
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error {
		md, _ := mb.MetadataFrom(ctx)
		got.add(e.Order + "@" + md.Source)
		return nil
	}, mb.WithName("effect"))
	b.publish(t, CxOrderPlaced{Order: "o1"})
	// Another producer's event with the same id.
	first := b.sent.get(b.topic)[0]
	other := &mbdriver.Message{ID: first.ID, Headers: maps.Clone(first.Headers), Body: []byte(`{"Order":"o2"}`)}
	other.Headers["ce-source"] = "/elsewhere"
	if err := b.tr.Publish(context.Background(), b.topic, []*mbdriver.Message{other}); err != nil {
		t.Fatal(err)
	}
	inbox := &mbmem.Inbox{}
	stop := b.run(t, mb.ConsumerOptions{Inbox: inbox, Concurrency: 1})
	b.settled(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, got.get(), []string{"o1@/test", "o2@/elsewhere"})
	for _, src := range []string{"/test", "/elsewhere"} {
		key := mb.InboxKey{Group: cxGroup, Handler: "effect", Source: src, MessageID: first.ID}
		if !inbox.Seen(key) {
			t.Errorf("inbox has not seen %q", key)
		}
	}
}

// The mb-error header is cut to 8 KiB on a character boundary: an error
// text cut inside a UTF-8 sequence is not valid text any more.
func TestConsumerDeadLetterErrorCutOnCharacterBoundary(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	dlq := cxDLQ(t, b.tr, b.topic)
	long := strings.Repeat("𝄞", 3000) // 4 bytes each, 12 000 in all
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error {
		return errors.New(strings.Repeat("x", e.Seq) + long)
	})
	// Four paddings: whatever the length of the prefix mb puts before the
	// handler's error, one of them puts a cut at 8 KiB inside a character.
	for pad := range 4 {
		b.publish(t, CxOrderPlaced{Order: fmt.Sprint(pad), Seq: pad})
	}
	stop := b.run(t, mb.ConsumerOptions{DeadLetter: b.tr, MaxAttempts: 1, Concurrency: 1})
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for n := 0; n < 4; {
		msgs, err := dlq.Receive(rctx, 10)
		if err != nil {
			t.Fatalf("dead-letter receive: %v (have %d)", err, n)
		}
		for _, m := range msgs {
			n++
			text := m.Headers[mb.HeaderError]
			if !utf8.ValidString(text) {
				t.Errorf("%s: mb-error is not valid UTF-8 (ends %q)", m.ID, text[len(text)-8:])
			}
			if len(text) > 8<<10 || len(text) < 8<<10-3 {
				t.Errorf("%s: mb-error is %d bytes, want just under 8 KiB", m.ID, len(text))
			}
			if !strings.HasSuffix(text, "𝄞") {
				t.Errorf("%s: mb-error does not end with a whole character", m.ID)
			}
		}
	}
}

// CxTyped carries an extension attribute, which the consuming handler sees
// in its metadata.
type CxTyped struct{ Order string }

func (CxTyped) MessageName() string { return "cx.typed" }
func (CxTyped) Extensions() map[string]string {
	return map[string]string{"peertype": "ecst_event"}
}

func TestConsumerMetadataExtensions(t *testing.T) {
	b := setupCx(t, "cx.typed")
	mb.RegisterMessage[CxTyped](b.reg)
	got := make(chan mb.Metadata, 1)
	mb.Subscribe(b.bus, func(ctx context.Context, e CxTyped) error {
		md, _ := mb.MetadataFrom(ctx)
		got <- md
		return nil
	})
	stop := b.run(t, mb.ConsumerOptions{})
	b.publish(t, CxTyped{"o"})
	md := recv(t, got)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if md.Extensions["peertype"] != "ecst_event" || md.Source != "/test" {
		t.Fatalf("metadata %+v", md)
	}
	md.Extensions["peertype"] = "changed" // a copy: changing it is harmless
}
