package mbredis_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// blockedReceive starts Receive with ctx on a Streams receiver whose reads
// may block for an hour and waits until Redis shows the read blocked. It
// returns the receiver and the channel Receive's error arrives on. deadline
// (a minute away) bounds everything: a read that is not interrupted
// outlives it, so the checks fail instead of passing late.
func blockedReceive(t *testing.T, deadline, ctx context.Context) (mbdriver.Receiver, <-chan error) {
	t.Helper()
	c := newClient(t)
	p := prefix(t, c)
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: time.Hour, ClaimMinIdle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := d.Subscribe(deadline, mbdriver.Subscription{Topic: "idle", Group: "g", Consumer: "waiter"})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := r.Receive(ctx, 10)
		errc <- err
	}()
	waitBlockedN(t, deadline, c, 1)
	return r, errc
}

// Close ends a Receive blocked in XREADGROUP at once, with ErrClosed, not
// when Block runs out.
func TestStreamsCloseWakesBlockedReceive(t *testing.T) {
	deadline, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, errc := blockedReceive(t, deadline, deadline)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, mbdriver.ErrClosed) {
			t.Errorf("Receive = %v, want ErrClosed", err)
		}
	case <-deadline.Done():
		t.Fatal("Receive still blocked a minute after Close")
	}
}

// Cancelling Receive's context ends a blocked XREADGROUP at once.
func TestStreamsCancelWakesBlockedReceive(t *testing.T) {
	deadline, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx, stop := context.WithCancel(deadline)
	defer stop()
	r, errc := blockedReceive(t, deadline, ctx)
	stop()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Receive = %v, want context.Canceled", err)
		}
	case <-deadline.Done():
		t.Fatal("Receive still blocked a minute after its context was cancelled")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}

// Receivers blocked in reads do not hold connections of the client's
// pool: with more receivers than the pool has connections, publishing and
// acknowledging still work.
func TestStreamsReceiversLeaveThePoolFree(t *testing.T) {
	base := newClient(t)
	p := prefix(t, base)
	opts := *base.Options()
	opts.PoolSize, opts.PoolTimeout = 2, 2*time.Second
	c := redis.NewClient(&opts)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	type got struct {
		r    mbdriver.Receiver
		msgs []*mbdriver.Message
		err  error
	}
	results := make(chan got, 3)
	for i := range 3 {
		topic := fmt.Sprintf("t%d", i)
		r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: topic, Group: "g"})
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			msgs, err := r.Receive(ctx, 10)
			results <- got{r, msgs, err}
		}()
		waitBlockedN(t, ctx, base, i+1)
	}
	for i := range 3 {
		m := &mbdriver.Message{ID: fmt.Sprint(i), Headers: map[string]string{}, Body: []byte("x")}
		if err := d.Publish(ctx, fmt.Sprintf("t%d", i), []*mbdriver.Message{m}); err != nil {
			t.Fatalf("Publish with every receiver blocked: %v", err)
		}
	}
	for range 3 {
		g := <-results
		if g.err != nil || len(g.msgs) != 1 {
			t.Fatalf("Receive = %v, %v", g.msgs, g.err)
		}
		if err := g.r.Ack(ctx, g.msgs); err != nil {
			t.Fatalf("Ack: %v", err)
		}
	}
}

// waitBlockedN polls CLIENT LIST until n clients of the server are
// blocked in XREADGROUP. Readers of tests running at the same time on the
// server would count too; this package's tests do not run in parallel.
func waitBlockedN(t *testing.T, ctx context.Context, c *redis.Client, n int) {
	t.Helper()
	for {
		list, err := c.ClientList(ctx).Result()
		if err != nil {
			t.Fatalf("CLIENT LIST: %v", err)
		}
		blocked := 0
		for _, line := range strings.Split(list, "\n") {
			if strings.Contains(line, "cmd=xreadgroup") && strings.Contains(line, "flags=b") {
				blocked++
			}
		}
		if blocked >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d XREADGROUPs blocked", blocked, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
