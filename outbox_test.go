package mb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

// runRelay runs r until the end of the test.
func runRelay(t *testing.T, r *mb.Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Relay.Run: %v", err)
		}
	})
}

func newRelay(t *testing.T, store mbdriver.OutboxStore, pub mbdriver.Publisher, o mb.RelayOptions) *mb.Relay {
	t.Helper()
	if o.ErrorHandler == nil {
		o.ErrorHandler = func(context.Context, error) {}
	}
	r, err := mb.NewRelay(store, pub, &o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// The integration events a unit emits are stored in its outbox when it
// commits, and a relay publishes them with the identity they had in
// process; a unit that rolls back stores none, and events the registry does
// not know stay in process.
func TestOutboxForward(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var store mbmem.Outbox
	ob, err := mb.NewOutbox(&store, b.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus := mb.New(&mb.Options{Forward: ob, ErrorHandler: noErrors(t)})
	ids := make(chan string, 10)
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if err := mb.Emit(ctx, CxOrderPlaced{Order: c.What}, CxAudited{c.What}); err != nil {
			return err
		}
		if c.What == "fail" {
			return errors.New("rolled back")
		}
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		md, _ := mb.MetadataFrom(ctx)
		ids <- md.ID
		return nil
	})
	got := make(chan mb.Metadata, 10)
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error {
		md, _ := mb.MetadataFrom(ctx)
		got <- md
		return nil
	})
	stop := b.run(t, mb.ConsumerOptions{})
	runRelay(t, newRelay(t, &store, b.tr, mb.RelayOptions{Outbox: ob, Poll: time.Hour}))

	ctx := mb.WithCorrelationID(context.Background(), "req-1")
	noErr(t, mb.Exec(ctx, bus, DoIt{"o1"}))
	wantErr(t, mb.Exec(ctx, bus, DoIt{"fail"}))
	inProcess := recv(t, ids)
	md := recv(t, got)
	if md.ID != inProcess || md.CorrelationID != "req-1" || md.Source != "/test" {
		t.Fatalf("consumed %+v; the in-process id was %q", md, inProcess)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st, _ := store.Stats(context.Background()); st.Pending != 0 {
		t.Fatalf("outbox holds %d pending messages: %+v", st.Pending, st)
	}
	select {
	case id := <-ids:
		t.Fatalf("the event %q of the unit that rolled back was dispatched", id)
	default:
	}
	if n := len(b.sent.get(b.topic)); n != 0 {
		t.Fatalf("the test's own publisher sent %d messages", n)
	}
}

// Outbox.Publish stores events in the handler's unit; PublishAt holds them
// until they are due; outside a unit it fails.
func TestOutboxPublish(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var store mbmem.Outbox
	ob, err := mb.NewOutbox(&store, b.reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, ob.Publish(context.Background(), CxOrderPlaced{}), mb.ErrNoUnitOfWork)
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if c.What == "later" {
			return ob.PublishAt(ctx, time.Now().Add(time.Hour), CxOrderPlaced{Order: c.What})
		}
		return ob.Publish(ctx, CxOrderPlaced{Order: c.What})
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"now"}))
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"later"}))
	msgs, err := store.Claim(context.Background(), "test", 10, time.Minute)
	noErr(t, err)
	if len(msgs) != 1 || msgs[0].Topic != "cx.order.placed" || !strings.Contains(string(msgs[0].Message.Body), `"now"`) {
		t.Fatalf("claimed %+v, want the event due now only", msgs)
	}
	if st, _ := store.Stats(context.Background()); st.Pending != 2 {
		t.Fatalf("stats %+v, want 2 pending", st)
	}
}

// refusing refuses the messages whose body names a poison order, and
// fails everything while down: an outage.
type refusing struct {
	mbdriver.Publisher
	down atomic.Bool
	mu   sync.Mutex
	sent []string // ids, in publish order
}

var errOutage = mb.Retryable(errors.New("connection refused"))

func (p *refusing) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if p.down.Load() {
		return errOutage
	}
	for _, m := range msgs {
		if strings.Contains(string(m.Body), "poison") {
			return fmt.Errorf("message %q refused: too large", m.ID)
		}
	}
	p.mu.Lock()
	for _, m := range msgs {
		p.sent = append(p.sent, string(m.Body))
	}
	p.mu.Unlock()
	return p.Publisher.Publish(ctx, topic, msgs)
}

func (p *refusing) IsRetryable(err error) bool { return mb.IsRetryable(err) }

func (p *refusing) bodies() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.sent)
}

// A message the transport refuses is tried again and parked after
// MaxAttempts; it holds back the later messages of its key until then,
// and no other key. An outage counts no attempt.
func TestRelayRefusalsAndOutages(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var store mbmem.Outbox
	ob, _ := mb.NewOutbox(&store, b.reg, nil)
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		var evs []any
		for o := range strings.SplitSeq(c.What, " ") {
			key, order, _ := strings.Cut(o, ":")
			evs = append(evs, CxOrderPlaced{Order: order, Key: key})
		}
		return ob.Publish(ctx, evs...)
	})
	pub := &refusing{Publisher: b.tr}
	pub.down.Store(true)
	var errs errSink
	r := newRelay(t, &store, pub, mb.RelayOptions{
		Outbox: ob, MaxAttempts: 3, BatchSize: 10, Poll: 5 * time.Millisecond,
		Backoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}, ReconnectBackoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond},
		ErrorHandler: errs.handle,
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"a:a1 b:poison a:a2 b:b2 c:c1"}))
	runRelay(t, r)
	eventually(t, "outage reports", func() bool { return len(errs.get()) >= 5 })
	if parked, _ := store.Parked(); len(parked) != 0 {
		t.Fatalf("an outage parked %d messages", len(parked))
	}
	pub.down.Store(false)
	eventually(t, "all settled", func() bool {
		st, _ := store.Stats(context.Background())
		return st.Pending == 0
	})
	parked, reasons := store.Parked()
	if len(parked) != 1 || !strings.Contains(string(parked[0].Message.Body), "poison") || parked[0].Attempts != 3 || !strings.Contains(reasons[0], "too large") {
		t.Fatalf("parked %+v %q", parked, reasons)
	}
	sent := pub.bodies()
	pos := func(order string) int {
		return slices.IndexFunc(sent, func(s string) bool { return strings.Contains(s, `"`+order+`"`) })
	}
	for _, o := range []string{"a1", "a2", "b2", "c1"} {
		if pos(o) < 0 {
			t.Fatalf("%s never sent: %q", o, sent)
		}
	}
	if pos("a1") > pos("a2") {
		t.Errorf("key a out of order: %q", sent)
	}
	st, err := r.Stats(context.Background())
	noErr(t, err)
	if st.Published != 4 || st.Parked != 1 || st.Retried != 2 || st.Store.Parked != 1 || st.Store.Pending != 0 {
		t.Errorf("stats %+v", st)
	}
}

// Several relays over one store keep each key's messages in write order
// and publish each message once.
func TestRelaysKeepPerKeyOrder(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	var store mbmem.Outbox
	ob, _ := mb.NewOutbox(&store, b.reg, nil)
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		var evs []any
		for i := range 10 {
			evs = append(evs, CxOrderPlaced{Key: c.What, Seq: i})
		}
		return ob.Publish(ctx, evs...)
	})
	pub := &refusing{Publisher: b.tr}
	for i := range 4 {
		runRelay(t, newRelay(t, &store, pub, mb.RelayOptions{Name: fmt.Sprint("relay-", i), Outbox: ob, BatchSize: 3, Poll: time.Millisecond}))
	}
	var wg sync.WaitGroup
	for k := range 8 {
		wg.Go(func() {
			for range 5 {
				if err := mb.Exec(context.Background(), bus, DoIt{fmt.Sprint("k", k)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	eventually(t, "all sent", func() bool { return len(pub.bodies()) == 8*5*10 })
	last := map[string]int{}
	for _, s := range pub.bodies() {
		var key string
		var seq, round int
		_, _ = fmt.Sscanf(strings.NewReplacer(`{"Order":"","Key":"`, "", `","Seq":`, " ", "}", "").Replace(s), "%s %d", &key, &seq)
		round = last[key]
		if seq != round%10 {
			t.Fatalf("key %s: seq %d after %d messages: out of order", key, seq, round)
		}
		last[key]++
	}
}

// A LocalDelivery turns the outbox into durable in-process delivery: a
// failing handler is retried by the relay, and with an inbox the handlers
// that succeeded do not run again.
func TestLocalDelivery(t *testing.T) {
	reg := cxRegistry(t)
	var store mbmem.Outbox
	ob, _ := mb.NewOutbox(&store, reg, nil)
	bus := mb.New(&mb.Options{Forward: ob})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		return mb.Emit(ctx, CxOrderPlaced{Order: c.What})
	})
	// The bus whose handlers the relay delivers to: here another one, so
	// that the in-process dispatch of the command's bus does not mix in.
	handlers := mb.New()
	var mailed, billed atomic.Int32
	mb.Subscribe(handlers, func(ctx context.Context, e CxOrderPlaced) error { mailed.Add(1); return nil }, mb.WithName("mail"))
	mb.Subscribe(handlers, func(ctx context.Context, e CxOrderPlaced) error {
		if billed.Add(1) < 3 {
			return errors.New("billing is down")
		}
		return nil
	}, mb.WithName("bill"))
	local, err := mb.NewLocalDelivery(handlers, reg, &mb.LocalDeliveryOptions{Inbox: &mbmem.Inbox{}})
	if err != nil {
		t.Fatal(err)
	}
	runRelay(t, newRelay(t, &store, local, mb.RelayOptions{Outbox: ob, Backoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}, Poll: time.Millisecond}))
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"o1"}))
	eventually(t, "billed", func() bool {
		st, _ := store.Stats(context.Background())
		return billed.Load() == 3 && st.Pending == 0
	})
	if n := mailed.Load(); n != 1 {
		t.Fatalf("mailed %d times, want once: the inbox keeps a retried message from running handlers that succeeded", n)
	}
}

// A Publisher as Options.Forward publishes a unit's integration events
// after it commits, and none of a unit that rolls back.
func TestPublisherForward(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	bus := mb.New(&mb.Options{Forward: b.pub, ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if err := mb.Emit(ctx, CxOrderPlaced{Order: c.What}, CxAudited{c.What}); err != nil {
			return err
		}
		if c.What == "fail" {
			return errors.New("rolled back")
		}
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"o1"}))
	wantErr(t, mb.Exec(context.Background(), bus, DoIt{"fail"}))
	sent := b.sent.get(b.topic)
	if len(sent) != 1 || !strings.Contains(string(sent[0].Body), `"o1"`) {
		t.Fatalf("published %d messages: %v", len(sent), sent)
	}
}

// Options and arguments are checked.
func TestOutboxAndRelayInvalid(t *testing.T) {
	_, err := mb.NewOutbox(nil, nil, &mb.OutboxOptions{Source: "a\x00"})
	wantErr(t, err, mb.ErrInvalidArgument)
	for _, want := range []string{"writer is nil", "registry is nil", "OutboxOptions.Source"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewOutbox error lacks %q: %v", want, err)
		}
	}
	_, err = mb.NewRelay(nil, nil, &mb.RelayOptions{BatchSize: -1, Lease: -1, MaxAttempts: -1, Poll: -1, Backoff: mb.Backoff{Min: -1}})
	wantErr(t, err, mb.ErrInvalidArgument)
	for _, want := range []string{"store is nil", "publisher is nil", "BatchSize", "Lease", "MaxAttempts", "Poll", "Backoff.Min"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("NewRelay error lacks %q: %v", want, err)
		}
	}
	_, err = mb.NewLocalDelivery(nil, nil, nil)
	wantErr(t, err, mb.ErrInvalidArgument)
}

// EmitAt stores events for later through the bus's outbox, and fails
// without one.
func TestEmitAt(t *testing.T) {
	reg := cxRegistry(t)
	var store mbmem.Outbox
	ob, _ := mb.NewOutbox(&store, reg, nil)
	due := time.Now().Add(time.Hour)
	for _, c := range []struct {
		bus  *mb.Bus
		want error
	}{{mb.New(&mb.Options{Forward: ob}), nil}, {mb.New(), mb.ErrInvalidArgument}} {
		var dispatched atomic.Int32
		mb.Subscribe(c.bus, func(ctx context.Context, e CxOrderPlaced) error { dispatched.Add(1); return nil })
		mb.HandleCommandNoResult(c.bus, func(ctx context.Context, d DoIt) error {
			return mb.EmitAt(ctx, due, CxOrderPlaced{Order: d.What})
		})
		if err := mb.Exec(context.Background(), c.bus, DoIt{"remind"}); !errors.Is(err, c.want) {
			t.Fatalf("Exec = %v, want %v", err, c.want)
		}
		if dispatched.Load() != 0 {
			t.Fatal("a delayed event was dispatched at the commit")
		}
	}
	if st, _ := store.Stats(context.Background()); st.Pending != 1 {
		t.Fatalf("stats %+v, want the delayed event pending", st)
	}
	msgs, err := store.Claim(context.Background(), "t", 10, time.Minute)
	noErr(t, err)
	if len(msgs) != 0 {
		t.Fatalf("claimed %d messages before they were due", len(msgs))
	}
	wantErr(t, mb.EmitAt(context.Background(), due, CxOrderPlaced{}), mb.ErrNoUnitOfWork)
}

// A LocalDelivery to the bus whose Outbox stores the events would run
// their handlers twice: right after the commit and again from the relay.
// It is refused, naming the event; another bus, or an Outbox that does not
// select the event, is fine.
func TestLocalDeliveryToTheForwardingBusIsRefused(t *testing.T) {
	reg := cxRegistry(t)
	var store mbmem.Outbox
	ob, _ := mb.NewOutbox(&store, reg, nil)
	bus := mb.New(&mb.Options{Forward: ob})
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error { return nil }, mb.WithName("mail"))
	_, err := mb.NewLocalDelivery(bus, reg, nil)
	wantErr(t, err, mb.ErrInvalidArgument)
	if !strings.Contains(err.Error(), "cx.order.placed") || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("error does not name the event and the problem: %v", err)
	}

	if _, err := mb.NewLocalDelivery(mb.New(), reg, nil); err != nil {
		t.Fatalf("a bus without Forward: %v", err)
	}
	none, _ := mb.NewOutbox(&store, reg, &mb.OutboxOptions{Select: func(string) bool { return false }})
	other := mb.New(&mb.Options{Forward: none})
	mb.Subscribe(other, func(ctx context.Context, e CxOrderPlaced) error { return nil }, mb.WithName("mail"))
	if _, err := mb.NewLocalDelivery(other, reg, nil); err != nil {
		t.Fatalf("an Outbox that selects none of the events: %v", err)
	}
}
