package mb_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
)

// fakePublisher records batches and fails the first failN calls with err.
type fakePublisher struct {
	mu      sync.Mutex
	batches []string // "topic:n"
	msgs    []*mbdriver.Message
	calls   int
	failN   int
	err     error
	closed  bool
}

func (p *fakePublisher) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls <= p.failN {
		return p.err
	}
	p.batches = append(p.batches, topic+":"+string(rune('0'+len(msgs))))
	p.msgs = append(p.msgs, msgs...)
	return nil
}

func (p *fakePublisher) Close() error { p.closed = true; return nil }

// retryingPublisher declares its own retryable errors.
type retryingPublisher struct{ fakePublisher }

func (p *retryingPublisher) IsRetryable(err error) bool { return err != nil && err.Error() == "busy" }

func TestPublisherBatchesPerTopicInOrder(t *testing.T) {
	reg := cxRegistry(t)
	fp := &fakePublisher{}
	pub, err := mb.NewPublisher(fp, reg, &mb.PublisherOptions{MaxBatch: 2, Source: "/billing",
		Router: func(name string) string { return "t." + name }})
	if err != nil {
		t.Fatal(err)
	}
	evs := []any{
		CxOrderPlaced{Order: "1", Key: "a"}, CxOrderBilled{"1"}, CxOrderPlaced{Order: "2"},
		CxOrderPlaced{Order: "3"}, CxOrderBilled{"2"}, CxOrderPlaced{Order: "4"}, CxOrderPlaced{Order: "5"},
	}
	if err := pub.Publish(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	want := []string{"t.cx.order.placed:2", "t.cx.order.placed:2", "t.cx.order.placed:1", "t.cx.order.billed:2"}
	if strings.Join(fp.batches, " ") != strings.Join(want, " ") {
		t.Errorf("batches %v, want %v", fp.batches, want)
	}
	wantOrders := []string{"1", "2", "3", "4", "5", "1", "2"}
	ids := map[string]bool{}
	for i, m := range fp.msgs {
		env, err := mb.EnvelopeFromHeaders(m.Headers, m.Body)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(m.Body), `"`+wantOrders[i]+`"`) {
			t.Errorf("message %d body %s, want order %s", i, m.Body, wantOrders[i])
		}
		if env.ID != m.ID || env.Source != "/billing" || env.CorrelationID != env.ID || env.CausationID != "" || ids[m.ID] {
			t.Errorf("message %d envelope %+v", i, env)
		}
		ids[m.ID] = true
	}
	if fp.msgs[0].PartitionKey != "a" || fp.msgs[0].Headers["ce-partitionkey"] != "a" {
		t.Errorf("partition key not carried: %+v", fp.msgs[0])
	}
	if err := pub.Close(); err != nil || fp.closed {
		t.Errorf("Close = %v, closed driver = %v; it must not close what it does not own", err, fp.closed)
	}
	if err := pub.Publish(context.Background(), CxOrderBilled{"x"}); !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Publish after Close = %v", err)
	}
}

// With many topics (more than the few Publish scans linearly) each topic
// still gets its messages in the order given, topics in order of first
// appearance; all the events of one call carry one time.
func TestPublisherManyTopics(t *testing.T) {
	reg := cxRegistry(t)
	fp := &fakePublisher{}
	const topics, events = 10, 25
	n := 0
	pub, err := mb.NewPublisher(fp, reg, &mb.PublisherOptions{Source: "/billing", Router: func(string) string {
		n++
		return fmt.Sprintf("t%d", (n-1)%topics)
	}})
	if err != nil {
		t.Fatal(err)
	}
	evs := make([]any, events)
	for i := range evs {
		evs[i] = CxOrderPlaced{Order: strconv.Itoa(i)}
	}
	if err := pub.Publish(context.Background(), evs...); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := range topics {
		want = append(want, fmt.Sprintf("t%d:%d", i, (events-i+topics-1)/topics))
	}
	if strings.Join(fp.batches, " ") != strings.Join(want, " ") {
		t.Errorf("batches %v, want %v", fp.batches, want)
	}
	var wantOrders []string
	for i := range topics {
		for j := i; j < events; j += topics {
			wantOrders = append(wantOrders, strconv.Itoa(j))
		}
	}
	times := map[string]bool{}
	for i, m := range fp.msgs {
		if !strings.Contains(string(m.Body), `"`+wantOrders[i]+`"`) {
			t.Errorf("message %d body %s, want order %s", i, m.Body, wantOrders[i])
		}
		times[m.Headers["ce-time"]] = true
	}
	if len(times) != 1 {
		t.Errorf("one Publish call wrote %d different times: %v", len(times), times)
	}
}

func TestPublisherRetries(t *testing.T) {
	reg := cxRegistry(t)
	fast := mb.RetryOptions{MaxAttempts: 3, Backoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}}

	// The driver's IsRetryable decides.
	rp := &retryingPublisher{fakePublisher{failN: 2, err: errors.New("busy")}}
	pub, err := mb.NewPublisher(rp, reg, &mb.PublisherOptions{Retry: fast})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), CxOrderBilled{"1"}); err != nil || rp.calls != 3 {
		t.Errorf("Publish = %v after %d calls, want success after 3", err, rp.calls)
	}

	// Too many failures.
	rp = &retryingPublisher{fakePublisher{failN: 5, err: errors.New("busy")}}
	pub, _ = mb.NewPublisher(rp, reg, &mb.PublisherOptions{Retry: fast})
	if err := pub.Publish(context.Background(), CxOrderBilled{"1"}); err == nil || rp.calls != 3 || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Errorf("Publish = %v after %d calls, want failure after 3", err, rp.calls)
	}

	// A non-retryable error is returned at once.
	fatal := errors.New("forbidden")
	fp := &fakePublisher{failN: 1, err: fatal}
	pub, _ = mb.NewPublisher(fp, reg, &mb.PublisherOptions{Retry: fast})
	if err := pub.Publish(context.Background(), CxOrderBilled{"1"}); !errors.Is(err, fatal) || fp.calls != 1 {
		t.Errorf("Publish = %v after %d calls", err, fp.calls)
	}

	// Retries stop when the context is done.
	fp = &fakePublisher{failN: 100, err: mb.Retryable(errors.New("flaky"))}
	pub, _ = mb.NewPublisher(fp, reg, &mb.PublisherOptions{Retry: mb.RetryOptions{MaxAttempts: 100, Backoff: mb.Backoff{Min: time.Hour, Max: time.Hour}}})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := pub.Publish(ctx, CxOrderBilled{"1"}); !errors.Is(err, context.Canceled) || fp.calls != 1 {
		t.Errorf("Publish = %v after %d calls, want the context's error", err, fp.calls)
	}

	// Nothing is sent when an event cannot be encoded.
	fp = &fakePublisher{}
	pub, _ = mb.NewPublisher(fp, reg, nil)
	if err := pub.Publish(context.Background(), CxOrderBilled{"1"}, CxAudited{"x"}); !errors.Is(err, mb.ErrUnknownMessage) || fp.calls != 0 {
		t.Errorf("Publish = %v, %d calls", err, fp.calls)
	}
}

func TestNewPublisherInvalidOptions(t *testing.T) {
	_, err := mb.NewPublisher(nil, mb.NewRegistry(), &mb.PublisherOptions{MaxBatch: -1, Retry: mb.RetryOptions{MaxAttempts: -1}})
	wantErr(t, err, mb.ErrInvalidArgument)
	for _, want := range []string{"driver is nil", "PublisherOptions.MaxBatch", "PublisherOptions.Source", "PublisherOptions.Retry"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := mb.NewPublisher(&fakePublisher{}, nil, nil); err == nil || !strings.Contains(err.Error(), "registry is nil") {
		t.Errorf("nil registry: %v", err)
	}
}

func TestAfterRollback(t *testing.T) {
	bus := mb.New()
	var log recorder
	hooks := func(ctx context.Context, name string) {
		if err := mb.AfterRollback(ctx, func(context.Context) { log.add(name + " rolled back") }); err != nil {
			t.Error(err)
		}
		if err := mb.AfterCommit(ctx, func(context.Context) { log.add(name + " committed") }); err != nil {
			t.Error(err)
		}
	}
	fail := errors.New("fail")
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		hooks(ctx, c.What)
		switch c.What {
		case "fail":
			return fail
		case "nested":
			// The inner command fails: only its scope is undone.
			if err := mb.Exec(ctx, bus, DoIt{"fail"}); !errors.Is(err, fail) {
				t.Errorf("inner = %v", err)
			}
		}
		return nil
	})
	if err := mb.Exec(context.Background(), bus, DoIt{"ok"}); err != nil {
		t.Fatal(err)
	}
	if err := mb.Exec(context.Background(), bus, DoIt{"fail"}); !errors.Is(err, fail) {
		t.Fatal(err)
	}
	if err := mb.Exec(context.Background(), bus, DoIt{"nested"}); err != nil {
		t.Fatal(err)
	}
	want := "ok committed|fail rolled back|fail rolled back|nested committed"
	if got := strings.Join(log.items, "|"); got != want {
		t.Errorf("hooks ran: %s\nwant:      %s", got, want)
	}
	if err := mb.AfterRollback(context.Background(), func(context.Context) {}); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Errorf("AfterRollback outside a unit = %v", err)
	}
}
