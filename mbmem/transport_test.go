package mbmem_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

const bound = 5 * time.Second

func subscribe(t *testing.T, tr *mbmem.Transport, sub mbdriver.Subscription) mbdriver.Receiver {
	t.Helper()
	r, err := tr.Subscribe(context.Background(), sub)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", sub, err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func publish(t *testing.T, tr *mbmem.Transport, topic string, msgs ...*mbdriver.Message) {
	t.Helper()
	if err := tr.Publish(context.Background(), topic, msgs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func receive(t *testing.T, r mbdriver.Receiver, max int) []*mbdriver.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	msgs, err := r.Receive(ctx, max)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return msgs
}

// nothing checks that Receive has nothing for a short while. Only used
// where "nothing" is the expected state, so it cannot flake by slowness.
func nothing(t *testing.T, r mbdriver.Receiver) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	msgs, err := r.Receive(ctx, 10)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive = %v, %v; want nothing", ids(msgs), err)
	}
}

func ack(t *testing.T, r mbdriver.Receiver, msgs ...*mbdriver.Message) {
	t.Helper()
	if err := r.Ack(context.Background(), msgs); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

func ids(msgs []*mbdriver.Message) []string {
	var s []string
	for _, m := range msgs {
		s = append(s, m.ID)
	}
	return s
}

func msg(id, key string) *mbdriver.Message {
	return &mbdriver.Message{ID: id, PartitionKey: key, Body: []byte(id)}
}

func TestNewNegativeAckTimeoutPanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "AckTimeout") {
			t.Errorf("recover() = %v, want a panic naming AckTimeout", r)
		}
	}()
	mbmem.New(&mbmem.Options{AckTimeout: -1})
}

func TestNewInvalidOptionsPanicNamingEach(t *testing.T) {
	defer func() {
		r := recover()
		for _, want := range []string{"AckTimeout", "Retain is -1"} {
			if r == nil || !strings.Contains(fmt.Sprint(r), want) {
				t.Errorf("recover() = %v, want a panic naming %s", r, want)
			}
		}
		if err, _ := r.(error); !errors.Is(err, mb.ErrInvalidArgument) {
			t.Errorf("recover() = %v, want an error wrapping mb.ErrInvalidArgument", r)
		}
	}()
	mbmem.New(&mbmem.Options{AckTimeout: -1, Retain: -1})
}

func TestAckTimeout(t *testing.T) {
	tr := mbmem.New(&mbmem.Options{AckTimeout: 30 * time.Millisecond})
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r := subscribe(t, tr, sub)
	publish(t, tr, "t", msg("1", ""))
	first := receive(t, r, 1)
	// Not acked: redelivered after the timeout, with the next attempt.
	again := receive(t, r, 1)
	if again[0].ID != "1" || first[0].Attempt != 1 || again[0].Attempt != 2 {
		t.Fatalf("got %q attempt %d then attempt %d, want 1 then 2", again[0].ID, first[0].Attempt, again[0].Attempt)
	}
	// A late ack of the first delivery still removes the message.
	ack(t, r, first...)
	if n := tr.Pending(sub); n != 0 {
		t.Errorf("Pending = %d after the late ack, want 0", n)
	}
	// The ack of the second delivery is then a no-op.
	ack(t, r, again...)
}

func TestAckTimeoutWakesOtherReceiver(t *testing.T) {
	tr := mbmem.New(&mbmem.Options{AckTimeout: 30 * time.Millisecond})
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r1, r2 := subscribe(t, tr, sub), subscribe(t, tr, sub)
	publish(t, tr, "t", msg("1", "k"))
	receive(t, r1, 1) // r1 "hangs"
	got := receive(t, r2, 1)
	if got[0].ID != "1" || got[0].Attempt != 2 {
		t.Fatalf("r2 got %q attempt %d, want 1 attempt 2", got[0].ID, got[0].Attempt)
	}
}

func TestNoAckTimeoutByDefault(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g"})
	publish(t, tr, "t", msg("1", ""))
	receive(t, r, 1)
	nothing(t, r)
}

func TestGroupStartsAtCreation(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	publish(t, tr, "t", msg("before", "")) // no group yet: retained only
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g"})
	publish(t, tr, "t", msg("after", ""))
	if got := receive(t, r, 10); len(got) != 1 || got[0].ID != "after" {
		t.Fatalf("got %v, want [after]", ids(got))
	}
	// A group created later starts later.
	r2 := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g2"})
	nothing(t, r2)
}

func TestStartOldestReplaysRetained(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	publish(t, tr, "t", msg("1", ""), msg("2", ""))
	publish(t, tr, "other", msg("x", ""))
	sub := mbdriver.Subscription{Topic: "t", Group: "g", Start: mbdriver.StartOldest}
	r := subscribe(t, tr, sub)
	publish(t, tr, "t", msg("3", ""))
	got := receive(t, r, 10)
	if fmt.Sprint(ids(got)) != "[1 2 3]" {
		t.Fatalf("got %v, want [1 2 3]", ids(got))
	}
	if got[0].Attempt != 1 || got[0].Topic != "t" || string(got[0].Body) != "1" || got[0].PublishedAt.IsZero() {
		t.Errorf("replayed message = %+v, want attempt 1 on t with its body and time", got[0])
	}
	ack(t, r, got...)
	if n := tr.Pending(sub); n != 0 {
		t.Errorf("Pending = %d after acking everything, want 0", n)
	}
	// Acks do not consume the retained messages: another new group gets
	// them too.
	r2 := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g2", Start: mbdriver.StartOldest})
	if got := receive(t, r2, 10); fmt.Sprint(ids(got)) != "[1 2 3]" {
		t.Errorf("second group got %v, want [1 2 3]", ids(got))
	}
}

func TestStartOldestExistingGroupKeepsPosition(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r := subscribe(t, tr, sub)
	publish(t, tr, "t", msg("1", ""), msg("2", ""))
	got := receive(t, r, 1)
	ack(t, r, got...)
	_ = r.Close()
	sub.Start = mbdriver.StartOldest
	r2 := subscribe(t, tr, sub)
	if got := receive(t, r2, 10); fmt.Sprint(ids(got)) != "[2]" {
		t.Fatalf("got %v, want [2]: the group keeps its position", ids(got))
	}
}

func TestRetainKeepsTheLatest(t *testing.T) {
	const retain = 3
	tr := mbmem.New(&mbmem.Options{Retain: retain})
	defer tr.Close()
	for i := range 10 {
		publish(t, tr, "t", msg(fmt.Sprint(i), ""))
	}
	publish(t, tr, "t", msg("a", ""), msg("b", ""))
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g", Start: mbdriver.StartOldest})
	if got := receive(t, r, 10); fmt.Sprint(ids(got)) != "[9 a b]" {
		t.Fatalf("got %v, want the last %d: [9 a b]", ids(got), retain)
	}
	// A group that existed keeps what it did not ack, beyond retention.
	r2 := subscribe(t, tr, mbdriver.Subscription{Topic: "u", Group: "g"})
	for i := range 2 * retain {
		publish(t, tr, "u", msg(fmt.Sprint(i), ""))
	}
	if got := receive(t, r2, 10); len(got) != 2*retain {
		t.Fatalf("existing group got %v, want all %d", ids(got), 2*retain)
	}
}

func TestStartOldestPatternReplaysMatchingTopicsInPublishOrder(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	publish(t, tr, "orders.created", msg("c1", ""))
	publish(t, tr, "orders.paid", msg("p1", ""))
	publish(t, tr, "orders.eu.created", msg("eu1", ""))
	publish(t, tr, "orders.created", msg("c2", ""))
	publish(t, tr, "orders", msg("o1", ""))
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "orders.*", Pattern: true, Group: "g", Start: mbdriver.StartOldest})
	got := receive(t, r, 10)
	if fmt.Sprint(ids(got)) != "[c1 p1 c2]" {
		t.Fatalf("got %v, want [c1 p1 c2]", ids(got))
	}
	for _, m := range got {
		if want := map[string]string{"c1": "orders.created", "p1": "orders.paid", "c2": "orders.created"}[m.ID]; m.Topic != want {
			t.Errorf("message %q has Topic %q, want %q", m.ID, m.Topic, want)
		}
	}
	// The same pattern with StartNew, as another group, starts empty.
	r2 := subscribe(t, tr, mbdriver.Subscription{Topic: "orders.*", Pattern: true, Group: "g2"})
	nothing(t, r2)
}

func TestPerKeyOrderHoldsKeyWhileInFlight(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r1, r2 := subscribe(t, tr, sub), subscribe(t, tr, sub)
	publish(t, tr, "t", msg("a1", "a"), msg("a2", "a"), msg("b1", "b"), msg("n1", ""), msg("n2", ""))

	got := receive(t, r1, 10)
	if want := "[a1 b1 n1 n2]"; fmt.Sprint(ids(got)) != want {
		t.Fatalf("first receive = %v, want %s (one message per key)", ids(got), want)
	}
	nothing(t, r2) // a2 waits for a1
	byID := map[string]*mbdriver.Message{}
	for _, m := range got {
		byID[m.ID] = m
	}

	// Nacked with a delay, a1 still holds a2 back.
	if err := r1.Nack(context.Background(), []*mbdriver.Message{byID["a1"]}, time.Hour); err != nil {
		t.Fatal(err)
	}
	nothing(t, r2)
	if n := tr.Pending(sub); n != 5 {
		t.Errorf("Pending = %d, want 5", n)
	}

	ack(t, r1, byID["b1"], byID["n1"], byID["n2"])
	if n := tr.Pending(sub); n != 2 {
		t.Errorf("Pending = %d, want 2", n)
	}
}

func TestNackDelayThenAck(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g"})
	publish(t, tr, "t", msg("a1", "a"), msg("a2", "a"))
	a1 := receive(t, r, 10)
	if len(a1) != 1 || a1[0].ID != "a1" {
		t.Fatalf("got %v, want [a1]", ids(a1))
	}
	start := time.Now()
	if err := r.Nack(context.Background(), a1, 30*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	again := receive(t, r, 10)
	if time.Since(start) < 30*time.Millisecond {
		t.Errorf("redelivered before the delay")
	}
	if len(again) != 1 || again[0].ID != "a1" || again[0].Attempt != 2 {
		t.Fatalf("got %v attempt %d, want [a1] attempt 2", ids(again), again[0].Attempt)
	}
	// A nack of the stale first delivery does nothing.
	if err := r.Nack(context.Background(), a1, 0); err != nil {
		t.Fatal(err)
	}
	ack(t, r, again...)
	if got := receive(t, r, 10); len(got) != 1 || got[0].ID != "a2" {
		t.Fatalf("got %v, want [a2]", ids(got))
	}
}

func TestReceiverCloseReleasesAndUnblocks(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r1 := subscribe(t, tr, sub)
	publish(t, tr, "t", msg("1", "k"))
	held := receive(t, r1, 1)

	// A Receive blocked on another receiver returns ErrClosed on Close.
	r2 := subscribe(t, tr, sub)
	done := make(chan error, 1)
	go func() {
		_, err := r2.Receive(context.Background(), 1)
		done <- err
	}()
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, mbdriver.ErrClosed) {
			t.Errorf("blocked Receive = %v, want ErrClosed", err)
		}
	case <-time.After(bound):
		t.Fatal("blocked Receive did not return after Close")
	}

	// Closing r1 hands its message to the group at once.
	r3 := subscribe(t, tr, sub)
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, r3, 1); got[0].ID != "1" || got[0].Attempt != 2 {
		t.Fatalf("got %q attempt %d, want 1 attempt 2", got[0].ID, got[0].Attempt)
	}
	if err := r1.Ack(context.Background(), held); !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Ack after Close = %v, want ErrClosed", err)
	}
}

func TestTransportClose(t *testing.T) {
	tr := mbmem.New(nil)
	other := tr.Connect()
	defer other.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	r := subscribe(t, tr, sub)
	ro := subscribe(t, other, sub)
	publish(t, tr, "t", msg("1", ""))
	receive(t, r, 1)

	done := make(chan error, 1)
	go func() {
		_, err := r.Receive(context.Background(), 1)
		done <- err
	}()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, mbdriver.ErrClosed) {
			t.Errorf("blocked Receive = %v, want ErrClosed", err)
		}
	case <-time.After(bound):
		t.Fatal("blocked Receive did not return after the transport's Close")
	}
	if err := tr.Publish(context.Background(), "t", []*mbdriver.Message{msg("2", "")}); !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := tr.Subscribe(context.Background(), sub); !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	// The other connection keeps working and gets the released message.
	if got := receive(t, ro, 1); got[0].ID != "1" {
		t.Fatalf("other connection got %q, want 1", got[0].ID)
	}
	// Connect works on a closed transport: the broker lives on.
	third := tr.Connect()
	defer third.Close()
	publish(t, third, "t", msg("3", ""))
	if got := receive(t, ro, 1); got[0].ID != "3" {
		t.Fatalf("got %q, want 3", got[0].ID)
	}
}

func TestPatterns(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	star := subscribe(t, tr, mbdriver.Subscription{Topic: "orders.*", Pattern: true, Group: "g"})
	rest := subscribe(t, tr, mbdriver.Subscription{Topic: "orders.>", Pattern: true, Group: "g"})
	mid := subscribe(t, tr, mbdriver.Subscription{Topic: "*.eu.*", Pattern: true, Group: "g"})
	exact := subscribe(t, tr, mbdriver.Subscription{Topic: "orders.created", Group: "g"})
	for _, topic := range []string{"orders", "orders.created", "orders.eu.created", "ordersx.created", "x.eu.y"} {
		publish(t, tr, topic, msg(topic, ""))
	}
	for _, tc := range []struct {
		name string
		r    mbdriver.Receiver
		want string
	}{
		{"orders.*", star, "[orders.created]"},
		{"orders.>", rest, "[orders.created orders.eu.created]"},
		{"*.eu.*", mid, "[orders.eu.created x.eu.y]"},
		{"exact", exact, "[orders.created]"},
	} {
		got := receive(t, tc.r, 10)
		if fmt.Sprint(ids(got)) != tc.want {
			t.Errorf("%s: got %v, want %s", tc.name, ids(got), tc.want)
		}
		for _, m := range got {
			if m.Topic != m.ID {
				t.Errorf("%s: message %q has Topic %q", tc.name, m.ID, m.Topic)
			}
		}
	}
	for _, bad := range []string{"orders..x", "orders.>.x", "orders.a*", ".x", "a.>b"} {
		if _, err := tr.Subscribe(context.Background(), mbdriver.Subscription{Topic: bad, Pattern: true, Group: "g"}); err == nil {
			t.Errorf("Subscribe to pattern %q succeeded, want an error", bad)
		}
	}
}

func TestSubscribeValidation(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	_, err := tr.Subscribe(context.Background(), mbdriver.Subscription{})
	if err == nil || !strings.Contains(err.Error(), "Topic") || !strings.Contains(err.Error(), "Group") {
		t.Errorf("Subscribe(empty) = %v, want an error naming Topic and Group", err)
	}
	if err := tr.Publish(context.Background(), "", nil); err == nil {
		t.Error("Publish to an empty topic succeeded")
	}
	if err := tr.Publish(context.Background(), "t", []*mbdriver.Message{nil}); err == nil {
		t.Error("Publish of a nil message succeeded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Publish(ctx, "t", nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context = %v", err)
	}
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g"})
	if _, err := r.Receive(context.Background(), 0); err == nil {
		t.Error("Receive(max=0) succeeded")
	}
	if _, err := tr.Subscribe(context.Background(), mbdriver.Subscription{Topic: "t", Group: "g3", Start: 7}); err == nil || !strings.Contains(err.Error(), "StartPosition(7)") {
		t.Errorf("Subscribe with Start 7 = %v, want an error naming it", err)
	}
	foreign := &mbdriver.Message{ID: "x", AckID: "not mbmem's"}
	if err := r.Ack(context.Background(), []*mbdriver.Message{foreign}); err == nil {
		t.Error("Ack of a foreign message succeeded")
	}
}

func TestPublishCopies(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	r1 := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g1"})
	r2 := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g2"})
	m := &mbdriver.Message{ID: "1", Headers: map[string]string{"h": "v"}, Body: []byte("body")}
	publish(t, tr, "t", m)
	m.Headers["h"], m.Body[0] = "changed", 'X'
	got1 := receive(t, r1, 1)[0]
	got1.Headers["h"], got1.Body[0] = "changed by receiver", 'Y'
	got2 := receive(t, r2, 1)[0]
	if got2.Headers["h"] != "v" || string(got2.Body) != "body" {
		t.Errorf("got %v %q, want the published values", got2.Headers, got2.Body)
	}
}

func TestAs(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	var got *mbmem.Transport
	if !tr.As(&got) || got != tr {
		t.Errorf("As(**Transport) did not set the transport")
	}
	var s *string
	if tr.As(&s) || tr.As(nil) {
		t.Error("As of a foreign type reported true")
	}
}

// Many publishers and receivers at once: everything is received once,
// with -race.
func TestConcurrentStress(t *testing.T) {
	const publishers, perPublisher, receivers = 4, 250, 4
	tr := mbmem.New(nil)
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	var rs []mbdriver.Receiver
	for range receivers {
		rs = append(rs, subscribe(t, tr.Connect(), sub))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var (
		mu   sync.Mutex
		seen = map[string]int{}
		wg   sync.WaitGroup
	)
	for _, r := range rs {
		wg.Go(func() {
			for {
				msgs, err := r.Receive(ctx, 7)
				if err != nil {
					return
				}
				// Nack every third message once, ack the rest.
				var nack, ok []*mbdriver.Message
				for i, m := range msgs {
					if i%3 == 2 && m.Attempt == 1 {
						nack = append(nack, m)
					} else {
						ok = append(ok, m)
					}
				}
				if err := r.Nack(context.Background(), nack, 0); err != nil {
					t.Error(err)
				}
				if err := r.Ack(context.Background(), ok); err != nil {
					t.Error(err)
				}
				mu.Lock()
				for _, m := range ok {
					seen[m.ID]++
				}
				if len(seen) == publishers*perPublisher {
					cancel()
				}
				mu.Unlock()
			}
		})
	}
	for p := range publishers {
		wg.Go(func() {
			for i := range perPublisher {
				key := ""
				if i%2 == 0 {
					key = fmt.Sprint("k", i%5)
				}
				if err := tr.Publish(ctx, "t", []*mbdriver.Message{msg(fmt.Sprint(p, "-", i), key)}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != publishers*perPublisher {
		t.Fatalf("acked %d distinct messages, want %d", len(seen), publishers*perPublisher)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("message %s acked %d times", id, n)
		}
	}
	if n := tr.Pending(sub); n != 0 {
		t.Errorf("Pending = %d, want 0", n)
	}
}

// A group created with StartOldest while messages are being published gets
// each of them once, in publish order: those before its creation from the
// retained messages, those after as a listening group.
func TestStartOldestDuringPublishing(t *testing.T) {
	const n = 500
	tr := mbmem.New(nil)
	defer tr.Close()
	started := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range n {
			if i == n/10 {
				close(started)
			}
			if err := tr.Publish(context.Background(), "t", []*mbdriver.Message{msg(fmt.Sprint(i), "")}); err != nil {
				t.Error(err)
				return
			}
		}
	})
	<-started
	r := subscribe(t, tr, mbdriver.Subscription{Topic: "t", Group: "g", Start: mbdriver.StartOldest})
	var got []string
	for len(got) < n {
		msgs := receive(t, r, 100)
		ack(t, r, msgs...)
		got = append(got, ids(msgs)...)
	}
	wg.Wait()
	for i, id := range got {
		if id != fmt.Sprint(i) {
			t.Fatalf("message %d received is %q, want %q (received %d in all)", i, id, fmt.Sprint(i), len(got))
		}
	}
}
