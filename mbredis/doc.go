// Package mbredis provides two mb transports over Redis, as
// [mbdriver.Driver] implementations that the portable layer of package mb
// (publishing, the consumer runtime) uses: [Streams] over Redis Streams,
// and [PubSub] over Redis Pub/Sub. Both take a go-redis
// [redis.UniversalClient] that the caller creates and closes.
//
// # Choosing
//
// [Streams] is the reliable one: messages are stored in a stream, consumer
// groups share them (competing consumers), every group gets every message,
// delivery is at least once with acknowledgements, redelivery after Nack,
// and take-over of the messages of a consumer that died. Use it for
// integration events and anything that must not be lost.
//
// [PubSub] is fire-and-forget: delivery is at most once, to the subscribers
// connected at the time; a message published while nobody listens, or
// while a subscriber reconnects, is lost. It supports pattern
// subscriptions, and it can speak the wire format of the Python library
// Diator ([FormatDiator]).
//
// # Streams layout
//
// The stream of topic T is the key StreamsOptions.KeyPrefix+T. A message is
// one entry with the fields
//
//	id       Message.ID
//	body     Message.Body
//	pk       Message.PartitionKey (only when set)
//	h:<name> one field per header, e.g. "h:ce-type"
//
// Values are Redis strings and may hold any bytes. A receiver sets
// Message.Topic to T, Attempt to the entry's delivery count, PublishedAt to
// the time in the entry ID, and AckID to the entry ID.
//
// Subscribe creates the consumer group, when it does not exist yet, with
// XGROUP CREATE ... MKSTREAM at the Subscription's Start: at "$" for
// [mbdriver.StartNew] (the default), so that a new group receives the
// entries added after it was created, or at "0" for [mbdriver.StartOldest]
// (ConsumerOptions.Start in package mb), so that it also receives the
// entries the stream holds from before it existed — every entry unless
// StreamsOptions.MaxLen trims the stream. This is how a service that
// subscribes for the first time handles the events published before it
// first ran. An existing group keeps its position whatever Start says.
// Streams declares Replay; [PubSub] does not, and refuses StartOldest with
// an error wrapping [errors.ErrUnsupported].
//
// A receiver starts with the entries still pending for its own consumer
// name (XREADGROUP from ID 0): those of an earlier receiver of that name
// that stopped without acknowledging them, such as a process killed and
// started again, which thus handles them at once rather than after
// ClaimMinIdle. Give each process a stable Subscription.Consumer name (a
// pod name, a host name) to profit from it. Then the receiver takes over,
// with XAUTOCLAIM, the entries that have been delivered but not
// acknowledged for StreamsOptions.ClaimMinIdle (their consumer died or is
// stuck, or they were nacked), and reads new ones with XREADGROUP. Ack is
// XACK. Nack keeps the entry where it is and makes it claimable after the
// Nack delay (XCLAIM with IDLE), so it is redelivered to the same group
// only, with the same ID and a higher delivery count. Closing a receiver
// makes its unacknowledged entries claimable at once.
//
// # Extending
//
// A receiver implements [mbdriver.Extender] (Streams declares Extend):
// the consumer runtime calls Extend, every ExtendInterval (a third of
// ClaimMinIdle), for the messages it holds, so that a handler slower than
// ClaimMinIdle keeps its entry instead of seeing it taken over, and
// handled a second time, by another consumer. Extend resets the idle time
// of the entries with XCLAIM to their own consumer with JUSTID, which
// does not raise their delivery count: Message.Attempt counts deliveries,
// not extensions. XCLAIM alone would also take back an entry that another
// consumer has taken over meanwhile (after a late extension), so a Lua
// script checks each entry's consumer (XPENDING) and claims only those
// still with the receiver's, atomically. An entry acked, nacked or closed
// by the receiver is not extended either, also when Extend is called
// concurrently with Ack, Nack or Close. The limits:
//
//   - An extension that comes after another consumer took the entry over
//     is skipped, and the entry is then handled twice (which is what an
//     inbox is for): ExtendInterval leaves two thirds of ClaimMinIdle for
//     a late extension.
//   - Ownership is by consumer name: two live receivers with the same
//     Subscription.Consumer cannot be told apart (the name must be unique
//     among the live receivers of a group).
//   - The client's user must be allowed to run scripts (EVALSHA and EVAL);
//     without, Extend returns the server's error.
//   - Nack, which also claims the entry for its own consumer (with an
//     idle time that makes it claimable after the delay), does not check
//     the owner: a Nack that comes after the entry was taken over makes it
//     claimable again.
//
// # Pruning
//
// A consumer name stays in its group until it is deleted, so generated
// names (see Streams.Subscribe) of processes that were killed, and the
// names of replicas that are gone, pile up. Receivers delete them: at
// their first Receive and then every StreamsOptions.PruneConsumersAfter
// (an hour by default), a receiver deletes the consumers of its group
// that hold no pending entries and have been idle (no read, no claim) for
// PruneConsumersAfter. The look (XINFO CONSUMERS) and the deletion
// (XGROUP DELCONSUMER) run in one Lua script, atomically, because deleting
// a consumer deletes its pending entries from the group: a consumer that
// holds entries is never deleted, however long it has been idle. Deleting
// a consumer that is still running does no harm either: Redis creates it
// again at its next read. Pruning is best effort; when it fails (for
// example when the client's user may not run scripts: it needs EVALSHA
// and EVAL), Receive goes on and tries again PruneConsumersAfter later.
// A negative PruneConsumersAfter turns it off.
//
// # Pub/Sub frame
//
// Pub/Sub messages have no headers, so in [FormatFrame] (the default) a
// message travels as one binary frame: a 3-byte magic, then the
// length-prefixed ID, partition key and headers, then the body; see
// [EncodeFrame] for the exact layout. A payload that is not a frame (from
// another publisher) is received raw, with the [HeaderFrameError] header.
//
// # Diator
//
// With PubSubOptions.Format set to [FormatDiator], PubSub publishes what
// Diator's RedisMessageBroker publishes: the JSON object
// {"message_type", "message_name", "message_id", "payload"} on channel
// "<prefix>:<message_type>:<message_id>", where the topic is the prefix
// ([DiatorChannelPrefix] for a default Diator consumer), and receives such
// messages with a pattern subscription; see [FormatDiator]. Diator (0.1.2)
// only publishes; on its side, a consumer is code of its own that loads
// the payload into its event dataclasses.
//
// Diator's message_id is always its event's event_id, the first field of
// the payload. PubSub keeps it so: a payload with an "event_id" (a UUID)
// is published with it as message_id, and a payload without one gets the
// message's ID as its "event_id". So a Go event that mirrors a Diator
// event may carry its own id, or leave it to mb:
//
//	type UserJoined struct {
//		EventID        string             `json:"event_id,omitempty"` // empty: the message's id
//		EventTimestamp mbredis.DiatorTime `json:"event_timestamp"`
//		UserID         int                `json:"user_id"`
//	}
//
// Diator's event_timestamp is a Python datetime without time zone (in
// UTC), "2024-05-01T12:34:56.123456", which a time.Time does not read:
// [DiatorTime] reads and writes it.
//
// A received message's ID is its message_id, so the inbox of an mb
// consumer sees Diator's event_id.
//
// Diator's message_type ([DiatorNotificationEvent] or [DiatorECSTEvent])
// travels as the CloudEvents extension attribute "diatormessagetype"
// ([DiatorMessageTypeExtension]; header "ce-diatormessagetype"), both
// ways. A message sets it with the optional method Extensions, whose
// entries become extensions of its envelope:
//
//	func (OrderPaid) Extensions() map[string]string {
//		return map[string]string{mbredis.DiatorMessageTypeExtension: mbredis.DiatorECSTEvent}
//	}
//
// A message without it is published as PubSubOptions.DiatorMessageType
// (a notification event by default). A received message carries the
// message_type it came with in the extensions of its metadata
// (mb.Metadata.Extensions), under the same name.
//
// # Deadlines
//
// Every call honours the deadline of its context, also when Redis does not
// answer at all (a frozen or overloaded server, a network that drops
// packets): it returns an error wrapping [context.DeadlineExceeded] at the
// deadline, not when the client's ReadTimeout runs out (5 seconds by
// default, and 10 seconds more for blocking reads).
//
// go-redis clients stop at a context's deadline only with
// ContextTimeoutEnabled set in their options, which is off by default
// (a command cut short leaves its connection unusable, and go-redis then
// closes it). Setting it on the client you pass is the better choice:
// commands then stop in the client itself, which gives up their
// connection at once. Without it (or with a client type other than
// *redis.Client, *redis.ClusterClient and *redis.Ring, which mbredis does
// not know how to ask), mbredis enforces the deadline itself: it sends the
// commands of a call whose context has a deadline from a goroutine of its
// own and returns at the deadline, leaving them to finish within the
// client's timeouts, holding a connection of its pool meanwhile. Either
// way a command cut short by the deadline may still take effect: a
// message whose Publish failed may have been added, an ack applied. The
// connection of a receiver's blocking reads, which mbredis opens itself,
// always has ContextTimeoutEnabled.
//
// Only the deadline is enforced. A context cancelled without one ends a
// blocked read at once (see StreamsOptions.Block), but other commands
// return when their reply comes, or at the client's timeouts, so that what
// they did (entries delivered to the receiver) is not lost.
//
// # Errors
//
// Both drivers return the go-redis errors as they are (the portable layer
// wraps them once); IsRetryable tells the transient ones: network errors,
// EOF, timeouts, and the LOADING, CLUSTERDOWN, TRYAGAIN, READONLY,
// MASTERDOWN, MOVED, ASK and BUSY replies. go-redis reconnects by itself,
// so after a Redis restart the next calls succeed again.
package mbredis
