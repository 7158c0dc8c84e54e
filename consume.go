package mb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
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
	// one generate it when empty. A name must be unique among the live
	// consumers of a group. A stable name per process lets a restarted
	// consumer pick up what it received and did not acknowledge before
	// (mbredis's Streams does so at once, instead of after the claim
	// timeout).
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
	// locally for a worker (one queued, one being handed over). With a
	// driver that declares Capabilities.Extend (Redis Streams), the
	// consumer keeps every message it holds, waiting or being handled,
	// held at the broker. With other drivers that redeliver after a
	// timeout, keep 2 × BatchSize × handling time / Concurrency below that
	// timeout, or waiting messages are redelivered to another consumer
	// meanwhile.
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
// A message is held from the moment it is received until it is settled;
// for drivers that declare Capabilities.Extend, the consumer keeps it held
// at the broker ([mbdriver.Extender]) so that a slow handler's message is
// not delivered to another consumer meanwhile, nor counted as another
// delivery attempt.
//
// Create one with [NewConsumer] and call Run once. Its methods are safe
// for concurrent use.
type Consumer struct {
	bus     *Bus
	sub     mbdriver.Subscriber
	reg     *Registry
	o       ConsumerOptions
	topics  []string
	caps    mbdriver.Capabilities
	started atomic.Bool

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
// reg and dispatches to bus; opts is required (it names the topics), and
// the Consumer keeps a copy. It returns all problems with its arguments
// joined, each wrapping [ErrInvalidArgument] (or [ErrInvalidHandler] for a
// handler the Inbox cannot key) and naming the field and the fix: nil
// arguments, invalid options ([ConsumerOptions.Validate]), and options the
// driver cannot honour: a missing Group for a driver with consumer groups,
// a pattern for a driver without patterns, StartOldest for one without
// replay. When sub has a Capabilities() method (every [mbdriver.Driver]
// does), the consumer relies on what it declares; otherwise it assumes
// none (no redelivery: retries happen in process).
func NewConsumer(bus *Bus, sub mbdriver.Subscriber, reg *Registry, opts *ConsumerOptions) (*Consumer, error) {
	var o ConsumerOptions
	if opts != nil {
		o = *opts
	}
	var p problems
	if bus == nil {
		p.add("NewConsumer: the bus is nil; create one with New")
	}
	if sub == nil {
		p.add("NewConsumer: the subscriber is nil; pass an mbdriver.Subscriber")
	}
	if reg == nil {
		p.add("NewConsumer: the registry is nil; create one with NewRegistry and register the consumed messages")
	}
	o.check(&p)
	var caps mbdriver.Capabilities
	if cp, ok := sub.(interface{ Capabilities() mbdriver.Capabilities }); ok {
		caps = cp.Capabilities()
	}
	if sub != nil {
		o.checkDriver(&p, caps)
	}
	if o.Inbox != nil && bus != nil && reg != nil {
		for _, h := range bus.subscribersOf(reg.types()) {
			if err := h.stableName(); err != nil {
				p = append(p, fmt.Errorf("mb: ConsumerOptions.Inbox: %w", err))
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	o = o.withDefaults(sub, reg)
	return &Consumer{
		bus: bus, sub: sub, reg: reg, o: o, topics: o.topics(), caps: caps,
		failures: map[string]*failState{},
	}, nil
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix: no topic, an
// empty or repeated topic, negative sizes, attempts or durations, invalid
// backoffs, an unknown Start, nil codecs. [NewConsumer] checks them and
// what the driver can honour.
func (o *ConsumerOptions) Validate() error {
	var p problems
	o.check(&p)
	return p.err()
}

func (o *ConsumerOptions) check(p *problems) {
	for i, t := range o.Topics {
		if t == "" {
			p.add("ConsumerOptions.Topics[%d] is empty; remove it", i)
		}
	}
	topics := o.topics()
	if len(topics) == 0 {
		p.add("ConsumerOptions.Topic is empty; set Topic (or Topics) to the topic to consume")
	}
	seen := map[string]bool{}
	for _, t := range topics {
		if seen[t] {
			p.add("ConsumerOptions.Topics: topic %q is given twice; list each topic once", t)
		}
		seen[t] = true
	}
	if o.Start != mbdriver.StartNew && o.Start != mbdriver.StartOldest {
		p.add("ConsumerOptions.Start is %v; use mbdriver.StartNew or mbdriver.StartOldest", o.Start)
	}
	if o.Concurrency < 0 {
		p.add("ConsumerOptions.Concurrency is %d; use 0 for the default (GOMAXPROCS) or a positive count", o.Concurrency)
	}
	if o.BatchSize < 0 {
		p.add("ConsumerOptions.BatchSize is %d; use 0 for the default or a positive size", o.BatchSize)
	}
	if o.MaxAttempts < 0 {
		p.add("ConsumerOptions.MaxAttempts is %d; use 0 for the default (%d) or a positive count", o.MaxAttempts, DefaultMaxAttempts)
	}
	o.Backoff.check(p, "ConsumerOptions.Backoff")
	o.ReconnectBackoff.check(p, "ConsumerOptions.ReconnectBackoff")
	if o.DrainTimeout < 0 {
		p.add("ConsumerOptions.DrainTimeout is %v; use 0 for the default (%v) or a positive duration", o.DrainTimeout, DefaultDrainTimeout)
	}
	for i, cd := range o.Codecs {
		if cd == nil {
			p.add("ConsumerOptions.Codecs[%d] is nil; remove it", i)
		}
	}
}

// checkDriver adds the options a driver with caps cannot honour.
func (o *ConsumerOptions) checkDriver(p *problems, caps mbdriver.Capabilities) {
	if o.Group == "" && caps.ConsumerGroups {
		p.add("ConsumerOptions.Group is empty; this driver has consumer groups: name the group of this service, e.g. \"billing\"")
	}
	if o.Start == mbdriver.StartOldest && !caps.Replay {
		p.add("ConsumerOptions.Start is StartOldest, but the driver does not declare Capabilities.Replay; use StartNew, or a driver that keeps messages for new groups")
	}
	if o.Pattern && !caps.Patterns {
		p.add("ConsumerOptions.Pattern is set, but the driver does not declare Capabilities.Patterns; subscribe to each topic instead")
	}
}

// topics returns Topic and Topics, without empty ones, in order.
func (o *ConsumerOptions) topics() []string {
	var ts []string
	if o.Topic != "" {
		ts = append(ts, o.Topic)
	}
	for _, t := range o.Topics {
		if t != "" {
			ts = append(ts, t)
		}
	}
	return ts
}

// withDefaults returns a copy of valid options for a consumer of sub and
// reg with the zero fields filled and the slices it keeps cloned.
func (o ConsumerOptions) withDefaults(sub mbdriver.Subscriber, reg *Registry) ConsumerOptions {
	o.Topics = slices.Clone(o.Topics)
	o.Codecs = slices.Clone(o.Codecs)
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
	if o.IsRetryable == nil {
		if r, ok := sub.(interface{ IsRetryable(error) bool }); ok {
			o.IsRetryable = r.IsRetryable
		} else {
			o.IsRetryable = IsRetryable
		}
	}
	if o.ErrorHandler == nil {
		logger := o.Logger
		o.ErrorHandler = func(ctx context.Context, err error) {
			logger.ErrorContext(ctx, "mb: consumer error", "error", err)
		}
	}
	return o
}

func (c *Consumer) report(ctx context.Context, err error) {
	defer func() { _ = recover() }()
	c.o.ErrorHandler(ctx, err)
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
	for _, t := range c.topics {
		r, err := c.subscribe(ctx, t)
		if err != nil || r == nil {
			return errors.Join(err, closeReceivers(rcvs))
		}
		rcvs = append(rcvs, r)
	}
	return c.serve(ctx, rcvs)
}

func closeReceivers(rcvs []mbdriver.Receiver) error {
	var errs []error
	for _, r := range rcvs {
		if err := r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("mb: consumer: close receiver: %w", err))
		}
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
		if c.o.FailFast || errors.Is(err, mbdriver.ErrClosed) || !c.o.IsRetryable(err) {
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
