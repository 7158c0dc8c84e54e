// Package mbdriver defines the small interfaces that transport adapters
// implement. Users do not call them directly: the portable layer in package
// mb (publishing, the consumer runtime) does, and adds batching, retries,
// decoding, middleware, dead-lettering and tracing once for every broker.
//
// A driver moves opaque messages: a body and string headers. It does not
// know about Go types, codecs or handlers. Every driver runs the
// conformance suite in package mbdrivertest with the [Capabilities] it
// declares.
package mbdriver

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// ErrClosed is returned by a Publisher or Receiver used after Close.
var ErrClosed = errors.New("mbdriver: closed")

// Message is one message as a broker carries it.
type Message struct {
	// ID is the message id (the envelope's CloudEvents id). Drivers carry
	// it unchanged; brokers that de-duplicate by id use it.
	ID string
	// Headers are the message's headers: the CloudEvents binary-mode
	// attributes ("ce-id", "ce-type", ..., "content-type") and any others.
	// Values may hold any bytes, including invalid UTF-8. A Receiver
	// returns exactly the headers that were published: a driver strips any
	// bookkeeping fields of its own.
	Headers map[string]string
	// Body is the encoded payload.
	Body []byte
	// PartitionKey, if set, asks for ordering: messages with the same key
	// are delivered in publish order to one consumer of a group at a time,
	// where the driver declares OrderingPerKey.
	PartitionKey string

	// The fields below are set by a Receiver.

	// Topic is the topic (stream, channel, subject, queue) the message was
	// received from; with a pattern subscription, the concrete one.
	Topic string
	// Attempt is the delivery attempt, from 1, when the broker counts
	// deliveries; 0 when it does not know.
	Attempt int
	// PublishedAt is when the broker accepted the message, if it says; zero
	// otherwise.
	PublishedAt time.Time
	// AckID is the driver's handle for Ack and Nack. Opaque to callers.
	AckID any
}

// Capabilities are the guarantees a driver declares. The conformance suite
// tests exactly these; the portable layer relies on nothing else.
type Capabilities struct {
	// Persistent: a message published while no consumer is connected is
	// kept and delivered when one subscribes with a group created before
	// the publish; a consumer that stops before acking gets it again.
	Persistent bool
	// ConsumerGroups: subscribers of one group share the messages of a
	// topic (competing consumers); different groups each get every message.
	// Without it every subscriber gets every message.
	ConsumerGroups bool
	// Redelivery: a nacked message is delivered again.
	Redelivery bool
	// OrderingPerKey: messages with the same PartitionKey are delivered in
	// publish order.
	OrderingPerKey bool
	// DelayedDelivery: Nack honours its delay natively.
	DelayedDelivery bool
	// DeadLetter: the broker moves messages to a dead-letter destination
	// itself (the portable layer does it otherwise).
	DeadLetter bool
	// Patterns: Subscription.Pattern subscriptions are supported. In a
	// pattern, "*" matches at least one dot-separated segment ("orders.*"
	// matches "orders.created"); drivers whose brokers match more widely
	// (Redis globs match across dots) document it.
	Patterns bool
	// AtMostOnce: delivery is at most once (no acks); Ack and Nack do
	// nothing.
	AtMostOnce bool
	// Replay: a new group subscribed with StartOldest gets the messages
	// the broker retains from before it existed, starting with the oldest
	// (how many and for how long is the broker's retention, which the
	// driver documents). Without it, Subscribe with StartOldest returns an
	// error wrapping [errors.ErrUnsupported].
	Replay bool
	// Extend: the broker takes back a message that a receiver holds
	// unacknowledged for too long (a visibility timeout, a claim timeout,
	// a lock) and gives it to another consumer, and the driver's Receivers
	// implement [Extender] so that a consumer can keep holding the
	// messages it is still handling. The consumer runtime of package mb
	// drives it for every driver that declares it.
	Extend bool
}

// Publisher sends messages to topics.
type Publisher interface {
	// Publish sends msgs to topic as one batch where the broker allows
	// (a pipeline, a transaction), in order. It returns when the broker has
	// accepted all of them, or an error; on error some may have been
	// accepted. It neither keeps nor modifies msgs. Safe for concurrent use.
	Publish(ctx context.Context, topic string, msgs []*Message) error
	// Close releases the publisher's resources and, for a Driver, closes
	// the receivers it opened. Publish, Subscribe and Receive after Close
	// return ErrClosed; Ack and Nack may still succeed or return
	// ErrClosed. Close is idempotent.
	Close() error
}

// Subscription says what a Receiver receives.
type Subscription struct {
	// Topic is the topic to receive from, or a pattern when Pattern is set
	// (syntax per driver, e.g. "orders.*").
	Topic string
	// Pattern makes Topic a pattern; needs Capabilities.Patterns.
	Pattern bool
	// Group is the consumer group. Receivers of one group share messages
	// (with Capabilities.ConsumerGroups). Required by drivers with groups.
	Group string
	// Consumer names this receiver within its group; unique per live
	// receiver. Drivers that need one generate it when empty.
	Consumer string
	// Start is where the group starts reading when this Subscribe creates
	// it. It applies only to a group that does not exist yet: an existing
	// group keeps its position (what it has acked is never delivered
	// again), whatever Start says. The zero value is [StartNew].
	// [StartOldest] needs Capabilities.Replay. For drivers without consumer
	// groups, every Subscribe starts a new "group".
	Start StartPosition
}

// StartPosition is where a new consumer group starts reading its topic:
// which messages, published before the group was created, it gets. See
// Subscription.Start. Any other value than the constants below is invalid,
// and Subscribe returns an error for it.
//
// When receivers with different Start values race to create the same group,
// the first to create it decides; give every receiver of a group the same
// Start.
type StartPosition int

const (
	// StartNew starts a new group at the messages published after it was
	// created; earlier ones are not delivered to it. The zero value, and
	// what every driver supports.
	StartNew StartPosition = iota
	// StartOldest starts a new group at the oldest message the broker
	// still retains for the topic (for a pattern, for each matching
	// topic), so that it also gets the messages published before it
	// existed, as far back as the broker's retention goes, followed by the
	// new ones. Needs Capabilities.Replay: a driver without it returns an
	// error wrapping [errors.ErrUnsupported] from Subscribe rather than
	// quietly starting at the new messages.
	StartOldest
)

// String returns "StartNew", "StartOldest" or "StartPosition(n)".
func (p StartPosition) String() string {
	switch p {
	case StartNew:
		return "StartNew"
	case StartOldest:
		return "StartOldest"
	}
	return "StartPosition(" + strconv.Itoa(int(p)) + ")"
}

// Subscriber opens receivers.
type Subscriber interface {
	// Subscribe opens a receiver for sub. Creating the group when it does
	// not exist yet, at sub.Start, is part of it; an existing group keeps
	// its position. Safe for concurrent use.
	Subscribe(ctx context.Context, sub Subscription) (Receiver, error)
}

// Receiver receives the messages of one subscription. Receive is called
// from one goroutine at a time; Ack and Nack may be called concurrently with
// Receive and with each other.
type Receiver interface {
	// Receive blocks until at least one message is available, then returns
	// up to max (> 0) messages; or returns ctx's error when ctx is done, or
	// ErrClosed after Close — including a Close that happens while it is
	// blocked. A transient broker failure is returned as an error for
	// which IsRetryable reports true; the caller retries. Received messages
	// have PartitionKey set when the broker carries it.
	Receive(ctx context.Context, max int) ([]*Message, error)
	// Ack confirms msgs were handled; they are not delivered again. An ack
	// that comes after the broker already redelivered a message (its
	// visibility or claim timeout passed) is best effort: it returns nil or
	// an error, and the message may be handled twice — which is what an
	// inbox is for.
	Ack(ctx context.Context, msgs []*Message) error
	// Nack returns msgs for redelivery, after delay where the driver
	// supports DelayedDelivery (otherwise as soon as the broker does).
	Nack(ctx context.Context, msgs []*Message, delay time.Duration) error
	// Close stops receiving and wakes a blocked Receive (at once, or
	// within the driver's documented poll interval). Unacked messages are
	// redelivered later by persistent drivers; ack before closing. Close
	// is idempotent.
	Close() error
}

// Extender is implemented by the Receivers of drivers that declare
// Capabilities.Extend. A consumer calls Extend about every ExtendInterval
// for the messages it has received and not yet acked or nacked (those
// being handled and those waiting for a worker), so that the broker does
// not hand them to another consumer while a slow handler runs, and
// stops when it settles them.
type Extender interface {
	// ExtendInterval is how often Extend must be called for a held
	// message to stay held: well under the broker's timeout (a third of
	// it, say), so that one late call does not lose the message. It is
	// constant for the life of the receiver.
	ExtendInterval() time.Duration
	// Extend restarts the broker's timeout of msgs, which this receiver
	// returned and which are not acked or nacked yet. Extending a message
	// does not count as a delivery: Message.Attempt of a later delivery is
	// not raised by it. A message the broker has already given to another
	// consumer, or that was acked meanwhile, is skipped without error: an
	// extension is best effort, and an inbox covers the rare double
	// handling. Extend may be called concurrently with Receive, Ack and
	// Nack; after Close it returns ErrClosed.
	Extend(ctx context.Context, msgs []*Message) error
}

// Driver is a transport: a publisher and a subscriber over one broker
// connection, with its declared capabilities.
type Driver interface {
	Publisher
	Subscriber
	// Capabilities returns what the driver guarantees.
	Capabilities() Capabilities
	// IsRetryable reports whether err, returned by this driver, is
	// transient (a lost connection, a timeout, a failover). It reports
	// false for nil, ErrClosed and context errors.
	IsRetryable(err error) bool
	// As sets i to the driver's native client if i is a pointer to its
	// type, and reports whether it did.
	As(i any) bool
}
