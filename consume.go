package mb

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// Defaults of [ConsumerOptions].
const (
	DefaultMaxAttempts  = 5
	DefaultDrainTimeout = 30 * time.Second
	DefaultMinBackoff   = 200 * time.Millisecond
	DefaultMaxBackoff   = 30 * time.Second
	// DefaultMaxReconnectBackoff caps the wait between retries of a
	// failing Receive, so that a consumer is back within seconds of its
	// broker.
	DefaultMaxReconnectBackoff = 5 * time.Second
)

// Headers the [Consumer] adds to a message it moves to the dead-letter
// topic. Times are RFC 3339 with nanoseconds, in UTC.
const (
	HeaderError        = "mb-error"         // the last error, cut to 8 KiB on a character boundary
	HeaderAttempts     = "mb-attempts"      // how many times it was handled
	HeaderFirstFailure = "mb-first-failure" // when it first failed, as far as this process knows
	HeaderLastFailure  = "mb-last-failure"  // when it last failed
	HeaderTopic        = "mb-topic"         // the topic it was received from
	HeaderGroup        = "mb-group"         // the consumer group that gave up on it
)

// Backoff is an exponential backoff with jitter: the wait after the n-th
// failure is Min·2^(n-1), capped at Max, of which a uniformly random point
// in the upper half is taken ("equal jitter").
type Backoff struct {
	Min time.Duration
	Max time.Duration
}

// withDefaults fills zero fields with min and max; Max is at least Min.
func (b Backoff) withDefaults(minD, maxD time.Duration) Backoff {
	if b.Min == 0 {
		b.Min = minD
	}
	if b.Max == 0 {
		b.Max = max(maxD, b.Min)
	}
	b.Max = max(b.Max, b.Min)
	return b
}

// Delay returns the wait after the n-th failure (n >= 1).
func (b Backoff) Delay(n int) time.Duration {
	d := b.Min
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// ConsumerOptions configure a [Consumer]. Fields marked required must be
// set; zero values of the others take the defaults.
type ConsumerOptions struct {
	// Topic is the topic to consume (a pattern when Pattern is set).
	// Topics adds more; at least one topic is required, and each gets its
	// own subscription with the same Group.
	Topic  string
	Topics []string
	// Pattern makes the topics patterns; the driver must declare
	// Capabilities.Patterns.
	Pattern bool
	// Group is the consumer group. Required when the driver declares
	// Capabilities.ConsumerGroups. It is also the group of [InboxKey].
	Group string
	// Consumer names this consumer within its group; drivers that need
	// one generate it when empty.
	Consumer string
	// Start is where the group starts when Run's subscription creates it,
	// that is, when the group does not exist on the broker yet (the first
	// run of a service, or a new group name): [mbdriver.StartNew], the
	// zero value, for the messages published from then on;
	// [mbdriver.StartOldest] for the oldest message the broker retains,
	// so that events published before the service first ran are handled
	// too. A group that exists keeps its position whatever Start says, so
	// a restart never handles acked messages again. StartOldest needs a
	// driver that declares Capabilities.Replay; NewConsumer rejects it
	// otherwise.
	Start mbdriver.StartPosition
	// Codec decodes payloads. Nil means the registry's
	// ([RegistryOptions.Codec]).
	Codec Codec
	// Codecs are more codecs, for topics that carry several payload
	// formats (a migration from JSON to protobuf, producers in other
	// languages): a message is decoded with the first of Codec and Codecs
	// whose ContentType is its datacontenttype (media types compared
	// without parameters and case), and with Codec when it names none or
	// one no codec has (Decode then fails with [ErrDecode] and the message
	// is dead-lettered).
	Codecs []Codec
	// Concurrency is how many messages are handled at once. Zero means
	// runtime.GOMAXPROCS(0). Messages with the same partition key are
	// always handled by the same worker, in the order received; messages
	// without one go to any free worker, so with Concurrency above one
	// they may be handled out of order. Use 1 for strict order.
	Concurrency int
	// BatchSize is the most messages asked of the driver per Receive.
	// Zero means max(Concurrency, 10). Up to about two batches wait
	// locally for a worker (one queued, one being handed over); with slow
	// handlers keep 2 × BatchSize × handling time / Concurrency below the
	// broker's redelivery timeout (ClaimMinIdle for Redis Streams), or
	// waiting messages are redelivered to another consumer meanwhile.
	BatchSize int
	// MaxAttempts is how many times a message is handled before it is
	// dead-lettered. Zero means DefaultMaxAttempts (5).
	MaxAttempts int
	// Backoff is the wait before a failed message is handled again. Zero
	// fields mean DefaultMinBackoff and DefaultMaxBackoff.
	Backoff Backoff
	// ReconnectBackoff is the wait between retries of a Subscribe or a
	// Receive that failed with a retryable error (the broker is not up
	// yet, or went away). Zero fields mean DefaultMinBackoff and
	// DefaultMaxReconnectBackoff: short, so that the consumer resumes soon
	// after the broker is back.
	ReconnectBackoff Backoff
	// FailFast makes Run return the first error of a subscription instead
	// of reporting it and trying again: for programs that would rather
	// fail at start-up than wait for their broker. Errors of a running
	// consumer are retried either way.
	FailFast bool
	// DeadLetter receives the messages that cannot be handled: at once
	// those that cannot be decoded (invalid envelope, unregistered name,
	// corrupt or oversized payload), and those whose handlers still fail
	// after MaxAttempts. They are published unchanged (same id, headers
	// and body) with the mb-* headers added (HeaderError and the others),
	// then acknowledged.
	//
	// Without a DeadLetter publisher such a message is logged at error
	// level and nacked with the maximum backoff, so it comes back and
	// fails again: it is never silently dropped (on a driver without
	// redelivery, that log line is all that is left of it).
	DeadLetter mbdriver.Publisher
	// DeadLetterTopic maps the topic a message came from to its
	// dead-letter topic. Nil means topic + ".dlq".
	DeadLetterTopic func(topic string) string
	// Inbox, if set, is consulted inside each handler's unit of work so
	// that a message delivered again has no second effect; see [Inbox].
	// It keys handlings by handler name, so NewConsumer refuses event
	// handlers of registered messages whose names were generated for
	// function literals (see [WithName]); such a handler subscribed later
	// fails its handlings with an error wrapping [ErrInvalidHandler].
	Inbox Inbox
	// DrainTimeout bounds the graceful drain when Run's context is
	// cancelled. Zero means DefaultDrainTimeout (30s).
	DrainTimeout time.Duration
	// IsRetryable reports whether a Receive error is transient. Nil means
	// the subscriber's IsRetryable method when it has one (every
	// [mbdriver.Driver] does), otherwise [IsRetryable].
	IsRetryable func(error) bool
	// ErrorHandler receives what goes wrong without stopping Run: failed
	// handlings (wrapping each handler's *[HandlerError]), dead-lettered
	// messages, failed acks, retried receive errors. It may be called
	// from several goroutines at once. The default logs with Logger at
	// error level.
	ErrorHandler func(ctx context.Context, err error)
	// Logger is used by the default ErrorHandler and for the loud log of
	// a message that should be dead-lettered but has nowhere to go. Nil
	// means slog.Default().
	Logger *slog.Logger
	// OnReceive, if set, is called for each message that decoded, before
	// its handlers run, with the envelope it arrived in: the hook for
	// tracing. The context it returns is the handlers' context (a tracing
	// integration starts a consumer span from env.TraceParent there); it
	// must derive from ctx. The function it returns, if not nil, is
	// called once when this delivery is settled: with nil when the
	// message was handled and is acknowledged, or with the handlers'
	// error when it failed for good (dead-lettered) or goes back for a
	// retry by the broker or is abandoned by the drain; in-process retries
	// happen between the two calls. Messages that cannot be decoded do not
	// reach it (ErrorHandler hears of them). It is called from several
	// workers at once; env is the hook's to keep. A panic in it is
	// reported to ErrorHandler and the message handled as if it were nil.
	OnReceive func(ctx context.Context, env *Envelope) (context.Context, func(err error))
}

// Consumer receives messages from a transport and dispatches them to the
// event handlers of a [Bus]: the portable half of cross-process delivery.
//
// Each message is decoded with the [Registry] into its registered Go type
// and dispatched like an event published in process: each handler in its
// own unit of work, through the bus middleware. Its identity is kept:
// [MetadataFrom] in a handler returns the envelope's id, source,
// correlation and causation ids and other extensions, and events the
// handler emits or publishes get the envelope's id as causation id. A message is acknowledged once all its
// handlers succeeded (or were skipped by the Inbox), retried with backoff
// when some failed, and dead-lettered after MaxAttempts.
//
// Retries use the broker when the driver declares Redelivery (Nack with
// the backoff delay; the attempt is the broker's count, msg.Attempt, or
// counted in memory per message, by source and id, when the broker does
// not count), and happen in process otherwise. Without an Inbox, a retry runs every
// handler of the message again, including those that succeeded before.
//
// Create one with [NewConsumer] and call Run once. Its methods are safe
// for concurrent use.
type Consumer struct {
	bus       *Bus
	sub       mbdriver.Subscriber
	reg       *Registry
	o         ConsumerOptions
	topics    []string
	caps      mbdriver.Capabilities
	retryable func(error) bool
	onError   func(ctx context.Context, err error)
	started   atomic.Bool

	mu       sync.Mutex
	failures map[string]*failState // by message source and id
}

type failState struct {
	count       int
	first, last time.Time
}

// maxTracked bounds the per-message failure records kept in memory.
const maxTracked = 10000

// NewConsumer returns a Consumer that receives through sub, decodes with
// reg and dispatches to bus. It returns all problems with its arguments
// joined with errors.Join, each naming the field and the fix: nil
// arguments, no topic, an empty or repeated topic, a missing Group for a
// driver with consumer groups, a pattern for a driver without patterns,
// and negative sizes, attempts or durations. When sub has a
// Capabilities() method (every [mbdriver.Driver] does), the consumer relies
// on what it declares; otherwise it assumes none (no redelivery: retries
// happen in process).
func NewConsumer(bus *Bus, sub mbdriver.Subscriber, reg *Registry, opts *ConsumerOptions) (*Consumer, error) {
	var o ConsumerOptions
	if opts != nil {
		o = *opts
		o.Topics = append([]string(nil), opts.Topics...)
		o.Codecs = append([]Codec(nil), opts.Codecs...)
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("mb: "+format, args...))
	}
	if bus == nil {
		bad("NewConsumer: the bus is nil; create one with New")
	}
	if sub == nil {
		bad("NewConsumer: the subscriber is nil; pass an mbdriver.Subscriber")
	}
	if reg == nil {
		bad("NewConsumer: the registry is nil; create one with NewRegistry and register the consumed messages")
	}
	var caps mbdriver.Capabilities
	if cp, ok := sub.(interface{ Capabilities() mbdriver.Capabilities }); ok {
		caps = cp.Capabilities()
	}
	var topics []string
	if o.Topic != "" {
		topics = append(topics, o.Topic)
	}
	for i, t := range o.Topics {
		if t == "" {
			bad("ConsumerOptions.Topics[%d] is empty; remove it", i)
			continue
		}
		topics = append(topics, t)
	}
	if len(topics) == 0 {
		bad("ConsumerOptions.Topic is empty; set Topic (or Topics) to the topic to consume")
	}
	seen := map[string]bool{}
	for _, t := range topics {
		if seen[t] {
			bad("ConsumerOptions.Topics: topic %q is given twice; list each topic once", t)
		}
		seen[t] = true
	}
	if o.Group == "" && caps.ConsumerGroups {
		bad("ConsumerOptions.Group is empty; this driver has consumer groups: name the group of this service, e.g. \"billing\"")
	}
	if o.Start == mbdriver.StartOldest && sub != nil && !caps.Replay {
		bad("ConsumerOptions.Start is StartOldest, but the driver does not declare Capabilities.Replay; use StartNew, or a driver that keeps messages for new groups")
	} else if o.Start != mbdriver.StartNew && o.Start != mbdriver.StartOldest {
		bad("ConsumerOptions.Start is %v; use mbdriver.StartNew or mbdriver.StartOldest", o.Start)
	}
	if o.Pattern && sub != nil && !caps.Patterns {
		bad("ConsumerOptions.Pattern is set, but the driver does not declare Capabilities.Patterns; subscribe to each topic instead")
	}
	if o.Concurrency < 0 {
		bad("ConsumerOptions.Concurrency is %d; use 0 for the default (GOMAXPROCS) or a positive count", o.Concurrency)
	}
	if o.BatchSize < 0 {
		bad("ConsumerOptions.BatchSize is %d; use 0 for the default or a positive size", o.BatchSize)
	}
	if o.MaxAttempts < 0 {
		bad("ConsumerOptions.MaxAttempts is %d; use 0 for the default (%d) or a positive count", o.MaxAttempts, DefaultMaxAttempts)
	}
	if o.Backoff.Min < 0 || o.Backoff.Max < 0 {
		bad("ConsumerOptions.Backoff is {Min: %v, Max: %v}; durations must not be negative", o.Backoff.Min, o.Backoff.Max)
	}
	if o.ReconnectBackoff.Min < 0 || o.ReconnectBackoff.Max < 0 {
		bad("ConsumerOptions.ReconnectBackoff is {Min: %v, Max: %v}; durations must not be negative", o.ReconnectBackoff.Min, o.ReconnectBackoff.Max)
	}
	if o.DrainTimeout < 0 {
		bad("ConsumerOptions.DrainTimeout is %v; use 0 for the default (%v) or a positive duration", o.DrainTimeout, DefaultDrainTimeout)
	}
	for i, cd := range o.Codecs {
		if cd == nil {
			bad("ConsumerOptions.Codecs[%d] is nil; remove it", i)
		}
	}
	if o.Inbox != nil && bus != nil && reg != nil {
		for _, h := range bus.subscribersOf(reg.types()) {
			if err := h.stableName(); err != nil {
				bad("ConsumerOptions.Inbox: %w", err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.Codec == nil {
		o.Codec = reg.opts.Codec
	}
	if o.Concurrency == 0 {
		o.Concurrency = runtime.GOMAXPROCS(0)
	}
	if o.BatchSize == 0 {
		o.BatchSize = max(o.Concurrency, 10)
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	o.Backoff = o.Backoff.withDefaults(DefaultMinBackoff, DefaultMaxBackoff)
	o.ReconnectBackoff = o.ReconnectBackoff.withDefaults(DefaultMinBackoff, DefaultMaxReconnectBackoff)
	if o.DeadLetterTopic == nil {
		o.DeadLetterTopic = func(topic string) string { return topic + ".dlq" }
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	c := &Consumer{
		bus: bus, sub: sub, reg: reg, o: o, topics: topics, caps: caps,
		retryable: o.IsRetryable, onError: o.ErrorHandler,
		failures: map[string]*failState{},
	}
	if c.retryable == nil {
		if r, ok := sub.(interface{ IsRetryable(error) bool }); ok {
			c.retryable = r.IsRetryable
		} else {
			c.retryable = IsRetryable
		}
	}
	if c.onError == nil {
		logger := o.Logger
		c.onError = func(ctx context.Context, err error) {
			logger.ErrorContext(ctx, "mb: consumer error", "error", err)
		}
	}
	return c, nil
}

func (c *Consumer) report(ctx context.Context, err error) {
	defer func() { _ = recover() }()
	c.onError(ctx, err)
}

// delivery is one received message on its way through the consumer.
type delivery struct {
	msg   *mbdriver.Message
	rcv   mbdriver.Receiver
	topic string         // the subscription's topic, for messages without Topic
	acks  chan *delivery // the receiver's acker
}

func (d *delivery) sourceTopic() string {
	if d.msg.Topic != "" {
		return d.msg.Topic
	}
	return d.topic
}

// partitionKey returns the message's partition key: the driver's, or the
// envelope's "ce-partitionkey" header.
func partitionKey(m *mbdriver.Message) string {
	if m.PartitionKey != "" {
		return m.PartitionKey
	}
	const header = headerPrefix + attrPartitionKey
	if k, ok := m.Headers[header]; ok {
		return k
	}
	for k, v := range m.Headers {
		if len(k) == len(header) && strings.EqualFold(k, header) {
			return v
		}
	}
	return ""
}

// Run subscribes to the topics and handles messages until ctx is done or
// receiving fails for good. It may be called once per Consumer.
//
// Run first subscribes to every topic. Subscribe and Receive errors the
// driver reports as retryable (a broker not up yet, or gone) are reported
// to ErrorHandler and retried with ReconnectBackoff, at start-up as later
// (unless FailFast is set: then a failed subscription ends Run); any other
// error stops Run, which drains and returns it. When ctx is done, Run
// drains gracefully: it stops receiving, lets the messages already received
// finish (retries included) within DrainTimeout, acknowledges those that
// succeeded, closes the receivers and returns nil. The workers' queues
// hold about one batch beyond the messages being handled (the receiver
// fetches the next batch while the workers are busy); queued messages are
// handled in the drain, and those of a received batch that found no room
// in the queues are nacked at once. If the drain times out,
// the handlers' context is cancelled, the unfinished messages are nacked
// (returned for redelivery on drivers that redeliver) and Run returns an
// error saying how many were abandoned. Handlers must honour their context
// for the drain to end: Run waits for them.
//
// Handlers run with a context that carries ctx's values but is not
// cancelled with it, only when the drain times out.
func (c *Consumer) Run(ctx context.Context) error {
	if c == nil {
		return fmt.Errorf("%w: Run on a nil *Consumer; create one with NewConsumer", ErrInvalidArgument)
	}
	if ctx == nil {
		return fmt.Errorf("%w: Run with a nil context", ErrInvalidArgument)
	}
	if !c.started.CompareAndSwap(false, true) {
		return errors.New("mb: Consumer.Run called twice; create a Consumer per Run")
	}
	var rcvs []mbdriver.Receiver
	closeAll := func() error {
		var errs []error
		for _, r := range rcvs {
			if err := r.Close(); err != nil {
				errs = append(errs, fmt.Errorf("mb: consumer: close receiver: %w", err))
			}
		}
		return errors.Join(errs...)
	}
	for _, t := range c.topics {
		r, err := c.subscribe(ctx, t)
		if err != nil || r == nil {
			return errors.Join(err, closeAll())
		}
		rcvs = append(rcvs, r)
	}

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	// The channels hold up to one batch beyond the messages being
	// handled, so that the receiver can fetch the next batch while the
	// workers are busy and hands a batch over without waiting for a worker
	// per message.
	n := c.o.Concurrency
	keyed := make([]chan *delivery, n)
	free := make(chan *delivery, c.o.BatchSize)
	var abandoned atomic.Int64
	var workers sync.WaitGroup
	for i := range keyed {
		keyed[i] = make(chan *delivery, max(1, c.o.BatchSize/n))
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.work(workCtx, keyed[i], free, &abandoned)
		}()
	}

	recvCtx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	// One acker per receiver batches the acks of handled messages.
	ackChans := make([]chan *delivery, len(rcvs))
	var ackers sync.WaitGroup
	for i, r := range rcvs {
		ackChans[i] = make(chan *delivery, 2*c.o.BatchSize)
		ackers.Add(1)
		go func() {
			defer ackers.Done()
			c.runAcker(ctx, r, ackChans[i])
		}()
	}
	var fatalMu sync.Mutex
	var fatal []error
	var receivers sync.WaitGroup
	for i, r := range rcvs {
		receivers.Add(1)
		go func() {
			defer receivers.Done()
			if err := c.receive(recvCtx, r, c.topics[i], keyed, free, ackChans[i]); err != nil {
				fatalMu.Lock()
				fatal = append(fatal, err)
				fatalMu.Unlock()
				stopRecv()
			}
		}()
	}
	receivers.Wait()
	for _, ch := range keyed {
		close(ch)
	}
	close(free)

	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	timer := time.NewTimer(c.o.DrainTimeout)
	timedOut := false
	select {
	case <-done:
	case <-timer.C:
		timedOut = true
		cancelWork()
		<-done
	}
	timer.Stop()
	for _, ch := range ackChans {
		close(ch)
	}
	ackers.Wait()
	errs := append(fatal, closeAll())
	if k := abandoned.Load(); k > 0 || timedOut {
		errs = append(errs, fmt.Errorf("mb: consumer: drain timed out after %v: %d message(s) abandoned unfinished and nacked for redelivery", c.o.DrainTimeout, k))
	}
	return errors.Join(errs...)
}

// subscribe opens the receiver of topic. Retryable errors (the broker is
// not reachable yet) are reported and retried with ReconnectBackoff unless
// FailFast is set; it returns a nil receiver and a nil error when ctx is
// done first.
func (c *Consumer) subscribe(ctx context.Context, topic string) (mbdriver.Receiver, error) {
	sub := mbdriver.Subscription{Topic: topic, Pattern: c.o.Pattern, Group: c.o.Group, Consumer: c.o.Consumer, Start: c.o.Start}
	for failures := 1; ; failures++ {
		r, err := c.sub.Subscribe(ctx, sub)
		switch {
		case err == nil:
			return r, nil
		case ctx.Err() != nil && errors.Is(err, ctx.Err()):
			return nil, nil // stopped while subscribing
		}
		err = fmt.Errorf("mb: consumer: subscribe to %q (group %q): %w", topic, c.o.Group, err)
		if c.o.FailFast || errors.Is(err, mbdriver.ErrClosed) || !c.retryable(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, nil
		}
		c.report(ctx, fmt.Errorf("%w (will retry)", err))
		if sleepCtx(ctx, c.o.ReconnectBackoff.Delay(failures)) != nil {
			return nil, nil
		}
	}
}

// receive runs the receive loop of one receiver until ctx is done (nil) or
// a non-retryable error (returned).
func (c *Consumer) receive(ctx context.Context, r mbdriver.Receiver, topic string, keyed []chan *delivery, free chan *delivery, acks chan *delivery) error {
	failures := 0
	for {
		msgs, err := r.Receive(ctx, c.o.BatchSize)
		if ctx.Err() != nil {
			// Stopping: give back anything received at the last moment.
			c.nack(ctx, r, msgs, 0)
			return nil
		}
		if err != nil {
			if errors.Is(err, mbdriver.ErrClosed) || !c.retryable(err) {
				return fmt.Errorf("mb: consumer: receive from %q: %w", topic, err)
			}
			failures++
			c.report(ctx, fmt.Errorf("mb: consumer: receive from %q failed (will retry): %w", topic, err))
			if sleepCtx(ctx, c.o.ReconnectBackoff.Delay(failures)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		ds := make([]delivery, len(msgs)) // one allocation per batch
		for i, m := range msgs {
			if m == nil {
				continue
			}
			d := &ds[i]
			*d = delivery{msg: m, rcv: r, topic: topic, acks: acks}
			ch := free
			if k := partitionKey(m); k != "" {
				h := fnv.New32a()
				h.Write([]byte(k))
				ch = keyed[h.Sum32()%uint32(len(keyed))]
			}
			select {
			case ch <- d:
			case <-ctx.Done():
				c.nack(ctx, r, msgs[i:], 0)
				return nil
			}
		}
	}
}

// work is one worker: it handles the messages of its own channel (one
// partition of the keys) and of the shared one until both are closed.
func (c *Consumer) work(ctx context.Context, own, free chan *delivery, abandoned *atomic.Int64) {
	for own != nil || free != nil {
		var d *delivery
		var ok bool
		select {
		case d, ok = <-own:
			if !ok {
				own = nil
				continue
			}
		case d, ok = <-free:
			if !ok {
				free = nil
				continue
			}
		}
		if ctx.Err() != nil {
			// The drain timed out: return the rest unhandled.
			abandoned.Add(1)
			c.nack(ctx, d.rcv, []*mbdriver.Message{d.msg}, 0)
			continue
		}
		if !c.handle(ctx, d) {
			abandoned.Add(1)
		}
	}
}

// handle decodes and dispatches one message and settles it: ack, nack for
// a retry, or dead-letter. It reports false if it was abandoned because
// ctx was cancelled.
func (c *Consumer) handle(ctx context.Context, d *delivery) bool {
	m := d.msg
	var env Envelope
	err := env.fromHeaders(m.Headers, m.Body)
	var v any
	if err == nil {
		v, err = c.reg.Decode(&env, c.codecFor(env.DataContentType))
	}
	if err != nil {
		now := time.Now().UTC()
		err = fmt.Errorf("mb: consumer: cannot decode message %q from %q: %w", m.ID, d.sourceTopic(), err)
		c.deadLetter(ctx, d, err, 1, now, now)
		return true
	}
	in := incoming{id: env.ID, correlation: env.CorrelationID, causation: env.CausationID, source: env.Source, extensions: env.Extensions}
	var guard guardFunc
	if c.o.Inbox != nil {
		group, inbox, id, src := c.o.Group, c.o.Inbox, env.ID, env.Source
		guard = func(ctx context.Context, h *entry) (bool, error) {
			if err := h.stableName(); err != nil {
				return false, fmt.Errorf("mb: consumer: ConsumerOptions.Inbox: %w", err)
			}
			return inbox.Claim(ctx, InboxKey{Group: group, Handler: h.handler, Source: src, MessageID: id})
		}
	}
	hctx, done := ctx, func(error) {}
	if c.o.OnReceive != nil {
		e := new(Envelope) // the hook may keep its own copy only
		*e = env
		hctx, done = c.receiveHook(ctx, e)
	}
	redeliver := c.caps.Redelivery && !c.caps.AtMostOnce
	fkey := env.Source + "\x00" + env.ID // ids are unique per source
	for k := 1; ; k++ {
		errs := c.bus.dispatchIncoming(hctx, v, in, guard)
		if len(errs) == 0 {
			c.forget(fkey)
			c.ack(ctx, d)
			done(nil)
			return true
		}
		herr := errors.Join(errs...)
		if allInFlight(errs) {
			// A redelivery overtook a handling still in progress: it may
			// yet fail, so this copy is neither acked nor a failure. Try
			// again shortly; by then the other has committed (this copy
			// is skipped) or given up (this copy runs).
			if again, result := c.later(ctx, d, c.o.Backoff.Min, redeliver); !again {
				done(herr)
				return result
			}
			continue
		}
		st := c.fail(fkey)
		attempt := st.count
		if m.Attempt > 0 {
			attempt = m.Attempt + k - 1
		}
		if attempt >= c.o.MaxAttempts {
			c.forget(fkey)
			c.deadLetter(ctx, d, fmt.Errorf("mb: consumer: %s %q from %q failed %d times: %w", env.Type, env.ID, d.sourceTopic(), attempt, herr), attempt, st.first, st.last)
			done(herr)
			return true
		}
		c.report(ctx, fmt.Errorf("mb: consumer: %s %q from %q failed (attempt %d of %d, will retry): %w", env.Type, env.ID, d.sourceTopic(), attempt, c.o.MaxAttempts, herr))
		if again, result := c.later(ctx, d, c.o.Backoff.Delay(attempt), redeliver); !again {
			done(herr)
			return result
		}
	}
}

// later sets d's message up for another try after delay: through the
// broker (a nack with the delay) when it redelivers, otherwise by waiting
// here. It reports whether handle should try again itself, and if not,
// handle's result: false when ctx was cancelled (the message is nacked
// for redelivery at once and counts as abandoned).
func (c *Consumer) later(ctx context.Context, d *delivery, delay time.Duration, redeliver bool) (again, result bool) {
	msgs := []*mbdriver.Message{d.msg}
	switch {
	case ctx.Err() != nil:
		c.nack(ctx, d.rcv, msgs, 0)
		return false, false
	case redeliver:
		c.nack(ctx, d.rcv, msgs, delay)
		return false, true
	}
	if sleepCtx(ctx, delay) != nil {
		c.nack(ctx, d.rcv, msgs, 0)
		return false, false
	}
	return true, false
}

// allInFlight reports whether every error of a handling says that the
// Inbox found the same handling in progress elsewhere.
func allInFlight(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrInFlight) {
			return false
		}
	}
	return len(errs) > 0
}

// receiveHook calls OnReceive for env. A panic in the hook, or a nil
// context from it, is reported and the message is handled with ctx; the
// returned done is never nil and reports a panic of the hook's own.
func (c *Consumer) receiveHook(ctx context.Context, env *Envelope) (hctx context.Context, done func(error)) {
	nop := func(error) {}
	defer func() {
		if r := recover(); r != nil {
			c.report(ctx, fmt.Errorf("mb: consumer: ConsumerOptions.OnReceive panicked for %q: %w", env.ID, newPanicError(r)))
			hctx, done = ctx, nop
		}
	}()
	hctx, finish := c.o.OnReceive(ctx, env)
	if hctx == nil {
		c.report(ctx, fmt.Errorf("mb: consumer: ConsumerOptions.OnReceive returned a nil context for %q; using the consumer's", env.ID))
		hctx = ctx
	}
	if finish == nil {
		return hctx, nop
	}
	id := env.ID
	return hctx, func(err error) {
		defer func() {
			if r := recover(); r != nil {
				c.report(ctx, fmt.Errorf("mb: consumer: the function ConsumerOptions.OnReceive returned panicked for %q: %w", id, newPanicError(r)))
			}
		}()
		finish(err)
	}
}

// codecFor returns the codec for payloads of media type ct.
func (c *Consumer) codecFor(ct string) Codec {
	if ct == "" || len(c.o.Codecs) == 0 || sameMediaType(ct, c.o.Codec.ContentType()) {
		return c.o.Codec
	}
	for _, cd := range c.o.Codecs {
		if sameMediaType(ct, cd.ContentType()) {
			return cd
		}
	}
	return c.o.Codec
}

// fail records a failed handling of the message with key (source and id)
// and returns its record.
func (c *Consumer) fail(key string) failState {
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.failures[key]
	if st == nil {
		if len(c.failures) >= maxTracked {
			for k := range c.failures { // evict one, arbitrarily
				delete(c.failures, k)
				break
			}
		}
		st = &failState{first: now}
		c.failures[key] = st
	}
	st.count++
	st.last = now
	return *st
}

func (c *Consumer) forget(key string) {
	c.mu.Lock()
	delete(c.failures, key)
	c.mu.Unlock()
}

// settleCtx returns a context for acks, nacks and dead-lettering: not
// cancelled with Run's or the handlers' context, but bounded.
func settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// ack hands a handled message to its receiver's acker.
func (c *Consumer) ack(_ context.Context, d *delivery) {
	d.acks <- d
}

// runAcker acknowledges the messages handed to it in batches: it takes one,
// then whatever else is already waiting, up to BatchSize, and acks them in
// one call. Under load this turns one round trip per message into one per
// batch; when idle it adds no delay. It returns when in is closed and
// drained.
func (c *Consumer) runAcker(ctx context.Context, r mbdriver.Receiver, in chan *delivery) {
	batch := make([]*mbdriver.Message, 0, c.o.BatchSize)
	for d := range in {
		batch = append(batch[:0], d.msg)
	fill:
		for len(batch) < c.o.BatchSize {
			select {
			case d2, ok := <-in:
				if !ok {
					break fill
				}
				batch = append(batch, d2.msg)
			default:
				break fill
			}
		}
		sctx, cancel := settleCtx(ctx)
		err := r.Ack(sctx, batch)
		cancel()
		if err != nil {
			ids := make([]string, len(batch))
			for i, m := range batch {
				ids[i] = m.ID
			}
			c.report(ctx, fmt.Errorf("mb: consumer: ack of %d message(s) %q failed (they may be delivered again): %w", len(batch), ids, err))
		}
	}
}

func (c *Consumer) nack(ctx context.Context, r mbdriver.Receiver, msgs []*mbdriver.Message, delay time.Duration) {
	if len(msgs) == 0 {
		return
	}
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	if err := r.Nack(sctx, msgs, delay); err != nil {
		c.report(ctx, fmt.Errorf("mb: consumer: nack %d message(s): %w", len(msgs), err))
	}
}

const maxErrorHeader = 8 << 10

// deadLetter moves d to the dead-letter topic with cause attached and acks
// it; without a DeadLetter publisher, or when publishing fails, it logs
// and nacks it instead.
func (c *Consumer) deadLetter(ctx context.Context, d *delivery, cause error, attempts int, first, last time.Time) {
	m := d.msg
	topic := d.sourceTopic()
	if c.o.DeadLetter == nil {
		c.o.Logger.ErrorContext(ctx, "mb: consumer: message cannot be handled and no DeadLetter publisher is configured; nacking it (it will come back)",
			"id", m.ID, "topic", topic, "group", c.o.Group, "attempts", attempts, "error", cause)
		c.nack(ctx, d.rcv, []*mbdriver.Message{m}, c.o.Backoff.Max)
		return
	}
	text := truncate(cause.Error(), maxErrorHeader)
	h := maps.Clone(m.Headers)
	if h == nil {
		h = map[string]string{}
	}
	h[HeaderError] = text
	h[HeaderAttempts] = strconv.Itoa(attempts)
	h[HeaderFirstFailure] = first.UTC().Format(time.RFC3339Nano)
	h[HeaderLastFailure] = last.UTC().Format(time.RFC3339Nano)
	h[HeaderTopic] = topic
	h[HeaderGroup] = c.o.Group
	dl := &mbdriver.Message{ID: m.ID, Headers: h, Body: m.Body, PartitionKey: m.PartitionKey}
	dlTopic := c.o.DeadLetterTopic(topic)
	sctx, cancel := settleCtx(ctx)
	err := c.o.DeadLetter.Publish(sctx, dlTopic, []*mbdriver.Message{dl})
	cancel()
	if err != nil {
		c.report(ctx, errors.Join(
			fmt.Errorf("mb: consumer: dead-letter %q to %q failed; nacking it: %w", m.ID, dlTopic, err), cause))
		c.nack(ctx, d.rcv, []*mbdriver.Message{m}, c.o.Backoff.Delay(attempts))
		return
	}
	c.report(ctx, fmt.Errorf("mb: consumer: moved %q to dead-letter topic %q: %w", m.ID, dlTopic, cause))
	c.ack(ctx, d)
}
