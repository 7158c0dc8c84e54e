package mbdrivertest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

func (s *suite) tests() []testCase {
	persistent := func(c mbdriver.Capabilities) bool { return c.Persistent }
	groups := func(c mbdriver.Capabilities) bool { return c.ConsumerGroups }
	replay := func(c mbdriver.Capabilities) bool { return c.Replay }
	extend := func(c mbdriver.Capabilities) bool { return c.Extend }
	return []testCase{
		{"RoundTrip", always, s.testRoundTrip},
		{"Headers", always, s.testHeaders},
		{"Batch", always, s.testBatch},
		{"AckNoRedelivery", need("Persistent or ConsumerGroups", func(c mbdriver.Capabilities) bool {
			return c.Persistent || c.ConsumerGroups
		}), s.testAckNoRedelivery},
		{"NackRedelivery", need("Redelivery", func(c mbdriver.Capabilities) bool { return c.Redelivery }), s.testNackRedelivery},
		{"NackDelay", need("DelayedDelivery (with Redelivery)", func(c mbdriver.Capabilities) bool {
			return c.DelayedDelivery && c.Redelivery
		}), s.testNackDelay},
		{"CompetingConsumers", need("ConsumerGroups", groups), s.testCompetingConsumers},
		{"TwoGroups", need("ConsumerGroups", groups), s.testTwoGroups},
		{"FanOut", func(c mbdriver.Capabilities) string {
			if c.ConsumerGroups {
				return "capability ConsumerGroups declared: FanOut tests drivers without consumer groups"
			}
			return ""
		}, s.testFanOut},
		{"StoppedConsumer", need("Persistent", persistent), s.testStoppedConsumer},
		{"Persistence", need("Persistent", persistent), s.testPersistence},
		{"CloseSemantics", always, s.testCloseSemantics},
		{"ReceiveContextCancel", always, s.testReceiveContextCancel},
		{"PerKeyOrder", need("OrderingPerKey", func(c mbdriver.Capabilities) bool { return c.OrderingPerKey }), s.testPerKeyOrder},
		{"DuplicateID", always, s.testDuplicateID},
		{"Pattern", need("Patterns", func(c mbdriver.Capabilities) bool { return c.Patterns }), s.testPattern},
		{"StartNew", always, s.testStartNew},
		{"StartOldest", need("Replay", replay), s.testStartOldest},
		{"StartOldestExistingGroup", need("Replay (with Persistent)", func(c mbdriver.Capabilities) bool {
			return c.Replay && c.Persistent
		}), s.testStartOldestExistingGroup},
		{"StartOldestPattern", need("Replay and Patterns", func(c mbdriver.Capabilities) bool {
			return c.Replay && c.Patterns
		}), s.testStartOldestPattern},
		{"StartOldestUnsupported", func(c mbdriver.Capabilities) string {
			if c.Replay {
				return "capability Replay declared: StartOldestUnsupported tests drivers without it"
			}
			return ""
		}, s.testStartOldestUnsupported},
		{"StartInvalid", always, s.testStartInvalid},
		{"ExtendHolds", need("Extend (with ConsumerGroups)", func(c mbdriver.Capabilities) bool {
			return c.Extend && c.ConsumerGroups
		}), s.testExtendHolds},
		{"ExtendSettled", need("Extend", extend), s.testExtendSettled},
		{"ExtendAfterClose", need("Extend", extend), s.testExtendAfterClose},
		{"AsAndIsRetryable", always, s.testAsAndIsRetryable},
	}
}

// RoundTrip: publish one message, receive it with its id, headers, body
// and topic.
func (s *suite) testRoundTrip(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	m := newMsg(`{"hello":"world"}`)
	m.Headers["x-custom"] = "value"
	s.publish(t, c, b, m)
	got := s.receiveN(t, r, 1, true)
	checkMsg(t, got[0], m, b)
	if a := got[0].Attempt; a != 0 && a != 1 {
		t.Errorf("first delivery has Attempt %d, want 1 (or 0 if the broker does not count)", a)
	}
}

// Headers: unicode values, every byte value, many headers, empty bodies.
func (s *suite) testHeaders(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})

	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	m1 := newMsg("")
	m1.Body = all
	m1.Headers["x-unicode"] = "héllo wörld ✓ 日本語 🚀 Ελληνικά"
	m1.Headers["x-bytes"] = string(all)
	m1.Headers["x-invalid-utf8"] = "\xff\xfe\xc3("
	m1.Headers["x-empty"] = ""
	m1.Headers["x-long"] = strings.Repeat("0123456789abcdef", 256)
	m1.Headers["x-spaces"] = "  leading and trailing  "

	m2 := newMsg("")
	m2.Body = nil
	for i := range 100 {
		m2.Headers[fmt.Sprintf("x-h-%03d", i)] = strings.Repeat("v", i)
	}

	m3 := newMsg("")
	m3.Headers = nil
	m3.Body = []byte{}

	want := []*mbdriver.Message{m1, m2, m3}
	s.publish(t, c, b, want...)
	got := s.receiveN(t, r, len(want), true)
	checkAllOnce(t, got, want, b)
}

// Batch: 100 messages in one Publish are all received, in order where the
// driver declares OrderingPerKey (they share a key).
func (s *suite) testBatch(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	want := newMsgs(100, "batch")
	for _, m := range want {
		m.PartitionKey = b + "-key"
	}
	s.publish(t, c, b, want...)
	got := s.receiveN(t, r, len(want), true)
	checkAllOnce(t, got, want, b)
	if s.caps.OrderingPerKey {
		for i := range min(len(got), len(want)) {
			if got[i].ID != want[i].ID {
				t.Errorf("message %d received is %q (%s), want %q (%s): publish order not kept for one key", i, got[i].ID, got[i].Body, want[i].ID, want[i].Body)
				break
			}
		}
	}
}

// AckNoRedelivery: acked messages are not received again, by the same
// receiver nor (Persistent) by a new receiver of the group.
func (s *suite) testAckNoRedelivery(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b, Group: b + "-g"}
	r := s.subscribe(t, c, sub)
	msgs := newMsgs(10, "acked")
	s.publish(t, c, b, msgs...)
	got := s.receiveN(t, r, len(msgs), true)
	checkAllOnce(t, got, msgs, b)

	acked := byID(msgs)
	check := func(rest []*mbdriver.Message, marker *mbdriver.Message) {
		t.Helper()
		for _, m := range rest {
			switch {
			case acked[m.ID] != nil:
				t.Errorf("acked message %q (%s) received again (Attempt %d)", m.ID, m.Body, m.Attempt)
			case m.ID != marker.ID:
				t.Errorf("unexpected message %q (%s)", m.ID, m.Body)
			}
		}
	}

	marker := newMsg("marker")
	s.publish(t, c, b, marker)
	check(s.receiveUntil(t, r, true, marker.ID), marker)
	acked[marker.ID] = marker

	if !s.caps.Persistent {
		return
	}
	if err := r.Close(); err != nil {
		t.Fatalf("receiver Close: %v", err)
	}
	c2 := s.open(t)
	r2 := s.subscribe(t, c2, sub)
	marker2 := newMsg("marker 2")
	s.publish(t, c2, b, marker2)
	check(s.receiveUntil(t, r2, true, marker2.ID), marker2)
}

// NackRedelivery: a nacked message is delivered again, with a higher
// Attempt where counted; once acked it is not.
func (s *suite) testNackRedelivery(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	m := newMsg("nack me")
	m.Headers["x-unicode"] = "ünïcödé ✓"
	s.publish(t, c, b, m)
	first := s.receiveN(t, r, 1, false)[0]
	checkMsg(t, first, m, b)

	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	if err := r.Nack(ctx, []*mbdriver.Message{first}, 0); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	second := s.receiveNWithin(t, r, 1, false, s.redelivery)[0]
	checkMsg(t, second, m, b)
	if first.Attempt != 0 && second.Attempt != 0 && second.Attempt <= first.Attempt {
		t.Errorf("redelivery has Attempt %d, first delivery %d: want it higher", second.Attempt, first.Attempt)
	}
	if err := s.ack(r, []*mbdriver.Message{second}); err != nil {
		t.Fatal(err)
	}

	s.onlyMarker(t, c, r, b, "after it was acked")
}

// onlyMarker publishes a marker message to topic and receives from r,
// acking, until the marker comes; it fails the test for every other
// message received meanwhile, which came why (e.g. "after it was acked").
func (s *suite) onlyMarker(t *testing.T, c *conn, r *rcv, topic, why string) {
	t.Helper()
	marker := newMsg("marker")
	s.publish(t, c, topic, marker)
	for _, got := range s.receiveUntil(t, r, true, marker.ID) {
		if got.ID != marker.ID {
			t.Errorf("message %q (%s, Attempt %d) received %s", got.ID, got.Body, got.Attempt, why)
		}
	}
}

// NackDelay: a message nacked with a delay is redelivered, not much before
// the delay.
func (s *suite) testNackDelay(t *testing.T) {
	const delay = 400 * time.Millisecond
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	m := newMsg("nack me later")
	s.publish(t, c, b, m)
	first := s.receiveN(t, r, 1, false)[0]

	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	start := time.Now()
	if err := r.Nack(ctx, []*mbdriver.Message{first}, delay); err != nil {
		t.Fatalf("Nack: %v", err)
	}
	second := s.receiveNWithin(t, r, 1, true, s.redelivery+delay)[0]
	// A lower bound only, with slack for a broker's clock granularity.
	if elapsed := time.Since(start); elapsed < delay/2 {
		t.Errorf("message nacked with delay %v was redelivered after %v", delay, elapsed)
	}
	checkMsg(t, second, m, b)
}

// CompetingConsumers: two receivers of one group (two drivers) share 200
// messages: each gets some, together all, none twice.
func (s *suite) testCompetingConsumers(t *testing.T) {
	const n = 200
	c1, c2 := s.open(t), s.open(t)
	b := s.base(t)
	g := b + "-g"
	rs := []*rcv{
		s.subscribe(t, c1, mbdriver.Subscription{Topic: b, Group: g, Consumer: b + "-c1"}),
		s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: g, Consumer: b + "-c2"}),
	}
	want := newMsgs(n, "competing")
	s.publish(t, c1, b, want...)

	// While the first receiver holds a message unacked, the second gets
	// another one: the group shares its messages.
	h1 := s.receiveN(t, rs[0], 1, false)
	h2 := s.receiveN(t, rs[1], 1, false)
	if h1[0].ID == h2[0].ID {
		t.Errorf("message %q delivered to both receivers of one group while in flight", h1[0].ID)
	}

	var (
		mu     sync.Mutex
		got    = map[string]int{} // id -> receiver index
		counts [2]int
	)
	record := func(i int, msgs []*mbdriver.Message) (done bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range msgs {
			if j, dup := got[m.ID]; dup {
				t.Errorf("message %q received by receiver %d and again by receiver %d (Attempt %d) while both acked", m.ID, j+1, i+1, m.Attempt)
				continue
			}
			got[m.ID] = i
			counts[i]++
		}
		return len(got) >= n
	}
	record(0, h1)
	record(1, h2)
	if err := s.ack(rs[0], h1); err != nil {
		t.Fatal(err)
	}
	if err := s.ack(rs[1], h2); err != nil {
		t.Fatal(err)
	}

	s.receiveConcurrently(t, rs, func(i int, r *rcv, msgs []*mbdriver.Message) bool {
		if err := checkReceived(msgs); err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
		if err := s.ack(r, msgs); err != nil {
			t.Error(err)
		}
		return record(i, msgs)
	})

	mu.Lock()
	defer mu.Unlock()
	if len(got) != n {
		t.Fatalf("the group received %d distinct messages of %d within %v", len(got), n, s.wait)
	}
	for _, m := range want {
		if _, ok := got[m.ID]; !ok {
			t.Errorf("message %q not received", m.ID)
		}
	}
	if counts[0] == 0 || counts[1] == 0 {
		t.Errorf("receivers got %d and %d messages: want both some", counts[0], counts[1])
	}
	t.Logf("receivers got %d and %d messages", counts[0], counts[1])
}

// receiveConcurrently runs a receive loop on each of rs at once, calling
// handle with what each receives (handle acks), until handle reports that
// everything was received or s.wait has passed; a Receive error that is not
// retryable fails the test. handle may be called from several goroutines.
func (s *suite) receiveConcurrently(t *testing.T, rs []*rcv, handle func(i int, r *rcv, msgs []*mbdriver.Message) (done bool)) {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			for ctx.Err() == nil {
				msgs, err := r.Receive(ctx, 10)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					if r.c.IsRetryable(err) {
						pause(ctx)
						continue
					}
					t.Errorf("%s: Receive: %v", r.name, err)
					cancel()
					return
				}
				if handle(i, r, msgs) {
					cancel() // everything received: stop the other receivers too
				}
			}
		})
	}
	wg.Wait()
}

// receiveAll receives n messages from each receiver concurrently, acking,
// and checks that each got want exactly once.
func (s *suite) receiveAll(t *testing.T, rs []*rcv, want []*mbdriver.Message, topic string) {
	t.Helper()
	results := make([][]*mbdriver.Message, len(rs))
	errs := make([]error, len(rs))
	var wg sync.WaitGroup
	for i, r := range rs {
		wg.Go(func() {
			results[i], errs[i] = s.recv(r, s.wait, true, func(got []*mbdriver.Message) int {
				return min(len(want)-len(got), 50)
			})
		})
	}
	wg.Wait()
	for i, r := range rs {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		t.Run(r.name, func(t *testing.T) { checkAllOnce(t, results[i], want, topic) })
	}
}

// TwoGroups: two groups of one topic each get every message.
func (s *suite) testTwoGroups(t *testing.T) {
	c1, c2 := s.open(t), s.open(t)
	b := s.base(t)
	rs := []*rcv{
		s.subscribe(t, c1, mbdriver.Subscription{Topic: b, Group: b + "-g1"}),
		s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: b + "-g2"}),
	}
	rs[0].name, rs[1].name = "group1", "group2"
	want := newMsgs(50, "two groups")
	s.publish(t, c1, b, want...)
	s.receiveAll(t, rs, want, b)
}

// FanOut (drivers without groups): two subscribers, even with the same
// Group, each get every message.
func (s *suite) testFanOut(t *testing.T) {
	c1, c2 := s.open(t), s.open(t)
	b := s.base(t)
	rs := []*rcv{
		s.subscribe(t, c1, mbdriver.Subscription{Topic: b, Group: b + "-g"}),
		s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: b + "-g"}),
	}
	rs[0].name, rs[1].name = "subscriber1", "subscriber2"
	want := newMsgs(20, "fan out")
	s.publish(t, c1, b, want...)
	s.receiveAll(t, rs, want, b)
}

// StoppedConsumer: a message received but not acked is received again by
// a new receiver of the group, after its receiver was closed and after its
// driver was closed.
func (s *suite) testStoppedConsumer(t *testing.T) {
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b, Group: b + "-g"}

	t.Run("ReceiverClosed", func(t *testing.T) {
		c1 := s.open(t)
		r1 := s.subscribe(t, c1, sub)
		m := newMsg("unacked, receiver closed")
		s.publish(t, c1, b, m)
		first := s.receiveN(t, r1, 1, false)[0]
		checkMsg(t, first, m, b)
		if err := r1.Close(); err != nil {
			t.Fatalf("receiver Close: %v", err)
		}
		c2 := s.open(t)
		r2 := s.subscribe(t, c2, sub)
		again := s.receiveNWithin(t, r2, 1, true, s.redelivery)[0]
		checkMsg(t, again, m, b)
		if first.Attempt != 0 && again.Attempt != 0 && again.Attempt <= first.Attempt {
			t.Errorf("redelivery has Attempt %d, first delivery %d: want it higher", again.Attempt, first.Attempt)
		}
		if err := r2.Close(); err != nil {
			t.Fatalf("receiver Close: %v", err)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("DriverClosed", func(t *testing.T) {
		c1 := s.open(t)
		r1 := s.subscribe(t, c1, sub)
		m := newMsg("unacked, driver closed")
		s.publish(t, c1, b, m)
		first := s.receiveN(t, r1, 1, false)[0]
		checkMsg(t, first, m, b)
		if err := c1.Close(); err != nil {
			t.Fatalf("driver Close: %v", err)
		}
		c2 := s.open(t)
		r2 := s.subscribe(t, c2, sub)
		again := s.receiveNWithin(t, r2, 1, true, s.redelivery)[0]
		checkMsg(t, again, m, b)
	})
}

// Persistence: messages published while a group has no receiver are
// received by the next receiver of the group.
func (s *suite) testPersistence(t *testing.T) {
	c1 := s.open(t)
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b, Group: b + "-g"}
	r1 := s.subscribe(t, c1, sub) // creates the group
	if err := r1.Close(); err != nil {
		t.Fatalf("receiver Close: %v", err)
	}
	want := newMsgs(3, "kept")
	s.publish(t, c1, b, want...)
	c2 := s.open(t)
	r2 := s.subscribe(t, c2, sub)
	got := s.receiveN(t, r2, len(want), true)
	checkAllOnce(t, got, want, b)
}

// CloseSemantics: Receive after Close returns ErrClosed, Close twice is
// fine, Publish after the driver's Close returns ErrClosed.
func (s *suite) testCloseSemantics(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	if err := r.Close(); err != nil {
		t.Fatalf("receiver Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second receiver Close: %v, want nil", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	msgs, err := r.Receive(ctx, 1)
	if !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Receive after Close = %d messages, %v; want an error wrapping mbdriver.ErrClosed", len(msgs), err)
	}

	if err := c.Close(); err != nil {
		t.Fatalf("driver Close: %v", err)
	}
	err = c.Publish(ctx, b, []*mbdriver.Message{newMsg("after close")})
	if !errors.Is(err, mbdriver.ErrClosed) {
		t.Errorf("Publish after driver Close = %v, want an error wrapping mbdriver.ErrClosed", err)
	}
}

// ReceiveContextCancel: Receive with a cancelled or expiring context and
// no message returns the context's error promptly; the receiver still
// works afterwards.
func (s *suite) testReceiveContextCancel(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})

	receive := func(ctx context.Context) ([]*mbdriver.Message, error) {
		t.Helper()
		type result struct {
			msgs []*mbdriver.Message
			err  error
		}
		done := make(chan result, 1)
		go func() {
			msgs, err := r.Receive(ctx, 1)
			done <- result{msgs, err}
		}()
		tm := time.NewTimer(s.wait)
		defer tm.Stop()
		select {
		case res := <-done:
			return res.msgs, res.err
		case <-tm.C:
			t.Fatalf("Receive did not return within %v of its context being done", s.wait)
			return nil, nil
		}
	}

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	msgs, err := receive(cctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Receive with a cancelled context = %d messages, %v; want context.Canceled", len(msgs), err)
	}

	dctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	msgs, err = receive(dctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Receive with a context that expires = %d messages, %v; want context.DeadlineExceeded", len(msgs), err)
	}

	m := newMsg("after cancel")
	s.publish(t, c, b, m)
	got := s.receiveN(t, r, 1, true)
	checkMsg(t, got[0], m, b)
}

// PerKeyOrder: 5 keys × 50 messages, each key's published in sequence by
// its own goroutine, all concurrently; received (by two receivers of one
// group where the driver has groups) in per-key publish order.
func (s *suite) testPerKeyOrder(t *testing.T) {
	const keys, perKey = 5, 50
	c1 := s.open(t)
	b := s.base(t)
	g := b + "-g"
	rs := []*rcv{s.subscribe(t, c1, mbdriver.Subscription{Topic: b, Group: g})}
	if s.caps.ConsumerGroups {
		c2 := s.open(t)
		rs = append(rs, s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: g}))
	}
	for i, r := range rs {
		r.name = fmt.Sprintf("receiver%d", i+1)
	}

	var (
		mu     sync.Mutex
		next   = map[string]int{} // key -> next expected seq
		bad    = map[string]bool{}
		total  int
		counts = make([]int, len(rs))
	)
	var pub sync.WaitGroup
	for k := range keys {
		pub.Go(func() {
			key := fmt.Sprintf("%s-k%d", b, k)
			for seq := range perKey {
				m := newMsg(fmt.Sprintf("%s %d", key, seq))
				m.PartitionKey = key
				m.Headers["x-key"] = key
				m.Headers["x-seq"] = strconv.Itoa(seq)
				if err := s.tryPublish(c1, b, m); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	s.receiveConcurrently(t, rs, func(i int, r *rcv, msgs []*mbdriver.Message) bool {
		// Check each message's place before acking, so a driver that
		// holds a key's next message until the ack is checked in
		// handling order.
		mu.Lock()
		for _, m := range msgs {
			key := m.Headers["x-key"]
			seq, err := strconv.Atoi(m.Headers["x-seq"])
			if err != nil || key == "" {
				t.Errorf("%s: message %q without x-key/x-seq headers: %v", r.name, m.ID, m.Headers)
				continue
			}
			if seq != next[key] && !bad[key] {
				bad[key] = true
				t.Errorf("%s: key %q: received seq %d (Attempt %d), want %d: per-key order broken", r.name, key, seq, m.Attempt, next[key])
			}
			next[key] = seq + 1
			total++
			counts[i]++
		}
		done := total >= keys*perKey
		mu.Unlock()
		if err := s.ack(r, msgs); err != nil {
			t.Error(err)
		}
		return done
	})
	pub.Wait()

	mu.Lock()
	defer mu.Unlock()
	if total != keys*perKey {
		t.Errorf("received %d of %d messages within %v", total, keys*perKey, s.wait)
	}
	t.Logf("receivers got %v messages", counts)
}

// DuplicateID: two messages published with the same id are received once
// or twice (driver-dependent), always with that id, so an inbox can drop
// the second.
func (s *suite) testDuplicateID(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	m1 := newMsg("first")
	m2 := newMsg("second")
	m2.ID, m2.Headers["ce-id"] = m1.ID, m1.ID
	s.publish(t, c, b, m1)
	s.publish(t, c, b, m2)
	marker := newMsg("marker")
	s.publish(t, c, b, marker)

	// Receive until both the id and the marker came, or a message with
	// another id (a driver that does not carry ids) does.
	got, err := s.recv(r, s.wait, true, func(got []*mbdriver.Message) int {
		var dup, mark bool
		for _, m := range got {
			switch m.ID {
			case m1.ID:
				dup = true
			case marker.ID:
				mark = true
			default:
				return 0
			}
		}
		if dup && mark {
			return 0
		}
		return 10
	})
	if err != nil {
		t.Fatal(err)
	}
	copies := 0
	for _, m := range got {
		switch m.ID {
		case m1.ID:
			copies++
			if string(m.Body) != "first" && string(m.Body) != "second" {
				t.Errorf("message with the duplicate id has body %s", quoteMax(m.Body))
			}
		case marker.ID:
		default:
			t.Errorf("unexpected message id %q (body %s): ids must be carried unchanged", m.ID, quoteMax(m.Body))
		}
	}
	if copies > 2 {
		t.Errorf("received %d messages with the duplicate id, want 1 or 2", copies)
	}
	t.Logf("received %d of the 2 messages with one id", copies)
}

// Pattern: a pattern subscription receives the messages of the matching
// topics, each with its concrete topic, and not the others.
func (s *suite) testPattern(t *testing.T) { s.checkPattern(t, mbdriver.StartNew) }

// checkPattern subscribes to the pattern "<base>.*" and publishes to
// matching and other topics, then a marker; it checks that the subscription
// receives exactly the matching messages. With StartOldest it publishes
// everything but the marker before it subscribes (before the group
// exists), so the matching messages come from the broker's retention.
func (s *suite) checkPattern(t *testing.T, start mbdriver.StartPosition) {
	c := s.open(t)
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b + ".*", Pattern: true, Group: b + "-g", Start: start}
	var r *rcv
	if start == mbdriver.StartNew {
		r = s.subscribe(t, c, sub)
	}
	ma, mb := newMsg("a"), newMsg("b")
	mx, my := newMsg("other topic"), newMsg("base topic")
	marker := newMsg("marker")
	topics := map[string]string{
		ma.ID:     b + ".a",
		mb.ID:     b + ".b",
		mx.ID:     b + "-x.a",
		my.ID:     b,
		marker.ID: b + ".m",
	}
	for _, m := range []*mbdriver.Message{ma, mb, mx, my} {
		s.publish(t, c, topics[m.ID], m)
	}
	if r == nil {
		r = s.subscribe(t, s.open(t), sub)
	}
	s.publish(t, c, topics[marker.ID], marker)
	got := s.receiveUntil(t, r, true, ma.ID, mb.ID, marker.ID)
	seen := map[string]bool{}
	for _, m := range got {
		switch m.ID {
		case ma.ID, mb.ID, marker.ID:
			if seen[m.ID] {
				t.Errorf("message %q (%s) received twice", m.ID, m.Body)
			}
			seen[m.ID] = true
			if m.Topic != topics[m.ID] {
				t.Errorf("message %q has Topic %q, want %q", m.ID, m.Topic, topics[m.ID])
			}
		case mx.ID, my.ID:
			t.Errorf("message on topic %q received by pattern %q", topics[m.ID], b+".*")
		default:
			t.Errorf("unexpected message %q (%s)", m.ID, m.Body)
		}
	}
	checkMsg(t, byID(got)[ma.ID], ma, topics[ma.ID])
}

// AsAndIsRetryable: As refuses foreign types; IsRetryable reports false
// for nil and ErrClosed.
func (s *suite) testAsAndIsRetryable(t *testing.T) {
	c := s.open(t)
	var foreign *struct{ notADriverClient int }
	if c.As(&foreign) {
		t.Errorf("As(%T) = true, want false", &foreign)
	}
	if c.As(nil) {
		t.Error("As(nil) = true, want false")
	}
	if c.IsRetryable(nil) {
		t.Error("IsRetryable(nil) = true, want false")
	}
	if c.IsRetryable(mbdriver.ErrClosed) {
		t.Error("IsRetryable(mbdriver.ErrClosed) = true, want false")
	}
}

// StartNew: a new group subscribed with the default Start does not get
// the messages published before it was created, and gets those published
// after.
func (s *suite) testStartNew(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	before := newMsgs(3, "before the group")
	s.publish(t, c, b, before...)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	after := newMsgs(2, "after the group")
	s.publish(t, c, b, after...)
	got := s.receiveUntil(t, r, true, idsOf(after)...)
	old := byID(before)
	for _, m := range got {
		if old[m.ID] != nil {
			t.Errorf("message %q (%s), published before the group was created, was delivered to the group created with the default StartNew (Attempt %d)", m.ID, m.Body, m.Attempt)
		}
	}
	checkAllOnce(t, without(got, before), after, b)
}

// StartOldest: a new group subscribed with StartOldest, by another
// driver than the one that published, gets the messages published before
// it existed, and the later ones; in publish order where the driver
// declares OrderingPerKey (they share a key; the suite then receives only
// until the later one). The replay takes nothing away: a second new group
// gets them all too.
func (s *suite) testStartOldest(t *testing.T) {
	c1, c2 := s.open(t), s.open(t)
	b := s.base(t)
	before := newMsgs(5, "before the group")
	for _, m := range before {
		m.PartitionKey = b + "-key"
	}
	s.publish(t, c1, b, before...)
	r := s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: b + "-g1", Start: mbdriver.StartOldest})
	after := newMsg("after the group")
	after.PartitionKey = b + "-key"
	s.publish(t, c1, b, after)
	want := append(before, after)

	until := idsOf(want)
	if s.caps.OrderingPerKey {
		// The key's order brings the earlier messages first.
		until = []string{after.ID}
	}
	check := func(r *rcv) {
		t.Helper()
		got := s.receiveUntil(t, r, true, until...)
		checkAllOnce(t, got, want, b)
		if s.caps.OrderingPerKey && !t.Failed() {
			for i := range want {
				if got[i].ID != want[i].ID {
					t.Errorf("%s: message %d received is %q (%s), want %q (%s): publish order not kept for one key", r.name, i, got[i].ID, got[i].Body, want[i].ID, want[i].Body)
					break
				}
			}
		}
	}
	check(r)
	if t.Failed() {
		return
	}
	r2 := s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: b + "-g2", Start: mbdriver.StartOldest})
	check(r2)
}

// StartOldestExistingGroup: Start only applies to a group that does not
// exist yet. A group subscribed again with StartOldest does not rewind:
// the messages it acked are not delivered again, whether it was created
// with StartOldest or with StartNew (then the messages published before it
// was created are not delivered either).
func (s *suite) testStartOldestExistingGroup(t *testing.T) {
	b := s.base(t)
	c := s.open(t)
	before := newMsgs(3, "before the groups")
	s.publish(t, c, b, before...)

	oldest := mbdriver.Subscription{Topic: b, Group: b + "-g1", Start: mbdriver.StartOldest}
	r1 := s.subscribe(t, c, oldest)
	got := s.receiveUntil(t, r1, true, idsOf(before)...)
	checkAllOnce(t, got, before, b)
	newer := mbdriver.Subscription{Topic: b, Group: b + "-g2"} // StartNew
	r2 := s.subscribe(t, c, newer)
	for _, r := range []*rcv{r1, r2} {
		if err := r.Close(); err != nil {
			t.Fatalf("%s: Close: %v", r.name, err)
		}
	}

	// Subscribe again, as another process, with StartOldest.
	c2 := s.open(t)
	newer.Start = mbdriver.StartOldest
	again := []*rcv{s.subscribe(t, c2, oldest), s.subscribe(t, c2, newer)}
	marker := newMsg("marker")
	s.publish(t, c2, b, marker)
	for i, r := range again {
		for _, m := range s.receiveUntil(t, r, true, marker.ID) {
			switch {
			case m.ID == marker.ID:
			case byID(before)[m.ID] == nil:
				t.Errorf("%s: unexpected message %q (%s)", r.name, m.ID, m.Body)
			case i == 0:
				t.Errorf("group %s: message %q (%s), acked, was delivered again (Attempt %d) after the group was subscribed again with StartOldest: an existing group must keep its position", oldest.Group, m.ID, m.Body, m.Attempt)
			default:
				t.Errorf("group %s: message %q (%s), published before the group was created with StartNew, was delivered (Attempt %d) after the group was subscribed again with StartOldest: an existing group must keep its position", newer.Group, m.ID, m.Body, m.Attempt)
			}
		}
	}
}

// StartOldestPattern: a new pattern group subscribed with StartOldest gets
// the messages published before it existed to every matching topic, each
// with its topic, and not those of other topics.
func (s *suite) testStartOldestPattern(t *testing.T) { s.checkPattern(t, mbdriver.StartOldest) }

// StartOldestUnsupported (drivers without Replay): Subscribe with
// StartOldest fails with an error wrapping errors.ErrUnsupported, instead
// of quietly starting at the new messages; the driver still works
// afterwards.
func (s *suite) testStartOldestUnsupported(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b, Group: b + "-g", Start: mbdriver.StartOldest}
	err := s.refused(t, c, sub, "the driver does not declare Replay; want an error wrapping errors.ErrUnsupported")
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Subscribe with StartOldest = %v; want an error wrapping errors.ErrUnsupported", err)
	}
	t.Logf("Subscribe with StartOldest: %v", err)

	sub.Start = mbdriver.StartNew
	r2 := s.subscribe(t, c, sub)
	m := newMsg("after the refused subscription")
	s.publish(t, c, b, m)
	checkMsg(t, s.receiveN(t, r2, 1, true)[0], m, b)
}

// StartInvalid: Subscribe with a Start that is not one of the constants
// fails.
func (s *suite) testStartInvalid(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	sub := mbdriver.Subscription{Topic: b, Group: b + "-g", Start: mbdriver.StartPosition(99)}
	err := s.refused(t, c, sub, "want an error for the invalid Start")
	t.Logf("Subscribe with an invalid Start: %v", err)
}
