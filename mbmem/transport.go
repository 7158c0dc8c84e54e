package mbmem

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
)

// DefaultRetain is the default of [Options.Retain].
const DefaultRetain = 10000

// Options configures a [Transport]. A nil *Options means the defaults.
type Options struct {
	// AckTimeout, when positive, is a visibility timeout: a message
	// received and neither acked nor nacked within AckTimeout is made
	// available to its group again (and a later Ack of it still removes
	// it), unless its receiver extends it: the Transport then declares
	// Capabilities.Extend, and its receivers implement
	// [mbdriver.Extender]. Zero, the default, means no timeout: a message
	// stays in flight until it is acked or nacked or its receiver is
	// closed. Negative values are invalid.
	AckTimeout time.Duration

	// Retain is how many of the latest messages of each topic the broker
	// keeps for replay: a group created with [mbdriver.StartOldest] starts
	// at the oldest of them. Zero means [DefaultRetain] (10000); negative
	// values are invalid.
	//
	// Retained messages are kept whether or not every group acked them,
	// for every topic ever published to, also when no group listens to
	// it. They are shared with the groups, not copied, so the memory cost
	// is up to Retain times the size of a message (its body, its headers
	// and about 150 bytes of bookkeeping) per topic, on top of what the
	// groups hold unacked. Lower it for large messages or many topics.
	Retain int
}

// Transport is an in-memory broker connection implementing
// [mbdriver.Driver]. It is safe for concurrent use. See the package
// documentation for its semantics.
//
// Close closes every receiver opened through this Transport; the broker's
// topics, groups and messages stay available to the other Transports
// returned by [Transport.Connect].
type Transport struct {
	b *broker

	// Guarded by b.mu.
	closed    bool
	receivers map[*receiver]struct{}
}

var _ mbdriver.Driver = (*Transport)(nil)

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument] and naming the field and the fix: a negative
// AckTimeout or Retain. [New] panics with this error.
func (o *Options) Validate() error {
	var errs []error
	if o.AckTimeout < 0 {
		errs = append(errs, fmt.Errorf("%w: mbmem: Options.AckTimeout is negative: use 0 for no ack timeout or a positive duration", mb.ErrInvalidArgument))
	}
	if o.Retain < 0 {
		errs = append(errs, fmt.Errorf("%w: mbmem: Options.Retain is %d: use 0 for the default (%d) or a positive number of messages kept per topic", mb.ErrInvalidArgument, o.Retain, DefaultRetain))
	}
	return errors.Join(errs...)
}

// New returns a Transport over a new, empty in-memory broker. opts may be
// nil for the defaults; the Transport keeps a copy. New panics with the
// error of [Options.Validate] if opts is invalid: it is a programming
// error.
func New(opts *Options) *Transport {
	var o Options
	if opts != nil {
		o = *opts
	}
	if err := o.Validate(); err != nil {
		panic(err)
	}
	if o.Retain == 0 {
		o.Retain = DefaultRetain
	}
	b := &broker{
		ackTimeout: o.AckTimeout,
		retain:     o.Retain,
		topics:     make(map[string][]*group),
		groups:     make(map[groupKey]*group),
		logs:       make(map[string][]*storedMsg),
	}
	return b.connect()
}

// Connect returns a new Transport over the same broker as t, like a second
// process connected to the same server: it sees the same topics, groups and
// messages, and has its own lifecycle (closing either Transport does not
// affect the other). It works on a closed t too.
func (t *Transport) Connect() *Transport { return t.b.connect() }

// Capabilities reports Persistent, ConsumerGroups, Redelivery,
// OrderingPerKey, DelayedDelivery, Patterns and Replay, and Extend when
// the broker has an [Options.AckTimeout].
func (t *Transport) Capabilities() mbdriver.Capabilities {
	return mbdriver.Capabilities{
		Persistent:      true,
		ConsumerGroups:  true,
		Redelivery:      true,
		OrderingPerKey:  true,
		DelayedDelivery: true,
		Patterns:        true,
		Replay:          true,
		Extend:          t.b.ackTimeout > 0,
	}
}

// IsRetryable reports false: the in-memory broker has no transient
// failures.
func (t *Transport) IsRetryable(error) bool { return false }

// As sets *i to t if i is a **Transport, and reports whether it did.
func (t *Transport) As(i any) bool {
	p, ok := i.(**Transport)
	if !ok || p == nil {
		return false
	}
	*p = t
	return true
}

// Publish appends msgs, in order, to every group subscribed to topic and to
// the topic's retained messages (see [Options.Retain]). The messages are
// copied: the caller may reuse them. It returns
// [mbdriver.ErrClosed] after Close, ctx's error if ctx is done, and an
// error for an empty topic or a nil message (then nothing is published).
func (t *Transport) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if topic == "" {
		return errors.New("mbmem: publish: empty topic")
	}
	stored := make([]*storedMsg, len(msgs))
	now := time.Now()
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("mbmem: publish to %q: message %d is nil", topic, i)
		}
		stored[i] = &storedMsg{
			id:          m.ID,
			headers:     maps.Clone(m.Headers),
			body:        cloneBytes(m.Body),
			key:         m.PartitionKey,
			topic:       topic,
			publishedAt: now,
		}
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.closed {
		return mbdriver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, s := range stored {
		b.seq++
		s.seq = b.seq
	}
	b.keep(topic, stored)
	b.forGroups(topic, func(g *group) {
		for _, s := range stored {
			g.entries = append(g.entries, &entry{msg: s})
		}
		g.broadcast()
	})
	b.changed()
	return nil
}

// Subscribe opens a receiver for sub, creating its group if it does not
// exist yet. A new group starts at sub.Start: with [mbdriver.StartNew] at
// the messages published from then on; with [mbdriver.StartOldest] at the
// retained messages of its topic (for a pattern, of every matching topic,
// in publish order) followed by the new ones. An existing group ignores
// sub.Start. sub.Topic and sub.Group are required; sub.Consumer is
// ignored. A pattern (sub.Pattern) must be valid: non-empty segments, "*"
// and ">" only as whole segments, ">" only last. With an
// [Options.AckTimeout] the receiver implements [mbdriver.Extender]. It
// returns [mbdriver.ErrClosed] after Close and ctx's error if ctx is done.
func (t *Transport) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	var errs []error
	if sub.Topic == "" {
		errs = append(errs, errors.New("mbmem: subscribe: Subscription.Topic is empty: set the topic (or pattern) to receive from"))
	}
	if sub.Group == "" {
		errs = append(errs, errors.New("mbmem: subscribe: Subscription.Group is empty: set a consumer group name"))
	}
	if sub.Start != mbdriver.StartNew && sub.Start != mbdriver.StartOldest {
		errs = append(errs, fmt.Errorf("mbmem: subscribe: Subscription.Start is %v: use mbdriver.StartNew or mbdriver.StartOldest", sub.Start))
	}
	var pat []string
	if sub.Pattern && sub.Topic != "" {
		var err error
		if pat, err = parsePattern(sub.Topic); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.closed {
		return nil, mbdriver.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k := groupKey{topic: sub.Topic, pattern: sub.Pattern, name: sub.Group}
	g := b.groups[k]
	if g == nil {
		g = &group{pattern: pat, signal: make(chan struct{})}
		if sub.Start == mbdriver.StartOldest {
			for _, s := range b.retained(sub.Topic, pat) {
				g.entries = append(g.entries, &entry{msg: s})
			}
		}
		b.groups[k] = g
		if sub.Pattern {
			b.patterns = append(b.patterns, g)
		} else {
			b.topics[sub.Topic] = append(b.topics[sub.Topic], g)
		}
		b.changed()
	}
	r := &receiver{t: t, g: g, done: make(chan struct{})}
	t.receivers[r] = struct{}{}
	if b.ackTimeout > 0 {
		return extReceiver{r}, nil
	}
	return r, nil
}

// Close closes every receiver opened through t (their Receive returns
// [mbdriver.ErrClosed] and their unacked messages are available to their
// groups again at once); Publish and Subscribe then return ErrClosed. The
// broker's state stays for other Transports. Close is idempotent and
// always returns nil.
func (t *Transport) Close() error {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	for r := range t.receivers {
		r.closeLocked()
	}
	return nil
}

// Pending returns the number of unacked messages (available, waiting for
// a delayed redelivery, or in flight) of the group of sub (Topic, Pattern
// and Group; Consumer is ignored); 0 if the group does not exist. Meant for
// tests, e.g. to check that everything was acked.
func (t *Transport) Pending(sub mbdriver.Subscription) int {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	g := b.groups[groupKey{topic: sub.Topic, pattern: sub.Pattern, name: sub.Group}]
	if g == nil {
		return 0
	}
	return len(g.entries) - g.acked
}

// broker is the shared state of the Transports returned by New and
// Connect. One mutex guards everything.
type broker struct {
	ackTimeout time.Duration
	retain     int // messages kept per topic, > 0

	mu       sync.Mutex
	groups   map[groupKey]*group
	topics   map[string][]*group     // exact-topic groups by topic
	patterns []*group                // pattern groups
	logs     map[string][]*storedMsg // the last retain messages of each topic, oldest first
	seq      uint64                  // the seq of the last published message
	chg      chan struct{}           // closed at the next change; nil until watched (Changed)
}

// changed tells the watchers of Changed. Call with b.mu held.
func (b *broker) changed() {
	if b.chg != nil {
		close(b.chg)
		b.chg = nil
	}
}

// Changed returns a channel that is closed at the next change of the
// broker's messages: a publish, an ack, a nack, a new group. With
// [Transport.Pending] it lets a test wait, without polling, until
// everything published was handled (package mbtest's Harness does).
func (t *Transport) Changed() <-chan struct{} {
	b := t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.chg == nil {
		b.chg = make(chan struct{})
	}
	return b.chg
}

func (b *broker) connect() *Transport {
	return &Transport{b: b, receivers: make(map[*receiver]struct{})}
}

// keep adds msgs to the retained messages of topic, dropping the oldest
// beyond b.retain. b.mu is held.
func (b *broker) keep(topic string, msgs []*storedMsg) {
	log := append(b.logs[topic], msgs...)
	if drop := len(log) - b.retain; drop > 0 {
		clear(log[:drop]) // let the dropped messages be collected
		log = log[drop:]
	}
	b.logs[topic] = log
}

// retained returns the retained messages of topic, or of every topic that
// pat matches when pat is not nil, in publish order. The result must not
// be modified. b.mu is held.
func (b *broker) retained(topic string, pat []string) []*storedMsg {
	if pat == nil {
		return b.logs[topic]
	}
	var out []*storedMsg
	for t, log := range b.logs {
		if matchPattern(pat, strings.Split(t, ".")) {
			out = append(out, log...)
		}
	}
	slices.SortFunc(out, func(x, y *storedMsg) int { return cmp.Compare(x.seq, y.seq) })
	return out
}

// forGroups calls f for every group subscribed to topic. b.mu is held.
func (b *broker) forGroups(topic string, f func(*group)) {
	for _, g := range b.topics[topic] {
		f(g)
	}
	if len(b.patterns) == 0 {
		return
	}
	segs := strings.Split(topic, ".")
	for _, g := range b.patterns {
		if matchPattern(g.pattern, segs) {
			f(g)
		}
	}
}

type groupKey struct {
	topic   string
	pattern bool
	name    string
}

// group is a consumer group: its unacked messages in publish order.
type group struct {
	pattern []string // parsed pattern, nil for an exact topic
	entries []*entry // publish order; acked entries removed lazily
	acked   int      // number of acked entries still in entries
	signal  chan struct{}
	tokens  uint64
}

// broadcast wakes every Receive waiting on g. b.mu is held.
func (g *group) broadcast() {
	close(g.signal)
	g.signal = make(chan struct{})
}

// compact drops acked entries when they are many. b.mu is held.
func (g *group) compact() {
	if g.acked < 64 || g.acked*2 < len(g.entries) {
		return
	}
	kept := make([]*entry, 0, len(g.entries)-g.acked)
	for _, e := range g.entries {
		if !e.acked {
			kept = append(kept, e)
		}
	}
	g.entries, g.acked = kept, 0
}

// take hands out up to max messages to r, and returns the time at which
// something may become available when nothing is (zero if only an outside
// event can change that). b.mu is held.
func (g *group) take(r *receiver, max int, ackTimeout time.Duration) (out []*mbdriver.Message, wake time.Time) {
	now := time.Now()
	earliest := func(t time.Time) {
		if wake.IsZero() || t.Before(wake) {
			wake = t
		}
	}
	var blocked map[string]bool // keys with an earlier unacked message
	block := func(k string) {
		if blocked == nil {
			blocked = make(map[string]bool)
		}
		blocked[k] = true
	}
	released := false
	for _, e := range g.entries {
		if len(out) == max {
			break
		}
		if e.acked {
			continue
		}
		key := e.msg.key
		if e.owner != nil {
			if e.deadline.IsZero() || now.Before(e.deadline) {
				if !e.deadline.IsZero() {
					earliest(e.deadline)
				}
				if key != "" {
					block(key)
				}
				continue
			}
			// Ack timeout: available again.
			e.owner, e.deadline, released = nil, time.Time{}, true
		}
		if key != "" {
			if blocked[key] {
				continue
			}
			block(key)
		}
		if now.Before(e.notBefore) {
			earliest(e.notBefore)
			continue
		}
		g.tokens++
		e.attempt++
		e.owner, e.token, e.notBefore = r, g.tokens, time.Time{}
		if ackTimeout > 0 {
			e.deadline = now.Add(ackTimeout)
		}
		out = append(out, &mbdriver.Message{
			ID:           e.msg.id,
			Headers:      maps.Clone(e.msg.headers),
			Body:         cloneBytes(e.msg.body),
			PartitionKey: key,
			Topic:        e.msg.topic,
			Attempt:      e.attempt,
			PublishedAt:  e.msg.publishedAt,
			AckID:        &ackID{g: g, e: e, token: e.token},
		})
	}
	if released && len(out) == max {
		// Others may take what timed out and r could not.
		g.broadcast()
	}
	return out, wake
}

// entry is one message in one group.
type entry struct {
	msg       *storedMsg
	acked     bool
	attempt   int       // deliveries so far
	owner     *receiver // receiver holding it in flight, nil when not in flight
	token     uint64    // delivery token of the current/last delivery
	deadline  time.Time // ack timeout of the current delivery, zero for none
	notBefore time.Time // not delivered before (nack delay)
}

// storedMsg is an immutable published message, shared by groups and the
// retained messages of its topic.
type storedMsg struct {
	seq         uint64 // publish order across the broker, from 1
	id          string
	headers     map[string]string
	body        []byte
	key         string
	topic       string
	publishedAt time.Time
}

// ackID is Message.AckID.
type ackID struct {
	g     *group
	e     *entry
	token uint64
}

type receiver struct {
	t    *Transport
	g    *group
	done chan struct{} // closed by Close

	closed bool // guarded by t.b.mu
}

// Receive implements [mbdriver.Receiver]. max must be positive.
func (r *receiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	if max <= 0 {
		return nil, fmt.Errorf("mbmem: receive: max is %d, must be positive", max)
	}
	b := r.t.b
	for {
		b.mu.Lock()
		if r.closed {
			b.mu.Unlock()
			return nil, mbdriver.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			b.mu.Unlock()
			return nil, err
		}
		out, wake := r.g.take(r, max, b.ackTimeout)
		r.g.compact()
		signal := r.g.signal
		b.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		var timeout <-chan time.Time
		var timer *time.Timer
		if !wake.IsZero() {
			timer = time.NewTimer(time.Until(wake))
			timeout = timer.C
		}
		select {
		case <-ctx.Done():
		case <-r.done:
		case <-signal:
		case <-timeout:
		}
		if timer != nil {
			timer.Stop()
		}
	}
}

// Ack implements [mbdriver.Receiver]: it removes msgs from their group,
// whether still in flight or already made available again by an ack
// timeout. Acking an already acked message does nothing. It returns
// [mbdriver.ErrClosed] after Close, and an error for a message not
// received from this broker (then nothing is acked).
func (r *receiver) Ack(ctx context.Context, msgs []*mbdriver.Message) error {
	return r.settle(msgs, func(g *group, a *ackID, now time.Time) {
		e := a.e
		if e.acked {
			return
		}
		e.acked, e.owner = true, nil
		g.acked++
	})
}

// Nack implements [mbdriver.Receiver]: msgs still in flight from this
// delivery are made available again after delay (at once when delay <= 0).
// A message already acked, or redelivered since, is left alone.
func (r *receiver) Nack(ctx context.Context, msgs []*mbdriver.Message, delay time.Duration) error {
	return r.settle(msgs, func(g *group, a *ackID, now time.Time) {
		e := a.e
		if e.acked || e.owner == nil || e.token != a.token {
			return
		}
		e.owner, e.deadline = nil, time.Time{}
		if delay > 0 {
			e.notBefore = now.Add(delay)
		}
	})
}

func (r *receiver) settle(msgs []*mbdriver.Message, f func(*group, *ackID, time.Time)) error {
	ids := make([]*ackID, len(msgs))
	for i, m := range msgs {
		var a *ackID
		if m != nil {
			a, _ = m.AckID.(*ackID)
		}
		if a == nil || a.g != r.g {
			return fmt.Errorf("mbmem: message %d was not received from this receiver's group", i)
		}
		ids[i] = a
	}
	b := r.t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	if r.closed {
		return mbdriver.ErrClosed
	}
	now := time.Now()
	for _, a := range ids {
		f(r.g, a, now)
	}
	if len(ids) > 0 {
		r.g.broadcast()
		b.changed()
	}
	return nil
}

// extReceiver is the receiver of a broker with an ack timeout, which it
// can extend.
type extReceiver struct{ *receiver }

var _ mbdriver.Extender = extReceiver{}

// ExtendInterval implements [mbdriver.Extender]: a third of the broker's
// AckTimeout (a millisecond at least).
func (r extReceiver) ExtendInterval() time.Duration {
	return max(r.t.b.ackTimeout/3, time.Millisecond)
}

// Extend implements [mbdriver.Extender]: msgs that this receiver holds
// from their current delivery (not acked, not nacked, not taken by another
// receiver after their ack timeout) get a full AckTimeout again from now;
// their Attempt does not change. Others are skipped. It returns an error
// (extending nothing) for a message not received from this receiver's
// group, and [mbdriver.ErrClosed] after Close.
func (r extReceiver) Extend(ctx context.Context, msgs []*mbdriver.Message) error {
	timeout := r.t.b.ackTimeout
	return r.settle(msgs, func(g *group, a *ackID, now time.Time) {
		if e := a.e; !e.acked && e.owner == r.receiver && e.token == a.token {
			e.deadline = now.Add(timeout)
		}
	})
}

// Close implements [mbdriver.Receiver]: the receiver's unacked messages are
// available to its group again at once, a blocked Receive returns
// [mbdriver.ErrClosed]. It may be called concurrently with Receive, and is
// idempotent.
func (r *receiver) Close() error {
	b := r.t.b
	b.mu.Lock()
	defer b.mu.Unlock()
	r.closeLocked()
	return nil
}

// closeLocked closes r. b.mu is held.
func (r *receiver) closeLocked() {
	if r.closed {
		return
	}
	r.closed = true
	close(r.done)
	delete(r.t.receivers, r)
	for _, e := range r.g.entries {
		if e.owner == r {
			e.owner, e.deadline = nil, time.Time{}
		}
	}
	r.g.broadcast()
}

// parsePattern validates and splits a pattern.
func parsePattern(p string) ([]string, error) {
	segs := strings.Split(p, ".")
	for i, s := range segs {
		switch {
		case s == "":
			return nil, fmt.Errorf("mbmem: subscribe: pattern %q has an empty segment", p)
		case s == ">" && i != len(segs)-1:
			return nil, fmt.Errorf("mbmem: subscribe: pattern %q: \">\" is only allowed as the last segment", p)
		case s != "*" && s != ">" && strings.ContainsAny(s, "*>"):
			return nil, fmt.Errorf("mbmem: subscribe: pattern %q: \"*\" and \">\" must be whole segments", p)
		}
	}
	return segs, nil
}

// matchPattern reports whether the topic segments match the pattern.
func matchPattern(pat, topic []string) bool {
	for i, p := range pat {
		if p == ">" {
			return len(topic) > i
		}
		if i >= len(topic) || (p != "*" && p != topic[i]) {
			return false
		}
	}
	return len(pat) == len(topic)
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}
