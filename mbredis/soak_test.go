package mbredis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbredis"
	"github.com/mb-go/mb/mbtest"
)

// soakDurationVar sets how long TestSoakConsumerChurn publishes; 2s by
// default so that it runs in every test run, longer for a soak:
//
//	MB_SOAK_DURATION=5m go test -run TestSoakConsumerChurn -timeout 30m .
const soakDurationVar = "MB_SOAK_DURATION"

// While a producer publishes without pause, three consumers of one group
// are stopped and started again at random (a graceful stop: in-flight
// messages finish, the rest go back to the group), handlers fail at random
// with retryable errors, and every event must end with exactly one effect:
// none lost, none applied twice (the inbox drops redeliveries), nothing
// dead-lettered.
func TestSoakConsumerChurn(t *testing.T) {
	d := soakDuration(t, 2*time.Second)
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), d+2*time.Minute)
	defer cancel()
	const group = "soak"

	newDriver := func() *mbredis.Streams {
		s, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{
			KeyPrefix: p, Block: 100 * time.Millisecond, ClaimMinIdle: 300 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	reg := rtRegistry()
	var fx effects
	var failures atomic.Int64
	var inbox mbmem.Inbox
	bus := mb.New(&mb.Options{ErrorHandler: func(context.Context, error) {}})
	mb.Subscribe(bus, func(ctx context.Context, e rtEvent) error {
		if rand.IntN(20) == 0 { // 5 %
			failures.Add(1)
			return mb.Retryable(errors.New("flaky dependency"))
		}
		fx.add(e.Key)
		return nil
	}, mb.WithName("effect"))

	dl := newDriverClosed(t, newDriver)
	// consumer i runs until its stop is called.
	type instance struct {
		drv  *mbredis.Streams
		stop func() error
	}
	start := func(i int) instance {
		drv := newDriver()
		cons, err := mb.NewConsumer(bus, drv, reg, &mb.ConsumerOptions{
			Topic: rtTopic, Group: group, Consumer: fmt.Sprintf("c%d", i), Start: mbdriver.StartOldest,
			Concurrency: 2, BatchSize: 20, MaxAttempts: 50,
			Backoff:    mb.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond},
			Inbox:      &inbox,
			DeadLetter: dl,
			ErrorHandler: func(_ context.Context, err error) {
				if errors.Is(err, mb.ErrPanic) {
					t.Errorf("consumer %d: %v", i, err)
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		stop := mbtest.RunConsumer(t, ctx, cons)
		return instance{drv: drv, stop: stop}
	}
	var mu sync.Mutex
	instances := []instance{start(0), start(1), start(2)}
	stopAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for i, in := range instances {
			if err := in.stop(); err != nil {
				t.Errorf("consumer %d: Run = %v", i, err)
			}
			_ = in.drv.Close()
		}
	}
	defer stopAll()

	pub, err := mb.NewPublisher(newDriverClosed(t, newDriver), reg, &mb.PublisherOptions{Router: rtRouter})
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	restarts := 0
	deadline := time.Now().Add(d)
	nextChurn := time.Now().Add(100 * time.Millisecond)
	for time.Now().Before(deadline) {
		batch := make([]any, 10)
		for j := range batch {
			batch[j] = rtEvent{Key: fmt.Sprintf("soak-%06d", published)}
			published++
		}
		if err := pub.Publish(ctx, batch...); err != nil {
			t.Fatalf("Publish after %d events: %v", published-len(batch), err)
		}
		if time.Now().After(nextChurn) {
			i := rand.IntN(len(instances))
			mu.Lock()
			if err := instances[i].stop(); err != nil {
				t.Errorf("consumer %d: Run = %v", i, err)
			}
			_ = instances[i].drv.Close()
			instances[i] = start(i)
			mu.Unlock()
			restarts++
			nextChurn = time.Now().Add(time.Duration(50+rand.IntN(250)) * time.Millisecond)
		}
	}
	waitUntil(t, ctx, func() string {
		return fmt.Sprintf("%d of %d events with an effect", len(fx.snapshot()), published)
	}, func() bool { return len(fx.snapshot()) == published })

	for k, n := range fx.snapshot() {
		if n != 1 {
			t.Errorf("event %s had %d effects, want 1", k, n)
		}
	}
	if n, err := c.XLen(ctx, p+rtTopic+".dlq").Result(); err != nil || n != 0 {
		t.Errorf("dead-letter stream holds %d entries (%v), want none", n, err)
	}
	t.Logf("%d events over %v, %d consumer restarts, %d failed handlings retried", published, d, restarts, failures.Load())
}

// soakDuration returns the duration MB_SOAK_DURATION asks for, or def.
func soakDuration(t *testing.T, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(soakDurationVar)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("%s=%q: want a positive duration such as 30s", soakDurationVar, v)
	}
	return d
}

// newDriverClosed returns a driver from newDriver, closed at the end of
// the test.
func newDriverClosed(t *testing.T, newDriver func() *mbredis.Streams) *mbredis.Streams {
	t.Helper()
	s := newDriver()
	t.Cleanup(func() { _ = s.Close() })
	return s
}
