package mbredis

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/mb-go/mb/mbdriver"
	"github.com/redis/go-redis/v9"
)

// Format is how [PubSub] lays out a message on a channel.
type Format int

const (
	// FormatFrame publishes each message as one frame of [EncodeFrame] on
	// channel KeyPrefix+topic. It carries the ID, partition key, headers
	// and body unchanged.
	FormatFrame Format = iota

	// FormatDiator publishes in the wire format of the Python library
	// Diator (its RedisMessageBroker): the JSON object
	//
	//	{"message_type":"<type>","message_name":"<name>","message_id":"<id>","payload":<body>}
	//
	// on channel KeyPrefix+topic+":"+<type>+":"+<id>, where the topic plays
	// the part of Diator's channel_prefix (by default
	// [DiatorChannelPrefix]). <type> is the message's
	// [HeaderDiatorMessageType] header, or PubSubOptions.DiatorMessageType;
	// <name> is its "ce-type" header (the mb message name); the body must
	// be a JSON object. <id> is, as in every message Diator publishes, the
	// payload's "event_id": when the body has that field, it must be a
	// UUID and it is <id>; when it has not, <id> is the message's ID, which
	// must be a UUID (mb's ids are), and the payload gets it as its first
	// field "event_id". PubSubOptions.DiatorRawPayload turns that off.
	// Other headers and the partition key are not carried. What Diator's
	// Message cannot hold is refused: see [EncodeDiator].
	//
	// Subscribing to topic listens to pattern KeyPrefix+topic+":*" (a
	// Diator consumer's PSUBSCRIBE). A received object becomes a Message
	// with ID message_id, Body payload, and headers "ce-id", "ce-type"
	// (message_name), "ce-specversion" ("1.0"), "ce-source"
	// (PubSubOptions.DiatorSource), "content-type" ("application/json") and
	// [HeaderDiatorMessageType] (message_type), so that mb decodes it as
	// any other envelope (see [DecodeDiator]). A payload that is not what
	// Diator publishes is received raw, with [HeaderFrameError].
	FormatDiator
)

// String returns the constant's name, such as "FormatDiator", or
// "Format(n)" for another value.
func (f Format) String() string {
	switch f {
	case FormatFrame:
		return "FormatFrame"
	case FormatDiator:
		return "FormatDiator"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// HeaderFrameError is set on a received message whose channel payload
// could not be decoded (a frame of another format, a foreign publisher):
// its Body is the raw payload, its ID empty, and this header says what was
// wrong, so that the consumer runtime treats it as an undecodable message.
const HeaderFrameError = "mbredis-frame-error"

// PubSubOptions configures [NewPubSub]. The zero value (or nil) means the
// defaults.
type PubSubOptions struct {
	// KeyPrefix is put before every topic to make the channel name.
	KeyPrefix string

	// Format is the message layout on the channel: [FormatFrame] (the
	// default) or [FormatDiator].
	Format Format

	// DiatorMessageType is the Diator message_type of published messages
	// without a [HeaderDiatorMessageType] header (default
	// [DiatorNotificationEvent]). It must be valid UTF-8.
	DiatorMessageType string

	// DiatorRawPayload turns off what FormatDiator does by default to keep
	// message_id equal to the payload's event_id, as Diator does: it then
	// publishes the message's ID as message_id and the body as it is.
	DiatorRawPayload bool

	// DiatorSource is the "ce-source" header given to messages received in
	// FormatDiator, which have no source (default [DefaultDiatorSource]).
	DiatorSource string

	// ChannelSize is the number of received messages a receiver buffers
	// between the connection and Receive (default 100). When the buffer
	// stays full, go-redis drops messages.
	ChannelSize int
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument] and naming the field and the fix. [NewPubSub]
// returns them.
func (o *PubSubOptions) Validate() error {
	_, err := o.withDefaults()
	return err
}

func (o *PubSubOptions) withDefaults() (PubSubOptions, error) {
	var r PubSubOptions
	if o != nil {
		r = *o
	}
	var errs []error
	if r.Format != FormatFrame && r.Format != FormatDiator {
		errs = append(errs, invalid("PubSubOptions.Format is %v; use FormatFrame or FormatDiator", r.Format))
	}
	if !utf8.ValidString(r.DiatorMessageType) {
		errs = append(errs, invalid("PubSubOptions.DiatorMessageType %q is not valid UTF-8, which Diator's message_type must be", r.DiatorMessageType))
	}
	if r.ChannelSize < 0 {
		errs = append(errs, invalid("PubSubOptions.ChannelSize is %d; use a positive size, or 0 for the default", r.ChannelSize))
	}
	if r.DiatorMessageType == "" {
		r.DiatorMessageType = DiatorNotificationEvent
	}
	if r.DiatorSource == "" {
		r.DiatorSource = DefaultDiatorSource
	}
	if r.ChannelSize == 0 {
		r.ChannelSize = 100
	}
	return r, errors.Join(errs...)
}

// PubSub is an [mbdriver.Driver] over Redis Pub/Sub: a topic is a channel.
//
// Delivery is at most once: a message published while no subscriber
// listens, or while a subscriber is disconnected, is lost; there are no
// acknowledgements, so Ack and Nack do nothing. Every subscriber receives
// every message (a Subscription's Group and Consumer are ignored). PubSub
// declares AtMostOnce and Patterns: with Subscription.Pattern the topic is
// a Redis glob pattern (PSUBSCRIBE: "*", "?", "[...]"), after KeyPrefix,
// which is matched literally. Receivers reconnect and resubscribe by
// themselves after a lost connection.
//
// Pub/Sub messages have no headers, so each message is one payload in the
// configured [Format]. A PubSub is safe for concurrent use. It does not own
// the client: Close closes its receivers but leaves the client open.
type PubSub struct {
	client redis.UniversalClient
	opts   PubSubOptions
	stops  bool // client stops at context deadlines itself

	mu        sync.Mutex
	closed    bool
	receivers map[*pubsubReceiver]struct{}
}

var _ mbdriver.Driver = (*PubSub)(nil)

// NewPubSub returns a PubSub driver over client with opts (nil means the
// defaults). It returns an error naming every invalid option. It reads
// once whether client has ContextTimeoutEnabled: see Deadlines in the
// package documentation.
func NewPubSub(client redis.UniversalClient, opts *PubSubOptions) (*PubSub, error) {
	o, err := opts.withDefaults()
	if client == nil {
		err = errors.Join(invalid("NewPubSub: client is nil; pass a *redis.Client, *redis.ClusterClient or other redis.UniversalClient"), err)
	}
	if err != nil {
		return nil, err
	}
	return &PubSub{client: client, opts: o, stops: stopsAtDeadline(client), receivers: make(map[*pubsubReceiver]struct{})}, nil
}

// Capabilities returns AtMostOnce and Patterns.
func (p *PubSub) Capabilities() mbdriver.Capabilities {
	return mbdriver.Capabilities{AtMostOnce: true, Patterns: true}
}

// IsRetryable reports whether err is transient; see [Streams.IsRetryable].
func (p *PubSub) IsRetryable(err error) bool { return isRetryable(err) }

// As sets i to the client; see [Streams.As].
func (p *PubSub) As(i any) bool { return asClient(p.client, i) }

func (p *PubSub) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Publish sends msgs to topic with one PUBLISH each, all in one pipeline
// (one round trip), in the configured Format. It returns when Redis has
// accepted them, whether or not anyone listens.
func (p *PubSub) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if p.isClosed() {
		return mbdriver.ErrClosed
	}
	if topic == "" {
		return errors.New("mbredis: Publish: topic is empty")
	}
	channels := make([]string, len(msgs))
	payloads := make([][]byte, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("mbredis: Publish: message %d is nil", i)
		}
		var err error
		channels[i], payloads[i], err = p.encode(topic, m)
		if err != nil {
			return fmt.Errorf("mbredis: Publish: message %d (id %q): %w", i, m.ID, err)
		}
	}
	switch len(msgs) {
	case 0:
		return nil
	case 1:
		return withinErr(ctx, p.stops, func() error { return p.client.Publish(ctx, channels[0], payloads[0]).Err() })
	}
	return withinErr(ctx, p.stops, func() error {
		_, err := p.client.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for i := range msgs {
				pl.Publish(ctx, channels[i], payloads[i])
			}
			return nil
		})
		return err
	})
}

func (p *PubSub) encode(topic string, m *mbdriver.Message) (channel string, payload []byte, err error) {
	if p.opts.Format == FormatFrame {
		return p.opts.KeyPrefix + topic, EncodeFrame(m), nil
	}
	typ := header(m.Headers, HeaderDiatorMessageType)
	if typ == "" {
		typ = p.opts.DiatorMessageType
	}
	id, body := m.ID, m.Body
	if !p.opts.DiatorRawPayload {
		if id, body, err = diatorEvent(id, body); err != nil {
			return "", nil, err
		}
	}
	payload, err = EncodeDiator(typ, header(m.Headers, "ce-type"), id, body)
	if err != nil {
		return "", nil, err
	}
	return p.opts.KeyPrefix + topic + ":" + typ + ":" + id, payload, nil
}

// header returns h[name], or the value of a name differing only in case.
func header(h map[string]string, name string) string {
	if v, ok := h[name]; ok {
		return v
	}
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if strings.EqualFold(k, name) {
			return h[k]
		}
	}
	return ""
}

// Subscribe subscribes to sub.Topic (SUBSCRIBE), or to the pattern
// sub.Topic when sub.Pattern is set (PSUBSCRIBE; with FormatDiator,
// followed by ":*"), and returns once Redis has confirmed the
// subscription: messages published after that are received. sub.Group and
// sub.Consumer are ignored. Redis Pub/Sub keeps no messages, so sub.Start
// must be [mbdriver.StartNew]: [mbdriver.StartOldest] returns an error
// wrapping [errors.ErrUnsupported].
func (p *PubSub) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	if p.isClosed() {
		return nil, mbdriver.ErrClosed
	}
	var errs []error
	if sub.Topic == "" {
		errs = append(errs, errors.New("mbredis: Subscribe: Subscription.Topic is empty; set the channel name or pattern"))
	}
	switch sub.Start {
	case mbdriver.StartNew:
	case mbdriver.StartOldest:
		errs = append(errs, fmt.Errorf("mbredis: Subscribe: PubSub cannot start at the oldest message (Subscription.Start is StartOldest): Redis Pub/Sub keeps no messages to replay (Capabilities.Replay is false); use mbdriver.StartNew, or the Streams driver to receive messages published before the group existed: %w", errors.ErrUnsupported))
	default:
		errs = append(errs, fmt.Errorf("mbredis: Subscribe: Subscription.Start is %v; use mbdriver.StartNew", sub.Start))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r := &pubsubReceiver{d: p, topic: sub.Topic, pattern: sub.Pattern, closed: make(chan struct{})}
	switch {
	case p.opts.Format == FormatDiator && sub.Pattern:
		r.ps = p.client.PSubscribe(ctx, globEscape(p.opts.KeyPrefix)+sub.Topic+":*")
	case p.opts.Format == FormatDiator:
		r.ps = p.client.PSubscribe(ctx, globEscape(p.opts.KeyPrefix+sub.Topic)+":*")
	case sub.Pattern:
		r.ps = p.client.PSubscribe(ctx, globEscape(p.opts.KeyPrefix)+sub.Topic)
	default:
		r.ps = p.client.Subscribe(ctx, p.opts.KeyPrefix+sub.Topic)
	}
	// Wait for the server's confirmation.
	v, err := r.ps.Receive(ctx)
	if err == nil {
		if _, ok := v.(*redis.Subscription); !ok {
			err = fmt.Errorf("mbredis: Subscribe: got %T instead of the subscription confirmation", v)
		}
	}
	if err != nil {
		_ = r.ps.Close()
		return nil, err
	}
	r.ch = r.ps.Channel(redis.WithChannelSize(p.opts.ChannelSize))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		_ = r.ps.Close()
		return nil, mbdriver.ErrClosed
	}
	p.receivers[r] = struct{}{}
	return r, nil
}

// globEscape escapes the glob characters of s for PSUBSCRIBE.
func globEscape(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, c := range []byte(s) {
		switch c {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(c)
	}
	return b.String()
}

// Close closes the receivers opened by p and makes Publish and Subscribe
// return [mbdriver.ErrClosed]. It does not close the client. Close is
// idempotent.
func (p *PubSub) Close() error {
	p.mu.Lock()
	p.closed = true
	rs := slices.Collect(maps.Keys(p.receivers))
	p.mu.Unlock()
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

type pubsubReceiver struct {
	d       *PubSub
	topic   string
	pattern bool
	ps      *redis.PubSub
	ch      <-chan *redis.Message

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// Receive returns the messages received since the last call, waiting for
// one if there is none.
func (r *pubsubReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("mbredis: Receive: max is %d; it must be at least 1", max)
	}
	select {
	case <-r.closed:
		return nil, mbdriver.ErrClosed
	default:
	}
	var out []*mbdriver.Message
	select {
	case m, ok := <-r.ch:
		if !ok {
			return nil, mbdriver.ErrClosed
		}
		out = append(out, r.message(m))
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.closed:
		return nil, mbdriver.ErrClosed
	}
	for len(out) < max {
		select {
		case m, ok := <-r.ch:
			if !ok {
				return out, nil
			}
			out = append(out, r.message(m))
		default:
			return out, nil
		}
	}
	return out, nil
}

// message decodes a channel message. A payload that does not decode is
// returned raw, with HeaderFrameError.
func (r *pubsubReceiver) message(pm *redis.Message) *mbdriver.Message {
	topic := strings.TrimPrefix(pm.Channel, r.d.opts.KeyPrefix)
	var (
		m   *mbdriver.Message
		err error
	)
	if r.d.opts.Format == FormatDiator {
		m, err = DecodeDiator([]byte(pm.Payload), r.d.opts.DiatorSource)
		topic = diatorTopic(topic, m)
	} else {
		m, err = DecodeFrame([]byte(pm.Payload))
	}
	if err != nil {
		m = &mbdriver.Message{Body: []byte(pm.Payload), Headers: map[string]string{HeaderFrameError: err.Error()}}
	}
	m.Topic = topic
	return m
}

// Ack does nothing: Pub/Sub has no acknowledgements.
func (r *pubsubReceiver) Ack(context.Context, []*mbdriver.Message) error { return nil }

// Nack does nothing: Pub/Sub cannot redeliver.
func (r *pubsubReceiver) Nack(context.Context, []*mbdriver.Message, time.Duration) error {
	return nil
}

// Close unsubscribes and closes the receiver's connection. Close is
// idempotent.
func (r *pubsubReceiver) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.closeErr = r.ps.Close()
		r.d.mu.Lock()
		delete(r.d.receivers, r)
		r.d.mu.Unlock()
	})
	return r.closeErr
}

// diatorTopic returns the topic of channel "<topic>:<message_type>:<id>"
// (after the key prefix), which carried m, or nil when the payload did not
// decode. A message type may hold ':'.
func diatorTopic(channel string, m *mbdriver.Message) string {
	if m != nil {
		if t, ok := strings.CutSuffix(channel, ":"+m.Headers[HeaderDiatorMessageType]+":"+m.ID); ok {
			return t
		}
	}
	for range 2 {
		if i := strings.LastIndexByte(channel, ':'); i >= 0 {
			channel = channel[:i]
		}
	}
	return channel
}
