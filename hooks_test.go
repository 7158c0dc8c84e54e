package mb_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// A stand-in for a tracing integration: the "trace" travels in ctx on both
// sides and in the envelope's traceparent in between.
type traceKey struct{}

func withTrace(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceKey{}, tp)
}

func traceOf(ctx context.Context) string { s, _ := ctx.Value(traceKey{}).(string); return s }

const (
	traceA = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	traceB = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// The publish hook writes the trace of Publish's ctx into each envelope; the
// receive hook puts it back into the handlers' ctx and hears how each
// delivery ended: a handler failing once is reported as failed, then as
// handled when the broker redelivers it.
func TestTraceHooksCarryContextAcross(t *testing.T) {
	const topic = "cx.order.placed"
	tr, reg := cxBroker(t, topic)
	pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{
		Router: func(string) string { return topic },
		OnPublish: func(ctx context.Context, env *mb.Envelope) {
			env.TraceParent = traceOf(ctx)
			env.Subject = "order/" + env.ID[:4]
		},
	})
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	seen := map[string]string{} // order -> trace the handler saw
	var outcomes []string       // "ok" or the error, per delivery
	failed := false
	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e CxOrderPlaced) error {
		mu.Lock()
		defer mu.Unlock()
		seen[e.Order] = traceOf(ctx)
		if e.Order == "2" && !failed {
			failed = true
			return errors.New("flaky")
		}
		return nil
	}, mb.WithName("trace-test"))
	var mu2 sync.Mutex
	c, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{
		Topic: topic, Group: cxGroup, Logger: quietLogger(), ErrorHandler: func(context.Context, error) {},
		OnReceive: func(ctx context.Context, env *mb.Envelope) (context.Context, func(error)) {
			if !strings.HasPrefix(env.Subject, "order/") {
				t.Errorf("received subject %q; the publish hook's attribute did not arrive", env.Subject)
			}
			return withTrace(ctx, env.TraceParent), func(err error) {
				mu2.Lock()
				defer mu2.Unlock()
				out := "ok"
				if err != nil {
					out = err.Error()
				}
				outcomes = append(outcomes, out)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(withTrace(context.Background(), traceA), CxOrderPlaced{Order: "1"}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(withTrace(context.Background(), traceB), CxOrderPlaced{Order: "2"}); err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, context.Background(), c)
	eventually(t, "both orders handled, order 2 twice", func() bool {
		mu2.Lock()
		defer mu2.Unlock()
		return len(outcomes) == 3
	})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if seen["1"] != traceA || seen["2"] != traceB {
		t.Errorf("handlers saw traces %q and %q, want %q and %q", seen["1"], seen["2"], traceA, traceB)
	}
	mu2.Lock()
	got := slices.Sorted(slices.Values(outcomes))
	mu2.Unlock()
	if len(got) != 3 || !strings.Contains(got[0], "flaky") || got[1] != "ok" || got[2] != "ok" {
		t.Errorf("delivery outcomes %q, want two handled and one failed with the handler's error", got)
	}
}

// What the publish hook does is checked: an invalid attribute, a changed
// payload or type, or a panic fails Publish and sends nothing.
func TestPublishHookMisuse(t *testing.T) {
	cases := map[string]func(context.Context, *mb.Envelope){
		"invalid attribute": func(_ context.Context, env *mb.Envelope) { env.TraceParent = "bad\x00value" },
		"changed data":      func(_ context.Context, env *mb.Envelope) { env.Data = []byte(`{}`) },
		"changed type":      func(_ context.Context, env *mb.Envelope) { env.Type = "cx.order.billed" },
		"panic":             func(context.Context, *mb.Envelope) { panic("boom") },
	}
	for name, hook := range cases {
		t.Run(name, func(t *testing.T) {
			fp := &fakePublisher{}
			pub, err := mb.NewPublisher(fp, cxRegistry(t), &mb.PublisherOptions{OnPublish: hook})
			if err != nil {
				t.Fatal(err)
			}
			err = pub.Publish(context.Background(), CxOrderPlaced{Order: "1"})
			if err == nil || !strings.Contains(err.Error(), "OnPublish") {
				t.Errorf("Publish = %v, want an error naming OnPublish", err)
			}
			if fp.calls != 0 {
				t.Errorf("the driver was called %d times; nothing may be sent", fp.calls)
			}
		})
	}
	// A hook may move the time; the header follows it.
	fp := &fakePublisher{}
	pub, err := mb.NewPublisher(fp, cxRegistry(t), &mb.PublisherOptions{OnPublish: func(_ context.Context, env *mb.Envelope) {
		env.Time = env.Time.AddDate(-1, 0, 0)
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "1"}); err != nil {
		t.Fatal(err)
	}
	env, err := mb.EnvelopeFromHeaders(fp.msgs[0].Headers, fp.msgs[0].Body)
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(env.Time) < 300*24*time.Hour {
		t.Errorf("ce-time is %v; the hook moved the time a year back", env.Time)
	}
}

// A receive hook that panics, or returns a nil context, is reported and the
// message is handled all the same.
func TestReceiveHookMisuse(t *testing.T) {
	const topic = "cx.order.placed"
	for name, hook := range map[string]func(context.Context, *mb.Envelope) (context.Context, func(error)){
		"panic":       func(context.Context, *mb.Envelope) (context.Context, func(error)) { panic("boom") },
		"nil context": func(context.Context, *mb.Envelope) (context.Context, func(error)) { return nil, nil },
		"done panics": func(ctx context.Context, _ *mb.Envelope) (context.Context, func(error)) {
			return ctx, func(error) { panic("boom") }
		},
	} {
		t.Run(name, func(t *testing.T) {
			tr, reg := cxBroker(t, topic)
			handled := make(chan string, 1)
			bus := mb.New()
			mb.Subscribe(bus, func(_ context.Context, e CxOrderPlaced) error { handled <- e.Order; return nil })
			var errs errSink
			c, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{
				Topic: topic, Group: cxGroup, ErrorHandler: errs.handle, OnReceive: hook,
			})
			if err != nil {
				t.Fatal(err)
			}
			pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{Router: func(string) string { return topic }})
			if err != nil {
				t.Fatal(err)
			}
			if err := pub.Publish(context.Background(), CxOrderPlaced{Order: "7"}); err != nil {
				t.Fatal(err)
			}
			stop := mbtest.RunConsumer(t, context.Background(), c)
			if got := recv(t, handled); got != "7" {
				t.Fatalf("handled %q", got)
			}
			eventually(t, "the hook's misuse reported", func() bool {
				for _, err := range errs.get() {
					if strings.Contains(err.Error(), "OnReceive") {
						return true
					}
				}
				return false
			})
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
