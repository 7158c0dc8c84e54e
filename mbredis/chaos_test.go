package mbredis_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

// While a producer and two consumers of one group run, a Redis server of
// the test's own (AOF, fsync always) is killed and started again over and
// over. Every event whose Publish succeeded must take effect exactly once;
// an event whose Publish failed (during an outage) may have been added or
// not, and takes effect at most once; nothing else takes effect.
// MB_SOAK_DURATION sets how long the producer runs (3s by default).
func TestSoakRedisRestarts(t *testing.T) {
	d := soakDuration(t, 3*time.Second)
	srv := startOwnRedis(t)
	c := srv.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()

	newDriver := func() *mbredis.Streams {
		s, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{Block: 100 * time.Millisecond, ClaimMinIdle: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	reg := rtRegistry()
	var fx effects
	var inbox mbmem.Inbox
	bus := mb.New(&mb.Options{ErrorHandler: func(context.Context, error) {}})
	mb.Subscribe(bus, func(_ context.Context, e rtEvent) error {
		if rand.IntN(20) == 0 {
			return mb.Retryable(errors.New("flaky dependency"))
		}
		fx.add(e.Key)
		return nil
	}, mb.WithName("effect"))
	for i := range 2 {
		cons, err := mb.NewConsumer(bus, newDriver(), reg, &mb.ConsumerOptions{
			Topic: rtTopic, Group: "chaos", Consumer: fmt.Sprintf("c%d", i), Start: mbdriver.StartOldest,
			Concurrency: 2, BatchSize: 20, MaxAttempts: 1000,
			Backoff:          mb.Backoff{Min: 5 * time.Millisecond, Max: 50 * time.Millisecond},
			ReconnectBackoff: mb.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
			Inbox:            &inbox,
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
		defer func() {
			if err := stop(); err != nil {
				t.Errorf("consumer %d: Run = %v", i, err)
			}
		}()
	}

	// The chaos: kill and restart the server until the producer is done.
	var restarts atomic.Int32
	producing := make(chan struct{})
	var chaos sync.WaitGroup
	chaos.Go(func() {
		for {
			select {
			case <-producing:
				return
			case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
			}
			srv.kill()
			time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
			srv.start()
			restarts.Add(1)
		}
	})

	pub, err := mb.NewPublisher(newDriver(), reg, &mb.PublisherOptions{Router: rtRouter,
		Retry: mb.RetryOptions{MaxAttempts: 2, Backoff: mb.Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond}}})
	if err != nil {
		t.Fatal(err)
	}
	sure := map[string]bool{}  // published: must take effect once
	maybe := map[string]bool{} // Publish failed: at most once
	n, failed := 0, 0
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		batch := make([]any, 10)
		keys := make([]string, len(batch))
		for j := range batch {
			keys[j] = fmt.Sprintf("chaos-%06d", n)
			batch[j] = rtEvent{Key: keys[j]}
			n++
		}
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := pub.Publish(pctx, batch...)
		pcancel()
		for _, k := range keys {
			if err == nil {
				sure[k] = true
			} else {
				maybe[k] = true
			}
		}
		if err != nil {
			failed++
			time.Sleep(10 * time.Millisecond)
		}
	}
	close(producing)
	chaos.Wait()

	waitUntil(t, ctx, func() string {
		got := fx.snapshot()
		missing := 0
		for k := range sure {
			if got[k] == 0 {
				missing++
			}
		}
		return fmt.Sprintf("the %d published events to take effect (%d missing)", len(sure), missing)
	}, func() bool {
		got := fx.snapshot()
		for k := range sure {
			if got[k] == 0 {
				return false
			}
		}
		return true
	})
	for k, v := range fx.snapshot() {
		switch {
		case !sure[k] && !maybe[k]:
			t.Errorf("event %s took effect but was never published", k)
		case v != 1:
			t.Errorf("event %s took effect %d times, want once", k, v)
		}
	}
	if restarts.Load() == 0 {
		t.Error("the server was never restarted; the test proved nothing")
	}
	t.Logf("%d events published (%d in %d failed Publish calls), %d restarts", n, len(maybe), failed, restarts.Load())
}
