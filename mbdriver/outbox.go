package mbdriver

import (
	"context"
	"time"
)

// OutboxMessage is a message kept in a transactional outbox until a relay
// publishes it: written in the transaction of a unit of work, so that it
// exists if and only if the unit commits.
type OutboxMessage struct {
	// Topic is the topic the message is published to.
	Topic string
	// Message is what is published: ID (the CloudEvents id), Headers (the
	// envelope's binary-mode headers), Body and PartitionKey. The store
	// keeps them unchanged, byte for byte; the fields a Receiver sets
	// (Topic, Attempt, PublishedAt, AckID) are not stored.
	Message Message
	// NotBefore, if not zero, is the earliest time the message may be
	// published: a delayed or scheduled message.
	NotBefore time.Time

	// The fields below are set by the store on the messages Claim returns.

	// Attempts is how many times publishing the message failed so far.
	Attempts int
	// Handle is the store's handle for Sent, Retry and Park. Opaque to
	// callers.
	Handle any
}

// OutboxWriter is the writing side of a transactional outbox store. The
// portable layer of package mb calls it before the unit of work commits.
type OutboxWriter interface {
	// Write stores msgs in the transaction of the unit of work that ctx
	// belongs to (the store finds it with its adapter's accessor), so that
	// they are stored exactly when the unit commits. It keeps the order
	// of msgs: messages with the same PartitionKey are published in the
	// order they were written, across units too (in commit order of the
	// writes). It returns an error, and stores nothing, outside a unit of
	// work of the store's database. Safe for concurrent use.
	Write(ctx context.Context, msgs []*OutboxMessage) error
}

// OutboxNotifier is implemented by outbox stores that can wake the relays
// of other processes when messages were written (PostgreSQL's
// LISTEN/NOTIFY). The portable layer calls Notify after a unit that wrote
// messages has committed, from the committing goroutine: it must not
// block, and should coalesce many calls into few notifications.
type OutboxNotifier interface {
	Notify()
}

// OutboxStore is the relay's side of a transactional outbox store. Many
// relays, in one process or several, may use one store at once.
type OutboxStore interface {
	// Claim gives the relay named owner up to max messages that are due
	// (NotBefore passed, or a retry's time passed), for lease: until the
	// lease ends, or the messages are settled, no other Claim returns
	// them. Per partition key it keeps the order in which messages were
	// written: it returns a message only when every earlier message of
	// its key is sent or parked, and the messages of one key it returns
	// in one call come in that order. Messages without a key come in any
	// order. A claimed message that is not settled before its lease ends
	// is due again (its relay died). Claim returns an empty slice, not an
	// error, when nothing is due.
	Claim(ctx context.Context, owner string, max int, lease time.Duration) ([]*OutboxMessage, error)
	// Sent settles claimed messages that were published: the store
	// deletes them, or keeps them as sent for its retention period.
	Sent(ctx context.Context, msgs []*OutboxMessage) error
	// Retry settles claimed messages whose publishing failed: they are due
	// again at at, with Attempts raised by one and reason recorded; later
	// messages of their keys keep waiting for them.
	Retry(ctx context.Context, msgs []*OutboxMessage, at time.Time, reason string) error
	// Release gives claimed messages back unsent, without counting an
	// attempt: they are due again at once (a relay that stops, or that
	// holds later messages of a key whose earlier message failed).
	Release(ctx context.Context, msgs []*OutboxMessage) error
	// Park settles claimed messages that will not be published (they
	// failed too often): they are kept with reason, never claimed again
	// unless the store's operator puts them back, and no longer hold back
	// the later messages of their keys.
	Park(ctx context.Context, msgs []*OutboxMessage, reason string) error
}

// OutboxWaiter is implemented by outbox stores that can tell a relay that
// messages were written, so that it need not poll (PostgreSQL's
// LISTEN/NOTIFY).
type OutboxWaiter interface {
	// Wait returns when messages may have been written since the last
	// Wait returned, when ctx is done (with its error), or with an error
	// when notifications are lost (the relay then polls). A notification
	// that arrives while nobody waits is kept for the next Wait.
	Wait(ctx context.Context) error
}

// OutboxStats is what an outbox holds, for metrics.
type OutboxStats struct {
	// Pending is the number of messages not yet sent or parked.
	Pending int64
	// Parked is the number of parked messages.
	Parked int64
	// Oldest is when the oldest pending message was written; zero when
	// none is pending. Now minus Oldest is the relay's lag.
	Oldest time.Time
}

// OutboxStatter is implemented by outbox stores that can report their
// OutboxStats.
type OutboxStatter interface {
	Stats(ctx context.Context) (OutboxStats, error)
}
