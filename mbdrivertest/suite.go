// Package mbdrivertest is the conformance suite every transport driver
// ([mbdriver.Driver]) runs, the in-memory one included. A driver's test
// calls [Run] with a [Harness]:
//
//	func TestConformance(t *testing.T) {
//		mbdrivertest.Run(t, mbdrivertest.Harness{
//			Open: func(t *testing.T) mbdriver.Driver { return newDriver(t) },
//			Prefix: "mbtest-",
//		})
//	}
//
// The suite reads the driver's [mbdriver.Capabilities] and runs one subtest
// per guarantee. A subtest whose capability is not declared is skipped with
// "capability X not declared" (or "capability X declared" for FanOut and
// StartOldestUnsupported, which test drivers without consumer groups and
// without replay); every other subtest runs. The subtest names are stable:
// RoundTrip, Headers, Batch, AckNoRedelivery, NackRedelivery, NackDelay,
// CompetingConsumers, TwoGroups, FanOut, StoppedConsumer, Persistence,
// CloseSemantics, ReceiveContextCancel, PerKeyOrder, DuplicateID, Pattern,
// StartNew, StartOldest, StartOldestExistingGroup, StartOldestPattern,
// StartOldestUnsupported, StartInvalid, ExtendHolds, ExtendSettled,
// ExtendAfterClose, AsAndIsRetryable, and, running mb's Publisher and
// Consumer over the driver as an application does, ConsumerRoundTrip,
// ConsumerRetry, ConsumerDeadLetter, ConsumerPerKeyOrder and
// ConsumerInbox. Run a single one with -run 'TestX/RoundTrip'.
//
// What the suite assumes of every driver:
//
//   - Subscribe returns once the receiver (and its group) is set up: a
//     message published after Subscribe returned reaches it. The suite
//     subscribes before it publishes, so at-most-once drivers (Redis
//     Pub/Sub) run the same subtests, except where a subtest is about the
//     messages published before a group exists (StartNew and the
//     StartOldest subtests).
//   - A driver that declares Replay retains, at least for the length of a
//     subtest, the last 10 messages of a topic, also those published
//     while no group existed.
//   - Every Subscription carries a Group, also for drivers without
//     consumer groups (which must then ignore it).
//   - Topic and group names are the Harness's Prefix followed by lower-case
//     letters, digits and '-' (e.g. "mbtest-roundtrip-1f2e3d4c"); the
//     Pattern subtest also uses topics "<base>.a" and the pattern
//     "<base>.*", where "*" must match exactly the one segment after the
//     dot. Drivers with Patterns must accept that syntax.
//   - Closing a driver, and closing a receiver twice, are allowed; the
//     suite closes each driver it opens exactly once (at the end of the
//     subtest if the subtest did not).
//   - Receive is called with max >= 1.
//
// The suite never sleeps to wait for something: it receives until what it
// expects arrives, within a bound (Harness.ReceiveWait, 10s by default,
// or RedeliveryWait when larger, and RedeliveryWait for redeliveries). To check that something
// is NOT delivered it publishes a marker message afterwards and receives
// until the marker. Bounds are only bounds on waiting, never timing
// assertions, except that NackDelay checks that a delayed redelivery does
// not come much earlier than asked. ExtendHolds is about time passing: it
// holds a message for three Harness.HoldTimeout while another receiver of
// the group receives.
package mbdrivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// Harness opens drivers for one test run.
type Harness struct {
	// Open returns a new driver connected to the broker. The suite closes
	// it. Called several times per test (e.g. two "processes").
	Open func(t *testing.T) mbdriver.Driver
	// Prefix, if set, is prepended to every topic and group name the suite
	// makes, so runs are isolated.
	Prefix string
	// RedeliveryWait bounds how long the suite waits for a redelivery
	// (nack, stopped consumer) — default 10s. Not a timing assertion: only
	// a bound on waiting.
	RedeliveryWait time.Duration
	// ReceiveWait bounds how long the suite waits for messages that
	// should be there — default 10s, and never less than RedeliveryWait.
	// Raise it for a slow broker; an in-memory one may lower it so that a
	// broken driver fails sooner. Also only a bound on waiting.
	ReceiveWait time.Duration
	// HoldTimeout is, for a driver that declares Extend, how long a
	// received message stays with its receiver unacknowledged before the
	// broker gives it to another consumer of the group: the visibility or
	// claim timeout the drivers Open returns are configured with. The
	// ExtendHolds subtest holds a message for three times HoldTimeout,
	// extending it, so keep it short (a fraction of a second). Zero means
	// three times the receiver's ExtendInterval.
	HoldTimeout time.Duration
}

const (
	defaultRedeliveryWait = 10 * time.Second
	// defaultReceiveWait bounds waiting for messages that should be there.
	defaultReceiveWait = 10 * time.Second
	// retryPause is the pause after a retryable Receive error.
	retryPause = 50 * time.Millisecond
)

// Run runs the conformance suite against the drivers h opens, one subtest
// per guarantee, skipping those whose capability the driver does not
// declare. It opens one driver first to read its Capabilities.
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.Open == nil {
		t.Fatal("mbdrivertest: Harness.Open is nil: set it to a function that opens a driver")
	}
	s := &suite{h: h, redelivery: h.RedeliveryWait}
	if s.redelivery <= 0 {
		s.redelivery = defaultRedeliveryWait
	}
	s.wait = h.ReceiveWait
	if s.wait <= 0 {
		s.wait = defaultReceiveWait
	}
	s.wait = max(s.wait, s.redelivery)

	d := h.Open(t)
	if d == nil {
		t.Fatal("mbdrivertest: Harness.Open returned a nil driver")
	}
	s.caps = d.Capabilities()
	if err := d.Close(); err != nil {
		t.Fatalf("mbdrivertest: Close of the driver opened to read its capabilities: %v", err)
	}
	t.Logf("capabilities: %+v", s.caps)

	for _, tc := range append(s.tests(), s.consumerTests()...) {
		t.Run(tc.name, func(t *testing.T) {
			if reason := tc.skip(s.caps); reason != "" {
				t.Skip(reason)
			}
			tc.run(t)
		})
	}
}

type testCase struct {
	name string
	skip func(mbdriver.Capabilities) string // "" to run
	run  func(*testing.T)
}

func always(mbdriver.Capabilities) string { return "" }

func need(name string, has func(mbdriver.Capabilities) bool) func(mbdriver.Capabilities) string {
	return func(c mbdriver.Capabilities) string {
		if has(c) {
			return ""
		}
		return "capability " + name + " not declared"
	}
}

type suite struct {
	h          Harness
	caps       mbdriver.Capabilities
	redelivery time.Duration // bound for redeliveries
	wait       time.Duration // bound for messages that should be there
}

// conn is a driver the suite opened; Close closes it once.
type conn struct {
	mbdriver.Driver
	once sync.Once
	err  error
}

func (c *conn) Close() error {
	c.once.Do(func() { c.err = c.Driver.Close() })
	return c.err
}

// open opens a driver closed at the end of the test.
func (s *suite) open(t *testing.T) *conn {
	t.Helper()
	d := s.h.Open(t)
	if d == nil {
		t.Fatal("Harness.Open returned a nil driver")
	}
	c := &conn{Driver: d}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("driver Close: %v", err)
		}
	})
	return c
}

// rcv is a receiver with its driver, for IsRetryable.
type rcv struct {
	mbdriver.Receiver
	c    *conn
	name string
}

// subscribe opens a receiver closed at the end of the test.
func (s *suite) subscribe(t *testing.T, c *conn, sub mbdriver.Subscription) *rcv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	r, err := c.Subscribe(ctx, sub)
	if err != nil {
		t.Fatalf("Subscribe(%+v): %v", sub, err)
	}
	if r == nil {
		t.Fatalf("Subscribe(%+v) returned a nil receiver and no error", sub)
	}
	t.Cleanup(func() { _ = r.Close() })
	name := sub.Consumer
	if name == "" {
		name = "receiver of group " + sub.Group
	}
	return &rcv{Receiver: r, c: c, name: name}
}

// refused calls Subscribe with sub, which must fail, and returns its
// error. If it succeeds, it closes the receiver and fails the test, saying
// why it should not have.
func (s *suite) refused(t *testing.T, c *conn, sub mbdriver.Subscription, why string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	r, err := c.Subscribe(ctx, sub)
	if err == nil {
		if r != nil {
			_ = r.Close()
		}
		t.Fatalf("Subscribe(%+v) succeeded: %s", sub, why)
	}
	return err
}

// publish publishes msgs to topic in one call.
func (s *suite) publish(t *testing.T, c *conn, topic string, msgs ...*mbdriver.Message) {
	t.Helper()
	if err := s.tryPublish(c, topic, msgs...); err != nil {
		t.Fatal(err)
	}
}

func (s *suite) tryPublish(c *conn, topic string, msgs ...*mbdriver.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	// The driver must not rely on the caller's messages after Publish, nor
	// change them; publish copies so the suite's expectations stay intact.
	cp := make([]*mbdriver.Message, len(msgs))
	for i, m := range msgs {
		cp[i] = copyMsg(m)
	}
	if err := c.Publish(ctx, topic, cp); err != nil {
		return fmt.Errorf("Publish of %d messages to %q: %w", len(msgs), topic, err)
	}
	return nil
}

func copyMsg(m *mbdriver.Message) *mbdriver.Message {
	cp := *m
	cp.Headers = maps.Clone(m.Headers)
	if m.Body != nil {
		cp.Body = bytes.Clone(m.Body)
	}
	return &cp
}

// ack acks msgs with a context of its own.
func (s *suite) ack(r *rcv, msgs []*mbdriver.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	if err := r.Ack(ctx, msgs); err != nil {
		return fmt.Errorf("%s: Ack of %d messages: %w", r.name, len(msgs), err)
	}
	return nil
}

// recv receives from r until more returns 0 for what was received so far
// (more returns how many messages to ask for next), within bound. It acks
// each batch when ack is set. It retries retryable errors. It does not use
// t, so it may run in any goroutine.
func (s *suite) recv(r *rcv, bound time.Duration, ack bool, more func(got []*mbdriver.Message) int) ([]*mbdriver.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	var got []*mbdriver.Message
	for {
		n := more(got)
		if n <= 0 {
			return got, nil
		}
		msgs, err := r.Receive(ctx, n)
		if err != nil {
			if ctx.Err() != nil {
				return got, fmt.Errorf("%s: received %d messages (%s) within %v, expected more (Receive: %v)", r.name, len(got), describe(got), bound, err)
			}
			if r.c.IsRetryable(err) {
				pause(ctx)
				continue
			}
			return got, fmt.Errorf("%s: Receive: %w", r.name, err)
		}
		if len(msgs) > n {
			return got, fmt.Errorf("%s: Receive(max=%d) returned %d messages", r.name, n, len(msgs))
		}
		if err := checkReceived(msgs); err != nil {
			return got, fmt.Errorf("%s: %w", r.name, err)
		}
		if ack {
			if err := s.ack(r, msgs); err != nil {
				return got, err
			}
		}
		got = append(got, msgs...)
	}
}

func pause(ctx context.Context) {
	tm := time.NewTimer(retryPause)
	defer tm.Stop()
	select {
	case <-ctx.Done():
	case <-tm.C:
	}
}

// checkReceived checks what every received message must satisfy.
func checkReceived(msgs []*mbdriver.Message) error {
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("Receive returned a nil message at index %d", i)
		}
		if m.Topic == "" {
			return fmt.Errorf("received message %q has an empty Topic", m.ID)
		}
		if m.Attempt < 0 {
			return fmt.Errorf("received message %q has Attempt %d, want >= 0", m.ID, m.Attempt)
		}
	}
	return nil
}

// receiveN receives exactly n messages from r within the suite's bound,
// acking them if ack is set, or fails the test.
func (s *suite) receiveN(t *testing.T, r *rcv, n int, ack bool) []*mbdriver.Message {
	t.Helper()
	return s.receiveNWithin(t, r, n, ack, s.wait)
}

func (s *suite) receiveNWithin(t *testing.T, r *rcv, n int, ack bool, bound time.Duration) []*mbdriver.Message {
	t.Helper()
	got, err := s.recv(r, bound, ack, func(got []*mbdriver.Message) int { return min(n-len(got), 50) })
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// receiveUntil receives from r, acking if ack is set, until every id in
// ids was received at least once, within the suite's bound, or fails the
// test. It returns everything received.
func (s *suite) receiveUntil(t *testing.T, r *rcv, ack bool, ids ...string) []*mbdriver.Message {
	t.Helper()
	got, err := s.recv(r, s.wait, ack, func(got []*mbdriver.Message) int {
		for _, id := range ids {
			if !slices.ContainsFunc(got, func(m *mbdriver.Message) bool { return m.ID == id }) {
				return 10
			}
		}
		return 0
	})
	if err != nil {
		t.Fatalf("waiting for %q: %v", ids, err)
	}
	return got
}

// base returns a unique name for the running test: the Prefix, the
// subtest's name in lower case and a random suffix.
func (s *suite) base(t *testing.T) string {
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			return r
		case r >= 'A' && r <= 'Z':
			return r - 'A' + 'a'
		}
		return '-'
	}, name)
	return s.h.Prefix + name + "-" + randHex(4)
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// newMsg returns a message with a new id, CloudEvents-like headers and body.
func newMsg(body string) *mbdriver.Message {
	id := randHex(16)
	return &mbdriver.Message{
		ID: id,
		Headers: map[string]string{
			"ce-id":          id,
			"ce-specversion": "1.0",
			"ce-type":        "mbdrivertest.message",
			"content-type":   "text/plain",
		},
		Body: []byte(body),
	}
}

// newMsgs returns n messages with bodies "<prefix> <i>".
func newMsgs(n int, prefix string) []*mbdriver.Message {
	msgs := make([]*mbdriver.Message, n)
	for i := range msgs {
		msgs[i] = newMsg(fmt.Sprintf("%s %d", prefix, i))
	}
	return msgs
}

// checkMsg reports the differences between a received message and the
// published one, on topic.
func checkMsg(t *testing.T, got, want *mbdriver.Message, topic string) {
	t.Helper()
	if err := diffMsg(got, want, topic); err != nil {
		t.Error(err)
	}
}

func diffMsg(got, want *mbdriver.Message, topic string) error {
	var errs []error
	if got.ID != want.ID {
		errs = append(errs, fmt.Errorf("ID = %q, want %q", got.ID, want.ID))
	}
	if d := diffHeaders(got.Headers, want.Headers); d != "" {
		errs = append(errs, fmt.Errorf("headers differ: %s", d))
	}
	if !bytes.Equal(got.Body, want.Body) {
		errs = append(errs, fmt.Errorf("Body = %s, want %s", quoteMax(got.Body), quoteMax(want.Body)))
	}
	if topic != "" && got.Topic != topic {
		errs = append(errs, fmt.Errorf("Topic = %q, want %q", got.Topic, topic))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("message %q: %w", want.ID, err)
	}
	return nil
}

func quoteMax(b []byte) string {
	if len(b) > 80 {
		return fmt.Sprintf("%q... (%d bytes)", b[:80], len(b))
	}
	return fmt.Sprintf("%q", b)
}

// diffHeaders describes the differences between two header maps (nil and
// empty are equal), or returns "".
func diffHeaders(got, want map[string]string) string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			d = append(d, fmt.Sprintf("%q missing", k))
		case g != want[k]:
			d = append(d, fmt.Sprintf("%q = %s, want %s", k, quoteMax([]byte(g)), quoteMax([]byte(want[k]))))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("unexpected %q = %s", k, quoteMax([]byte(got[k]))))
		}
	}
	if len(d) > 10 {
		d = append(d[:10], fmt.Sprintf("and %d more", len(d)-10))
	}
	return strings.Join(d, "; ")
}

// describe lists the ids of msgs, shortened.
func describe(msgs []*mbdriver.Message) string {
	ids := make([]string, 0, min(len(msgs), 5))
	for i, m := range msgs {
		if i == 5 {
			ids = append(ids, "...")
			break
		}
		ids = append(ids, m.ID)
	}
	return "ids " + strings.Join(ids, ", ")
}

// idsOf returns the ids of msgs.
func idsOf(msgs []*mbdriver.Message) []string {
	ids := make([]string, len(msgs))
	for i, m := range msgs {
		ids[i] = m.ID
	}
	return ids
}

// without returns the messages of msgs whose id is not among those of
// drop.
func without(msgs, drop []*mbdriver.Message) []*mbdriver.Message {
	d := byID(drop)
	var out []*mbdriver.Message
	for _, m := range msgs {
		if d[m.ID] == nil {
			out = append(out, m)
		}
	}
	return out
}

// byID indexes msgs by id.
func byID(msgs []*mbdriver.Message) map[string]*mbdriver.Message {
	m := make(map[string]*mbdriver.Message, len(msgs))
	for _, msg := range msgs {
		m[msg.ID] = msg
	}
	return m
}

// checkAllOnce checks that got holds each of want exactly once, equal to
// it, on topic.
func checkAllOnce(t *testing.T, got, want []*mbdriver.Message, topic string) {
	t.Helper()
	wantByID := byID(want)
	seen := make(map[string]bool, len(got))
	for _, m := range got {
		w, ok := wantByID[m.ID]
		if !ok {
			t.Errorf("unexpected message %q (body %s) on %q", m.ID, quoteMax(m.Body), m.Topic)
			continue
		}
		if seen[m.ID] {
			t.Errorf("message %q received twice", m.ID)
			continue
		}
		seen[m.ID] = true
		checkMsg(t, m, w, topic)
	}
	if len(seen) != len(want) {
		t.Errorf("received %d distinct messages of the %d published", len(seen), len(want))
	}
}
