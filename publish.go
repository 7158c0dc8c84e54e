package mb

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// DefaultMaxBatch is the batch size used when [PublisherOptions.MaxBatch]
// is zero.
const DefaultMaxBatch = 100

// PublisherOptions configure a [Publisher]. The zero value, or nil, gives
// the defaults.
type PublisherOptions struct {
	// Codec encodes message payloads. Nil means the registry's
	// ([RegistryOptions.Codec]).
	Codec Codec
	// Router maps message names to topics. Nil means [DefaultRouter].
	Router Router
	// Source is the CloudEvents source of the published messages, such as
	// "/orders". Empty means the [RegistryOptions.Source] of the registry;
	// one of the two is required.
	Source string
	// MaxBatch is the largest number of messages handed to the driver in
	// one Publish call. Zero means DefaultMaxBatch.
	MaxBatch int
	// Retry says how often and how patiently a failed driver Publish is
	// tried again. Only retryable errors are retried: Retry.IsRetryable
	// when set, otherwise the driver's IsRetryable method when it has one
	// (every [mbdriver.Driver] does), otherwise [IsRetryable]. Zero
	// fields take the defaults of [RetryOptions] (3 attempts, backoff
	// from 10ms to 1s).
	Retry RetryOptions
	// OnPublish, if set, is called for each event with Publish's context
	// and the event's envelope (payload encoded, every attribute set)
	// before it is sent: the hook for tracing (set TraceParent
	// and TraceState from the span in ctx) and for attributes such as
	// Subject or extensions. It must not change Type or Data. The envelope
	// is validated again after it; an invalid change, or a panic, fails
	// Publish and nothing is sent. It must not keep env, and it is called
	// from the goroutines that call Publish.
	OnPublish func(ctx context.Context, env *Envelope)
	// Select chooses, when the Publisher is a bus's [Options.Forward],
	// which events emitted in its units of work it publishes, by message
	// name. Nil means every event whose type the registry knows.
	Select func(name string) bool
}

// Publisher publishes events to a transport: the portable half of
// cross-process delivery that every driver shares. It encodes each event in
// an [Envelope] with the [Registry], routes it to a topic, batches per
// topic and retries transient driver errors with backoff.
//
// A Publisher is safe for concurrent use. It does not own the driver it is
// given: [Publisher.Close] does not close it.
//
// Publishing is not transactional: an event published from a handler whose
// unit of work later rolls back has been sent anyway. Use an outbox for
// events that must leave if and only if the business transaction commits.
type Publisher struct {
	d        mbdriver.Publisher
	enc      encoder
	sel      func(name string) bool
	maxBatch int
	retry    RetryOptions
	closed   atomic.Bool
}

// NewPublisher returns a Publisher that encodes with reg and sends through
// d; opts may be nil for the defaults, and the Publisher keeps a copy. It
// returns all problems with its arguments joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix: a nil d or reg,
// invalid options ([PublisherOptions.Validate]), or no CloudEvents source
// in either opts.Source or the registry.
func NewPublisher(d mbdriver.Publisher, reg *Registry, opts *PublisherOptions) (*Publisher, error) {
	var o PublisherOptions
	if opts != nil {
		o = *opts
	}
	var p problems
	if d == nil {
		p.add("NewPublisher: the driver is nil; pass an mbdriver.Publisher")
	}
	if reg == nil {
		p.add("NewPublisher: the registry is nil; create one with NewRegistry")
	} else if o.Source == "" && reg.opts.Source == "" {
		p.add("PublisherOptions.Source is empty and the registry has no RegistryOptions.Source; set one of them to the CloudEvents source of this service, e.g. \"/orders\"")
	}
	o.check(&p)
	if err := p.err(); err != nil {
		return nil, err
	}
	o = o.withDefaults(d, reg)
	return &Publisher{
		d: d, sel: o.Select, maxBatch: o.MaxBatch, retry: o.Retry,
		enc: encoder{
			reg: reg, codec: o.Codec, route: o.Router, source: o.Source,
			hook: o.OnPublish, what: "PublisherOptions.OnPublish",
		},
	}, nil
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix. [NewPublisher]
// checks them, and also that a source is set here or in the registry.
func (o *PublisherOptions) Validate() error {
	var p problems
	o.check(&p)
	return p.err()
}

func (o *PublisherOptions) check(p *problems) {
	if o.MaxBatch < 0 {
		p.add("PublisherOptions.MaxBatch is %d; use 0 for the default (%d) or a positive size", o.MaxBatch, DefaultMaxBatch)
	}
	if o.Source != "" {
		if err := checkValue(attrSource, o.Source); err != nil {
			p.add("PublisherOptions.Source: %w", err)
		}
	}
	o.Retry.check(p, "PublisherOptions.Retry")
}

// withDefaults fills the zero fields of valid options for a publisher
// over d and reg.
func (o PublisherOptions) withDefaults(d mbdriver.Publisher, reg *Registry) PublisherOptions {
	if o.Retry.IsRetryable == nil {
		if r, ok := d.(interface{ IsRetryable(error) bool }); ok {
			o.Retry.IsRetryable = r.IsRetryable
		}
	}
	o.Retry = o.Retry.withDefaults()
	if o.Codec == nil {
		o.Codec = reg.opts.Codec
	}
	if o.Router == nil {
		o.Router = DefaultRouter
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	return o
}

// Publish encodes events and sends them, grouped by topic in the order
// each topic first appears, each topic's messages in the order given, in
// batches of at most MaxBatch. It returns when the driver has accepted all
// of them, or with the first error; messages of earlier batches may have
// been sent then, and a retried batch may be sent twice (delivery is at
// least once; consumers de-duplicate by id with an [Inbox]).
//
// Each event gets a new id. Inside a handler, its correlation id is that of
// the message being handled and its causation id that message's id (see
// [MetadataFrom]); outside, its correlation id is the one set with
// [WithCorrelationID], or its own id. The partition key comes from the
// event's PartitionKey() string method, if it has one. All the events of
// one call carry the same time: when Publish was called.
//
// All events are encoded before anything is sent: an event that cannot be
// encoded (unregistered, too large, a codec error) fails Publish and
// nothing is sent. Publish retries errors the driver reports as retryable,
// with exponential backoff and jitter, and gives up when ctx is done.
func (p *Publisher) Publish(ctx context.Context, events ...any) error {
	if p == nil {
		return fmt.Errorf("%w: Publish on a nil *Publisher", ErrInvalidArgument)
	}
	if ctx == nil {
		return fmt.Errorf("%w: Publish with a nil context", ErrInvalidArgument)
	}
	if p.closed.Load() {
		return fmt.Errorf("mb: Publish after Close: %w", mbdriver.ErrClosed)
	}
	topics, err := p.encode(ctx, events)
	if err != nil {
		return err
	}
	return p.sendAll(ctx, topics)
}

// sendAll sends the batches of each topic, in order, in chunks of at
// most MaxBatch.
func (p *Publisher) sendAll(ctx context.Context, topics []*topicBatch) error {
	for _, b := range topics {
		for start := 0; start < len(b.msgs); start += p.maxBatch {
			chunk := b.msgs[start:min(start+p.maxBatch, len(b.msgs))]
			if err := p.send(ctx, b.topic, chunk); err != nil {
				return fmt.Errorf("mb: Publish: %d message(s) to topic %q: %w", len(chunk), b.topic, err)
			}
		}
	}
	return nil
}

// encode encodes events in envelopes with the identity ctx gives them and
// groups them by topic, in the order each topic first appears.
func (p *Publisher) encode(ctx context.Context, events []any) ([]*topicBatch, error) {
	corr, cause := identityFrom(ctx)
	// One time, formatted once, and one block of messages for the whole
	// call.
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339Nano)
	slab := make([]mbdriver.Message, len(events))
	var topics []*topicBatch // a call has few topics: a list does
	for i, ev := range events {
		m := &slab[i]
		topic, err := p.enc.message(ctx, ev, NewID(), corr, cause, now, ts, m)
		if err != nil {
			return nil, fmt.Errorf("mb: Publish: event %d (%T): %w", i, ev, err)
		}
		topics = addToTopic(topics, topic, m)
	}
	return topics, nil
}

// addToTopic appends m to the batch of topic in topics, adding one when
// there is none yet.
func addToTopic(topics []*topicBatch, topic string, m *mbdriver.Message) []*topicBatch {
	j := slices.IndexFunc(topics, func(b *topicBatch) bool { return b.topic == topic })
	if j < 0 {
		j = len(topics)
		topics = append(topics, &topicBatch{topic: topic})
	}
	topics[j].msgs = append(topics[j].msgs, m)
	return topics
}

// identityFrom returns the correlation and causation ids of a message
// published with ctx: those of the message being handled, or the
// correlation id set with WithCorrelationID.
func identityFrom(ctx context.Context) (corr, cause string) {
	if md, ok := MetadataFrom(ctx); ok {
		return md.CorrelationID, md.ID
	}
	if in := correlationFrom(ctx); in != nil {
		return in.correlation, ""
	}
	return "", ""
}

// encoder turns events into driver messages: the part of sending events
// across processes that a Publisher and an Outbox share.
type encoder struct {
	reg    *Registry
	codec  Codec
	route  Router
	source string
	hook   func(ctx context.Context, env *Envelope) // the tracing hook, if any
	what   string                                   // the hook's name, for errors
}

// message encodes ev into m, as an envelope with id, correlation and
// causation ids corr and cause (corr defaults to id) and time now, whose
// text is ts, and returns the topic it is routed to. The hook sees the
// envelope with ctx.
func (c *encoder) message(ctx context.Context, ev any, id, corr, cause string, now time.Time, ts string, m *mbdriver.Message) (string, error) {
	env := Envelope{ID: id, Source: c.source, Time: now, CorrelationID: corr, CausationID: cause}
	if env.CorrelationID == "" {
		env.CorrelationID = env.ID
	}
	if err := c.reg.encode(&env, ev, c.codec, &env); err != nil {
		return "", err
	}
	if c.hook != nil {
		e := new(Envelope) // the hook's copy: env itself stays on the stack
		*e = env
		if err := c.runHook(ctx, e); err != nil {
			return "", fmt.Errorf("after %s: %w", c.what, err)
		}
		env = *e
		if !env.Time.Equal(now) { // the hook moved it
			ts = ""
			if !env.Time.IsZero() {
				ts = env.Time.Format(time.RFC3339Nano)
			}
		}
	}
	topic := c.route(env.Type)
	if topic == "" {
		return "", fmt.Errorf("%w: the Router maps %q to an empty topic", ErrInvalidArgument, env.Type)
	}
	*m = mbdriver.Message{ID: env.ID, Headers: env.headers(ts), Body: env.Data, PartitionKey: env.PartitionKey}
	return topic, nil
}

// runHook runs the hook on env and checks what it left; a panic in it is
// an error.
func (c *encoder) runHook(ctx context.Context, env *Envelope) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: the hook panicked: %w", ErrInvalidArgument, newPanicError(r))
		}
	}()
	typ, data := env.Type, env.Data
	c.hook(ctx, env)
	if env.Type != typ || !bytes.Equal(env.Data, data) {
		return fmt.Errorf("%w: the hook changed Type or Data; it may change the other attributes only", ErrInvalidArgument)
	}
	return env.Validate()
}

// topicBatch holds the messages of one Publish call for one topic.
type topicBatch struct {
	topic string
	msgs  []*mbdriver.Message
}

// send hands one batch to the driver, retrying retryable errors.
func (p *Publisher) send(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	for n := 1; ; n++ {
		err := p.d.Publish(ctx, topic, msgs)
		if err == nil {
			return nil
		}
		if n >= p.retry.MaxAttempts || !p.retry.IsRetryable(err) {
			if n > 1 {
				return fmt.Errorf("after %d attempts: %w", n, err)
			}
			return err
		}
		if werr := sleepCtx(ctx, p.retry.Backoff.Delay(n)); werr != nil {
			return errors.Join(err, werr)
		}
	}
}

// Close marks the Publisher closed: Publish then returns an error wrapping
// [mbdriver.ErrClosed]. It closes nothing it does not own — in particular
// not the driver, which the caller created and closes. Close is idempotent
// and returns nil.
func (p *Publisher) Close() error {
	p.closed.Store(true)
	return nil
}

// sleepCtx waits for d or until ctx is done, returning ctx's cause then.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
