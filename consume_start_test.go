package mb_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbtest"
)

// flakySubscriber fails its first fails Subscribe calls with err, as a
// broker that is not up yet does, then subscribes through the transport.
type flakySubscriber struct {
	*mbmem.Transport
	err   error
	fails int32
	calls atomic.Int32
}

func (s *flakySubscriber) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	if s.calls.Add(1) <= s.fails {
		return nil, s.err
	}
	return s.Transport.Subscribe(ctx, sub)
}

func (s *flakySubscriber) IsRetryable(err error) bool { return mb.IsRetryable(err) }

var fastReconnect = mb.Backoff{Min: time.Millisecond, Max: time.Millisecond}

// A consumer started while its broker is unreachable keeps trying to
// subscribe, reporting each failure, and handles messages once it can: it
// does not give up at start-up when it would ride out the same outage later.
func TestConsumerRetriesSubscribeAtStart(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	refused := mb.Retryable(errors.New("dial tcp 127.0.0.1:1: connection refused"))
	s := &flakySubscriber{Transport: b.tr, err: refused, fails: 3}
	got := make(chan string, 1)
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error { got <- e.Order; return nil })
	stop := mbtest.RunConsumer(t, context.Background(), b.consumer(t, s, mb.ConsumerOptions{ReconnectBackoff: fastReconnect}))
	b.publish(t, CxOrderPlaced{Order: "o1"})
	if o := recv(t, got); o != "o1" {
		t.Fatalf("handled %q", o)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	reported := b.errs.get()
	if len(reported) != 3 {
		t.Fatalf("reported %d errors, want the 3 failed subscriptions: %v", len(reported), reported)
	}
	for _, err := range reported {
		if !errors.Is(err, refused) {
			t.Errorf("reported %v", err)
		}
	}
}

// Cancelling Run while it waits to subscribe again stops it.
func TestConsumerSubscribeRetryStopsWithContext(t *testing.T) {
	tr, reg := cxBroker(t)
	s := &flakySubscriber{Transport: tr, err: mb.Retryable(errors.New("connection refused")), fails: 1 << 30}
	var reported atomic.Int32
	c := newCx(t, mb.New(), s, reg, mb.ConsumerOptions{Topic: "t", Group: cxGroup, ReconnectBackoff: fastReconnect,
		ErrorHandler: func(context.Context, error) { reported.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	eventually(t, "a few failed subscriptions", func() bool { return reported.Load() >= 3 })
	cancel()
	if err := recv(t, done); err != nil {
		t.Fatalf("Run = %v, want nil after cancellation", err)
	}
}

// With FailFast, or for an error that is not retryable, Run returns the
// subscribe error at once.
func TestConsumerSubscribeFailFast(t *testing.T) {
	tr, reg := cxBroker(t)
	for name, tc := range map[string]struct {
		err      error
		failFast bool
	}{
		"FailFast":      {mb.Retryable(errors.New("connection refused")), true},
		"not retryable": {errors.New("NOPERM no permission"), false},
	} {
		t.Run(name, func(t *testing.T) {
			s := &flakySubscriber{Transport: tr, err: tc.err, fails: 1 << 30}
			c := newCx(t, mb.New(), s, reg, mb.ConsumerOptions{Topic: "t", Group: cxGroup, FailFast: tc.failFast, ReconnectBackoff: fastReconnect})
			if err := c.Run(context.Background()); !errors.Is(err, tc.err) {
				t.Fatalf("Run = %v, want the subscribe error", err)
			}
			if n := s.calls.Load(); n != 1 {
				t.Fatalf("Subscribe called %d times", n)
			}
		})
	}
}

// A handler that runs under an inbox is keyed by its name; the generated
// name of a closure ("pkg.f.func1") changes when code around it changes,
// which would make every event look new after a deployment. NewConsumer
// refuses it.
func TestConsumerInboxRefusesGeneratedHandlerNames(t *testing.T) {
	tr, reg := cxBroker(t)
	inbox := &mbmem.Inbox{}
	closure := func(ctx context.Context, e CxOrderPlaced) error { return nil }

	bus := mb.New()
	mb.Subscribe(bus, closure)
	_, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{Topic: "t", Group: cxGroup, Inbox: inbox})
	wantErr(t, err, mb.ErrInvalidHandler)
	if !strings.Contains(err.Error(), "WithName") || !strings.Contains(err.Error(), ".func") {
		t.Fatalf("error %q does not name the handler and the fix", err)
	}
	// An interface subscription that receives consumed events counts too.
	bus = mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e any) error { return nil })
	_, err = mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{Topic: "t", Group: cxGroup, Inbox: inbox})
	wantErr(t, err, mb.ErrInvalidHandler)

	// Named, or without an inbox, or for events the registry does not
	// know: fine.
	bus = mb.New()
	mb.Subscribe(bus, closure, mb.WithName("billing.charge"))
	mb.Subscribe(bus, func(ctx context.Context, e CxAudited) error { return nil })
	newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: "t", Group: cxGroup, Inbox: inbox})
	bus = mb.New()
	mb.Subscribe(bus, closure)
	newCx(t, bus, tr, reg, mb.ConsumerOptions{Topic: "t", Group: cxGroup})
}

// A handler with a generated name subscribed after the consumer was
// created fails its handlings instead of being keyed by that name.
func TestConsumerInboxRefusesLateGeneratedName(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	c := b.consumer(t, nil, mb.ConsumerOptions{Inbox: &mbmem.Inbox{}, MaxAttempts: 3})
	ran := false
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error { ran = true; return nil })
	stop := mbtest.RunConsumer(t, context.Background(), c)
	b.publish(t, CxOrderPlaced{Order: "o"})
	eventually(t, "the failure reported", func() bool { return len(b.errs.get()) > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	reported := b.errs.get()
	if ran || !errors.Is(reported[0], mb.ErrInvalidHandler) {
		t.Fatalf("handler ran %v; reported %v", ran, reported)
	}
}
