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
// A receiver first takes over, with XAUTOCLAIM, the entries that have been
// delivered but not acknowledged for StreamsOptions.ClaimMinIdle (their
// consumer died or is stuck, or they were nacked), then reads new ones
// with XREADGROUP. Ack is XACK. Nack keeps the entry where it is and makes
// it claimable after the Nack delay (XCLAIM with IDLE), so it is
// redelivered to the same group only, with the same ID and a higher
// delivery count. Closing a receiver makes its unacknowledged entries
// claimable at once.
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
// messages with a pattern subscription; see [FormatDiator].
//
// # Errors
//
// Both drivers return the go-redis errors as they are (the portable layer
// wraps them once); IsRetryable tells the transient ones: network errors,
// EOF, timeouts, and the LOADING, CLUSTERDOWN, TRYAGAIN, READONLY,
// MASTERDOWN, MOVED, ASK and BUSY replies. go-redis reconnects by itself,
// so after a Redis restart the next calls succeed again.
package mbredis
