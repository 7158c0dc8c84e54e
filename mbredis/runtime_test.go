package mbredis_test

// Fault tests of the mb runtime (mb.Publisher, mb.Consumer, mb.Inbox) over
// Redis Streams: a consumer process killed with SIGKILL mid-handling,
// poison messages, and a Redis restart under load.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbredis"
	"github.com/mb-go/mb/mbtest"
	"github.com/redis/go-redis/v9"
)

// rtEvent is the event of the runtime tests.
type rtEvent struct {
	Key  string `json:"key"`
	Fail bool   `json:"fail,omitempty"`
}

func (rtEvent) MessageName() string    { return "mbredis.test.runtime" }
func (e rtEvent) PartitionKey() string { return e.Key }

const rtTopic = "events"

func rtRouter(string) string { return rtTopic }

func rtRegistry() *mb.Registry {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/mbredis-test"})
	mb.RegisterMessage[rtEvent](reg)
	return reg
}

func rtKey(i int) string { return fmt.Sprintf("ev-%03d", i) }

// effects counts the effects of a handler per event key.
type effects struct {
	mu sync.Mutex
	n  map[string]int
}

func (e *effects) add(k string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.n == nil {
		e.n = map[string]int{}
	}
	e.n[k]++
}

func (e *effects) snapshot() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.n))
	for k, v := range e.n {
		m[k] = v
	}
	return m
}

// waitUntil polls cond until it holds or ctx is done (then it fails the
// test with what was awaited).
func waitUntil(t *testing.T, ctx context.Context, what func() string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what())
		case <-tick.C:
		}
	}
}

// helperConsumeBlock (helper mode "consume-block") runs an mb.Consumer
// (one worker) whose handler prints "handled <key>" before returning, and
// blocks forever on the blockAt-th event, as if stuck handling it, until
// it is killed.
func helperConsumeBlock(d *mbredis.Streams, topic, group string, blockAt int) error {
	bus := mb.New()
	var mu sync.Mutex
	handled := 0
	mb.Subscribe(bus, func(ctx context.Context, e rtEvent) error {
		mu.Lock()
		handled++
		n := handled
		fmt.Printf("handled %s\n", e.Key) // unbuffered: written before returning
		mu.Unlock()
		if n >= blockAt {
			select {} // stuck: killed here
		}
		return nil
	}, mb.WithName("effect"))
	c, err := mb.NewConsumer(bus, d, rtRegistry(), &mb.ConsumerOptions{
		Topic: topic, Group: group, Consumer: helperConsumer, Concurrency: 1,
		Start: mbdriver.StartOldest, // the events were published before the group existed
	})
	if err != nil {
		return err
	}
	return fmt.Errorf("Run returned %w", c.Run(context.Background()))
}

// TestRuntimeSigkill: a consumer process handling events with one worker
// is killed with SIGKILL while stuck in the handler of its blockAt-th
// event. A second consumer of the group, with an inbox, takes over: every
// event is handled, by the child (which acked it) or by the survivor; the
// survivor never handles an event the child acked and has at most one
// effect per event; nothing is left pending.
func TestRuntimeSigkill(t *testing.T) {
	const total, blockAt = 50, 10
	const group = "G"
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: testBlock, ClaimMinIdle: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	reg := rtRegistry()
	pub, err := mb.NewPublisher(d, reg, &mb.PublisherOptions{Router: rtRouter})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	var events []any
	for i := range total {
		// The child's single worker takes them in order.
		events = append(events, rtEvent{Key: rtKey(i)})
	}
	if err := pub.Publish(ctx, events...); err != nil {
		t.Fatal(err)
	}

	cmd, out := startHelper(t, "consume-block", p, rtTopic, group, blockAt)
	// The child prints each key before its handler returns; which of them
	// it acked is read back from Redis after the kill.
	var childHandled []string
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	for len(childHandled) < blockAt {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("child exited after handling %v", childHandled)
			}
			k, found := strings.CutPrefix(l, "handled ")
			if !found {
				t.Fatalf("child printed %q", l)
			}
			childHandled = append(childHandled, k)
		case <-ctx.Done():
			t.Fatalf("timed out; child handled %v", childHandled)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("child exited normally, want killed")
	}
	// What the child acked is read back from Redis, not inferred: the
	// consumer acks in batches after its handlers return, so a handled
	// event may still be pending when the child dies.
	entries, err := c.XRange(ctx, p+rtTopic, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	keyOf := map[string]string{}
	for _, x := range entries {
		body, _ := x.Values["body"].(string)
		var ev rtEvent
		if err := json.Unmarshal([]byte(body), &ev); err != nil {
			t.Fatalf("entry %s: %v", x.ID, err)
		}
		keyOf[x.ID] = ev.Key
	}
	childPending, err := c.XPendingExt(ctx, &redis.XPendingExtArgs{
		Stream: p + rtTopic, Group: group, Consumer: "child", Start: "-", End: "+", Count: 10 * total,
	}).Result()
	if err != nil {
		t.Fatal(err)
	}
	stillPending := map[string]bool{}
	for _, pe := range childPending {
		stillPending[keyOf[pe.ID]] = true
	}
	childAcked := map[string]bool{}
	for _, k := range childHandled {
		if !stillPending[k] {
			childAcked[k] = true
		}
	}
	pending, err := c.XPending(ctx, p+rtTopic, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Consumers["child"] == 0 {
		t.Fatalf("after the kill: pending %+v, want entries of the child (at least its stuck one)", pending)
	}
	t.Logf("child handled %d (the last one stuck); %d pending with the child", len(childHandled), pending.Consumers["child"])

	// The survivor.
	bus := mb.New()
	var eff effects
	mb.Subscribe(bus, func(ctx context.Context, e rtEvent) error {
		eff.add(e.Key)
		return nil
	}, mb.WithName("effect"))
	var inbox mbmem.Inbox
	var reported []error
	var repMu sync.Mutex
	cons, err := mb.NewConsumer(bus, d, reg, &mb.ConsumerOptions{
		Topic: rtTopic, Group: group, Consumer: "survivor", Concurrency: 4, Start: mbdriver.StartOldest,
		Inbox:        &inbox,
		Backoff:      mb.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond},
		DrainTimeout: 10 * time.Second,
		ErrorHandler: func(_ context.Context, err error) {
			repMu.Lock()
			reported = append(reported, err)
			repMu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, ctx, cons)
	missing := func() []string {
		got := eff.snapshot()
		var miss []string
		for i := range total {
			if k := rtKey(i); !childAcked[k] && got[k] == 0 {
				miss = append(miss, k)
			}
		}
		return miss
	}
	waitUntil(t, ctx, func() string { return fmt.Sprintf("the survivor to handle %v", missing()) },
		func() bool { return len(missing()) == 0 })
	waitUntil(t, ctx, func() string { return "the group to have nothing pending" }, func() bool {
		pe, err := c.XPending(ctx, p+rtTopic, group).Result()
		return err == nil && pe.Count == 0
	})
	if err := stop(); err != nil {
		t.Errorf("survivor Run: %v", err)
	}
	for k, n := range eff.snapshot() {
		if n != 1 {
			t.Errorf("%s had %d effects in the survivor, want 1", k, n)
		}
		if childAcked[k] {
			t.Errorf("%s was handled and acked by the child, and handled again by the survivor", k)
		}
	}
	stuck := childHandled[len(childHandled)-1]
	if eff.snapshot()[stuck] != 1 {
		t.Errorf("the child's stuck event %s was not handled by the survivor", stuck)
	}
	repMu.Lock()
	defer repMu.Unlock()
	for _, err := range reported {
		t.Errorf("survivor reported: %v", err)
	}
}

// TestRuntimePoison: among good events, one that cannot be decoded and one
// whose handler always fails end in the dead-letter stream (topic+".dlq")
// with mb-error and mb-attempts; the good ones are all handled and nothing
// stays pending.
func TestRuntimePoison(t *testing.T) {
	const group, maxAttempts = "G", 3
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: testBlock, ClaimMinIdle: testClaimMinIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	reg := rtRegistry()
	pub, err := mb.NewPublisher(d, reg, &mb.PublisherOptions{Router: rtRouter})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	// An undecodable message: valid CloudEvents headers of a registered
	// type, but a body that is not JSON, published raw through the driver.
	env, err := reg.Encode(rtEvent{Key: "undecodable"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw := &mbdriver.Message{ID: env.ID, Headers: env.ToHeaders(), Body: []byte("not json")}

	var good []string
	for i := range 10 {
		k := rtKey(i)
		good = append(good, k)
		if err := pub.Publish(ctx, rtEvent{Key: k}); err != nil {
			t.Fatal(err)
		}
		switch i {
		case 3:
			if err := d.Publish(ctx, rtTopic, []*mbdriver.Message{raw}); err != nil {
				t.Fatal(err)
			}
		case 6:
			if err := pub.Publish(ctx, rtEvent{Key: "failing", Fail: true}); err != nil {
				t.Fatal(err)
			}
		}
	}

	bus := mb.New()
	var eff effects
	mb.Subscribe(bus, func(ctx context.Context, e rtEvent) error {
		eff.add(e.Key)
		if e.Fail {
			return errors.New("this handler always fails")
		}
		return nil
	}, mb.WithName("effect"))
	cons, err := mb.NewConsumer(bus, d, reg, &mb.ConsumerOptions{
		Topic: rtTopic, Group: group, Consumer: "c1",
		Start:        mbdriver.StartOldest, // the events were published before
		MaxAttempts:  maxAttempts,
		Backoff:      mb.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond},
		DeadLetter:   d,
		ErrorHandler: func(context.Context, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, ctx, cons)
	dlq := p + rtTopic + ".dlq"
	waitUntil(t, ctx, func() string { return "two dead letters" }, func() bool {
		n, err := c.XLen(ctx, dlq).Result()
		return err == nil && n >= 2
	})
	waitUntil(t, ctx, func() string { return fmt.Sprintf("the good events; handled %v", eff.snapshot()) }, func() bool {
		got := eff.snapshot()
		for _, k := range good {
			if got[k] == 0 {
				return false
			}
		}
		return true
	})
	waitUntil(t, ctx, func() string { return "the group to have nothing pending" }, func() bool {
		pe, err := c.XPending(ctx, p+rtTopic, group).Result()
		return err == nil && pe.Count == 0
	})
	if err := stop(); err != nil {
		t.Errorf("Run: %v", err)
	}

	entries, err := c.XRange(ctx, dlq, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("dead-letter stream has %d entries, want 2: %v", len(entries), entries)
	}
	byID := map[string]map[string]any{}
	for _, e := range entries {
		id, _ := e.Values["id"].(string)
		byID[id] = e.Values
	}
	check := func(what, id, attempts, errPart string) {
		t.Helper()
		v, ok := byID[id]
		if !ok {
			t.Errorf("%s (%s) is not in the dead-letter stream: %v", what, id, entries)
			return
		}
		if got, _ := v["h:"+mb.HeaderAttempts].(string); got != attempts {
			t.Errorf("%s: %s = %q, want %q", what, mb.HeaderAttempts, got, attempts)
		}
		msg, _ := v["h:"+mb.HeaderError].(string)
		if !strings.Contains(msg, errPart) {
			t.Errorf("%s: %s = %q, want it to mention %q", what, mb.HeaderError, msg, errPart)
		}
		if got, _ := v["h:"+mb.HeaderGroup].(string); got != group {
			t.Errorf("%s: %s = %q, want %q", what, mb.HeaderGroup, got, group)
		}
	}
	check("the undecodable event", raw.ID, "1", "cannot decode")
	var failingID string
	entriesMain, err := c.XRange(ctx, p+rtTopic, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entriesMain {
		if b, _ := e.Values["body"].(string); strings.Contains(b, `"failing"`) {
			failingID, _ = e.Values["id"].(string)
		}
	}
	check("the failing event", failingID, strconv.Itoa(maxAttempts), "this handler always fails")
	got := eff.snapshot()
	if got["failing"] != maxAttempts {
		t.Errorf("the failing handler ran %d times, want %d", got["failing"], maxAttempts)
	}
	if got["undecodable"] != 0 {
		t.Errorf("the undecodable event was handled")
	}
}

// TestRuntimeRedisRestart: a Publisher publishes in a loop and a Consumer
// with an inbox handles, while the Redis server (AOF, fsync always) is
// killed and started again. Every event whose Publish returned nil is
// handled, with exactly one effect.
func TestRuntimeRedisRestart(t *testing.T) {
	const group = "G"
	srv := startOwnRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	admin := srv.client(t)
	opts := &mbredis.StreamsOptions{Block: testBlock, ClaimMinIdle: 300 * time.Millisecond}
	pd, err := mbredis.NewStreams(srv.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pd.Close()
	sd, err := mbredis.NewStreams(srv.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sd.Close()
	reg := rtRegistry()
	var retried atomic.Int64 // driver errors the Publisher saw
	pub, err := mb.NewPublisher(pd, reg, &mb.PublisherOptions{
		Router: rtRouter,
		Retry: mb.RetryOptions{
			MaxAttempts: 5, Backoff: mb.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
			IsRetryable: func(err error) bool {
				retried.Add(1)
				return pd.IsRetryable(err)
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	bus := mb.New()
	var eff effects
	mb.Subscribe(bus, func(ctx context.Context, e rtEvent) error {
		eff.add(e.Key)
		return nil
	}, mb.WithName("effect"))
	var inbox mbmem.Inbox
	var repMu sync.Mutex
	reports := 0
	cons, err := mb.NewConsumer(bus, sd, reg, &mb.ConsumerOptions{
		Topic: rtTopic, Group: group, Consumer: "c1", Concurrency: 4,
		// The publisher may start before Run has created the group.
		Start: mbdriver.StartOldest,
		Inbox: &inbox,
		// Back soon after the server: the test waits for the consumer.
		ReconnectBackoff: mb.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		ErrorHandler: func(context.Context, error) {
			repMu.Lock()
			reports++
			repMu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopCons := mbtest.RunConsumer(t, ctx, cons)

	var (
		mu        sync.Mutex
		published []string // Publish returned nil
		failed    int      // Publish gave up
	)
	nPublished := func() int { mu.Lock(); defer mu.Unlock(); return len(published) }
	stopPub := make(chan struct{})
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			case <-ctx.Done():
				return
			default:
			}
			k := rtKey(i)
			err := pub.Publish(ctx, rtEvent{Key: k})
			mu.Lock()
			if err == nil {
				published = append(published, k)
			} else {
				failed++
			}
			mu.Unlock()
			if err != nil {
				// Redis is down: do not spin.
				select {
				case <-time.After(20 * time.Millisecond):
				case <-stopPub:
					return
				}
			}
		}
	}()
	handledAll := func() bool {
		mu.Lock()
		ks := append([]string(nil), published...)
		mu.Unlock()
		got := eff.snapshot()
		for _, k := range ks {
			if got[k] == 0 {
				return false
			}
		}
		return true
	}
	waitUntil(t, ctx, func() string { return "traffic before the restart" },
		func() bool { return len(eff.snapshot()) >= 100 })
	srv.kill()
	// Down until the Publisher has seen it fail.
	waitUntil(t, ctx, func() string { return "a failed publish while Redis is down" },
		func() bool { return retried.Load() >= 2 })
	srv.start()
	before := nPublished()
	waitUntil(t, ctx, func() string { return "publishing after the restart" },
		func() bool { return nPublished() >= before+100 })
	close(stopPub)
	<-pubDone
	waitUntil(t, ctx, func() string { return "every published event to be handled" }, handledAll)
	waitUntil(t, ctx, func() string { return "the group to have nothing pending" }, func() bool {
		pe, err := admin.XPending(ctx, rtTopic, group).Result()
		return err == nil && pe.Count == 0
	})
	if err := stopCons(); err != nil {
		t.Errorf("consumer Run: %v", err)
	}
	got := eff.snapshot()
	mu.Lock()
	defer mu.Unlock()
	for _, k := range published {
		if got[k] != 1 {
			t.Errorf("%s: %d effects, want exactly 1", k, got[k])
		}
	}
	for k, n := range got {
		if n > 1 {
			t.Errorf("%s: %d effects, want at most 1", k, n)
		}
	}
	repMu.Lock()
	defer repMu.Unlock()
	t.Logf("published %d (%d driver errors retried, Publish gave up %d times), handled %d, %d consumer errors reported",
		len(published), retried.Load(), failed, len(got), reports)
}
