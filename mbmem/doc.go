// Package mbmem is an in-memory transport and inbox for mb: a broker that
// lives inside the process and behaves like a real one, for tests and for
// single-process programs.
//
// # Transport
//
// [New] returns a [*Transport], an [mbdriver.Driver] that declares
// Persistent, ConsumerGroups, Redelivery, OrderingPerKey, DelayedDelivery,
// Patterns and Replay, and Extend when it has an [Options.AckTimeout] (not
// DeadLetter, not AtMostOnce) and passes the conformance suite in package
// mbdrivertest.
//
//   - Topics and groups. A group is named by its subscription (topic or
//     pattern) and its Group name, and is created by the first Subscribe.
//     A message is kept for a group until the group acked it, if the group
//     existed when it was published. Groups live as long as the broker,
//     with or without receivers ("persistent within the process").
//   - Start and retention. The broker also retains the last
//     [Options.Retain] messages of every topic (10000 by default), acked
//     or not, whether or not a group listens. A new group starts at the
//     messages published after it was created ([mbdriver.StartNew]), or,
//     subscribed with [mbdriver.StartOldest], at the retained messages of
//     its topic, or of every topic its pattern matches, in publish order.
//     An existing group keeps its position whatever the Start of a later
//     Subscribe. Retention costs memory: see [Options.Retain].
//   - Competing consumers. The receivers of one group share its messages;
//     different groups each get every message.
//   - Per-key ordering. A message with a PartitionKey is not handed out
//     while an earlier message with the same key in the same group is
//     unacked (in flight, or nacked and waiting for redelivery), so the
//     messages of one key are handled one at a time, in publish order.
//     Messages without a key are not ordered against each other.
//   - Acknowledgement. Ack removes a message from the group; Nack makes it
//     available again after its delay; a receiver closed with unacked
//     messages makes them available again at once; with
//     [Options.AckTimeout] a message not acked in time is made available
//     again (a visibility timeout). Message.Attempt counts deliveries to
//     the group, from 1.
//   - Extension. With an [Options.AckTimeout], receivers implement
//     [mbdriver.Extender]: Extend gives the messages a receiver holds from
//     their current delivery a full AckTimeout again (ExtendInterval is a
//     third of it), without counting a delivery; messages acked, nacked or
//     taken by another receiver meanwhile are skipped.
//   - Patterns. With Subscription.Pattern, Topic is a pattern of
//     dot-separated segments: "*" matches exactly one segment and ">", only
//     as the last segment, matches one or more segments (the NATS syntax):
//     "orders.*" matches "orders.created" but not "orders" nor
//     "orders.eu.created"; "orders.>" matches both "orders.created" and
//     "orders.eu.created". Other segments match literally. Received
//     messages carry the concrete topic.
//
// Receivers (the [mbdriver.Receiver] values Subscribe returns) follow the
// contract, and also:
//
//   - Receive requires max >= 1; with ctx done it returns ctx's error.
//   - Close may be called concurrently with a blocked Receive, which then
//     returns [mbdriver.ErrClosed]. Ack and Nack after Close return
//     ErrClosed (the unacked messages were already given back).
//   - Ack is idempotent and works on a message whose ack timeout expired,
//     even if it was redelivered meanwhile (the redelivery's Ack then does
//     nothing). Nack only applies to the current delivery of a message: a
//     stale Nack does nothing.
//   - Ack and Nack accept messages received by any receiver of the same
//     group, and return an error (settling nothing) for others.
//   - Received messages are copies: Headers and Body may be modified.
//
// The broker runs no goroutine: delays and ack timeouts are evaluated by
// Receive calls, which wait with a timer of their own. Nothing leaks when a
// Transport is dropped without Close.
//
// [Transport.Connect] returns another Transport over the same broker, as a
// second process connected to the same server: closing one closes only its
// own receivers.
//
// # Inbox
//
// [Inbox] is an in-memory [mb.Inbox]: it records which handlings took
// effect so that a redelivered message has no second effect, for tests
// and for programs that need no memory of it across restarts. [Claims] is
// the key store behind it.
package mbmem
