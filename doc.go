// Package mb is a typed, in-process message bus for the CQRS pattern:
// commands with exactly one handler and a typed result, queries and
// streaming queries, and events with any number of handlers, tied together
// by a unit of work that dispatches events only after the work commits.
//
// The root package depends on the standard library only. Adapters for
// brokers live in their own modules (mbredis for Redis; mbproto is a
// protobuf codec); an in-memory transport is in [github.com/mb-go/mb/mbmem]
// and test helpers are in [github.com/mb-go/mb/mbtest].
//
// # Messages
//
// Messages are plain struct values. A message type may have these optional
// methods:
//
//   - MessageName() string: its stable name, used in logs and, for
//     anything that is stored or crosses a process, on the wire. Without
//     it the Go type name is used in process.
//   - DedupKey() string: events of one type with the same key are
//     dispatched once per cascade (see below).
//   - Validate() error: checked by the [Validate] middleware.
//   - DispatchOnRollback() bool: an event for which it returns true is
//     dispatched even when the unit of work that emitted it rolls back
//     (an audit entry, a failed-login counter); other events are
//     discarded then.
//   - PartitionKey() string: messages with the same key are delivered in
//     order across processes.
//   - Extensions() map[string]string: CloudEvents extension attributes
//     the message carries across processes (such as the message type a
//     peer library expects); consumers see them in [Metadata].Extensions.
//
// # Commands
//
// A command changes state and has exactly one handler, registered with
// [HandleCommand] (or [HandleCommandNoResult] when it returns nothing):
//
//	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) { ... })
//	user, err := mb.Send[User](ctx, bus, CreateUser{Username: "me"})
//
// [Send] runs the handler in a unit of work and returns its result; [Exec]
// discards it. A second registration for the same command type panics with
// an error wrapping [ErrDuplicateHandler], like [net/http.ServeMux] does;
// the ...Safely variants return the error instead. Sending a command with
// no handler returns an error wrapping [ErrNoHandler]; asking for a result
// type the handler cannot produce returns [ErrResultType] without running
// it.
//
// # Queries
//
// A query reads state: [HandleQuery] and [Query] work like commands but
// without a unit of work, so a query handler cannot emit events ([Emit]
// returns [ErrNoUnitOfWork]). [HandleStream] and [Stream] serve results as
// an [iter.Seq2] of values and errors.
//
// # Events
//
// An event records that something happened. [Subscribe] registers a handler
// for one event type; subscribing to an interface type receives every event
// whose type implements it, and subscribing to any receives all events.
// Handlers run by ascending [WithPriority] (0 by default); among equal
// priorities, those of the event's own type run first, then those
// subscribed to an interface, then those subscribed to any (the order of a
// class before its base classes), each in registration order. A function
// subscribed twice runs once; two different handlers that one event
// reaches must have different names. An event with no handler is fine.
//
// Inside a command or event handler, [Emit] records events in the current
// unit of work; [Publish] dispatches events from outside any handler.
//
// # Unit of work
//
// [Send] from outside a handler opens a unit of work and puts it in the
// handler's context. Its phases, in order:
//
//  1. the handler runs (through its middleware);
//  2. prepare: hooks registered with [BeforeCommit] run, inside the
//     transaction;
//  3. commit: the transaction, if one began, commits;
//  4. after commit: the events the unit recorded are dispatched, then the
//     hooks registered with [AfterCommit] run.
//
// A failure or panic before the commit rolls everything back: the
// transaction is rolled back, the events are discarded (but for those whose
// DispatchOnRollback method returns true, which are dispatched in emission
// order) and Send returns the original error (a panic becomes an error
// wrapping [ErrPanic]).
//
// A Send from inside a handler joins the unit of work of that handler. If
// the inner handler fails, only what it recorded is discarded (and, with a
// transaction that implements [Savepointer], its writes are rolled back to a
// savepoint); the outer handler decides what to do with the error. All
// events are dispatched once, after the outermost unit commits, in the order
// they were first emitted.
//
// Once the outermost unit has committed, its events are dispatched whatever
// happens to the caller's context afterwards: handlers get a context that
// keeps its values but not its cancellation or deadline.
// [Options.EventTimeout] bounds each event handler instead.
//
// Events are dispatched first-in first-out. Each event handler runs in its
// own unit of work (its own transaction), so the events it emits join the
// end of the queue: cascades are breadth-first. A cascade deeper than
// [Options.MaxCascadeDepth] stops there and is reported with
// [ErrCascadeLimit]. Events with the same type and DedupKey are dispatched
// once per cascade, at the position of the first.
//
// An event handler's error never undoes the committed command and never
// fails Send: the other handlers still run and the error goes to
// [Options.ErrorHandler] (by default logged with log/slog) as a
// *[HandlerError]. Events that must not be lost go through a transactional
// outbox, which retries.
//
// # Transactions
//
// With [Options.Transactor] set, each unit of work has a database
// transaction, begun the first time one of its handlers (or a
// before-commit hook) asks for it with [TxFrom] or an adapter's typed
// accessor. A unit that never asks begins none, so event handlers that do
// not touch the database cost it nothing. The transaction commits and
// rolls back with its unit. Nested units share it through savepoints
// ([Savepointer]), set when the nested unit opens, or when the transaction
// begins inside it. A transaction that cannot begin fails its unit.
// Databases abort whole transactions on serialization failures and
// deadlocks; [Options.ConflictRetry] then runs the outermost unit again
// from the start in a fresh transaction.
//
// # Middleware
//
// [Middleware] has the shape of net/http middleware, func(next [Handler])
// [Handler], and wraps every command, query, stream query and event handler
// alike; the [Message] it receives tells the kind, name, handler and
// identity of what is being handled. Bus-wide middleware comes from
// [Options.Middleware] and [Bus.Use]; [WithMiddleware] adds middleware to
// one handler. Built in: [Recover], [Timeout], [Retry] (with backoff and
// jitter, for errors marked with [Retryable]), [Validate] and [Logging].
//
// # Metadata
//
// Every message has an id (a UUIDv7 made by [NewID] on first use), a
// correlation id (the root of the business flow) and a causation id (the id
// of the message whose handler sent or emitted it). Handlers read them with
// [MetadataFrom]; [WithCorrelationID] seeds the correlation id from, say, an
// incoming request.
//
// # Modules
//
// A package exposes its handlers as one [Module], a func(*Bus) error, and a
// program installs it with [Bus.Install].
//
// # Crossing processes
//
// Events that must reach other services travel as CloudEvents 1.0
// [Envelope]s. A [Registry] maps stable wire names (the MessageName method,
// required here) to Go types, so only registered types are ever decoded; a
// [Codec] (JSON by default; the mbproto module has a protobuf one, and a
// consumer may read several formats with ConsumerOptions.Codecs) encodes
// the payload. A [Publisher] sends events
// to a transport, carrying the correlation and causation ids of the context
// it is called in; a [Consumer] receives them with a consumer group,
// decodes them and runs the bus's handlers through the same middleware,
// acknowledging only after success, retrying with backoff, moving poison
// messages to a dead-letter topic with the error attached, keeping
// per-partition-key order, consulting an [Inbox] so a redelivered message
// has no second effect, and draining on shutdown.
//
// Three functions are called Publish, one per layer. [Publish] dispatches
// events to this bus's handlers, in process (and inside a handler it is
// [Emit]). [Publisher.Publish] encodes events as envelopes and sends them
// to a broker, for the handlers of other processes, which receive them
// through a [Consumer]. The Publish method of an [mbdriver.Publisher] is
// the driver's: it moves already encoded messages and is called by
// Publisher and Consumer, not by applications.
//
// Tracing plugs in at two hooks: [PublisherOptions.OnPublish] sees each
// outgoing envelope with the publishing context (to write the
// traceparent), and [ConsumerOptions.OnReceive] sees each incoming one
// before its handlers run, returns their context (to start a span from
// the traceparent) and hears how the delivery ended.
//
// Transports implement the small interfaces of package
// [github.com/mb-go/mb/mbdriver] and pass the conformance suite in
// [github.com/mb-go/mb/mbdrivertest]; [github.com/mb-go/mb/mbmem] is an
// in-memory one, and the mbredis module provides Redis Streams and Redis
// Pub/Sub.
//
// A consumer group that does not exist yet is created when the Consumer
// first subscribes, by default at the end of the topic: events published
// before the service first ran are not handled. Set ConsumerOptions.Start
// to [mbdriver.StartOldest] to start a new group at the oldest event the
// broker retains instead (drivers that declare Capabilities.Replay, such
// as Redis Streams and mbmem); an existing group always resumes where it
// left off.
//
// # Outbox and relay
//
// A [Publisher] sends events when it is called, so an event published by a
// handler is sent even if the unit later rolls back, and lost if the
// process dies after the commit but before the publish. A transactional
// [Outbox] closes both gaps: it stores events in the unit's own
// transaction, before the commit, so that they exist exactly when the
// business data does, and a [Relay] publishes them afterwards, at least
// once. The store is the database adapter's (mbsql for database/sql,
// mbpgx for pgx; mbmem's in-memory one for tests):
//
//	ob, err := mb.NewOutbox(store, reg, nil)
//	bus := mb.New(&mb.Options{Transactor: tr, Forward: ob})
//	relay, err := mb.NewRelay(store, redisStreams, &mb.RelayOptions{Outbox: ob})
//	go relay.Run(ctx)
//
// With [Options.Forward] set to the Outbox, every event a unit emits whose
// type the registry knows is stored with the identity it has in process;
// [Outbox.Publish] stores the events given, and [Outbox.PublishAt] (or
// [EmitAt], through the bus's outbox) holds them until a given time:
// delayed and scheduled messages. Setting a
// Publisher as Options.Forward instead publishes them right after the
// commit: one line to change, for the events that may be lost.
//
// Many relays may share a store, in one process or several: the store's
// leases give each message to one relay at a time and keep the write
// order of messages with the same partition key. A relay retries a
// message the transport refuses, holding back only the later messages of
// its key, and parks it after [RelayOptions.MaxAttempts]; an outage of the
// transport counts no attempt. A [LocalDelivery] given to a relay
// delivers to the bus's own handlers instead of a broker: durable,
// retried in-process event handlers with no broker at all, exactly once
// each with an [Inbox] in the same database.
//
// # Configuration
//
// Every package of mb is configured the same way:
//
//   - A constructor takes its required arguments and a pointer to an
//     options struct named after what it configures ([Options] for the
//     bus, [RegistryOptions], [PublisherOptions], [ConsumerOptions],
//     [RetryOptions]; adapters' Options and StreamsOptions likewise). Nil
//     means the defaults, zero fields take the documented defaults, and
//     the constructor keeps a copy: changing the struct afterwards has no
//     effect. [New] and [NewRegistry] take the pointer variadically, so
//     that mb.New() needs none.
//   - Each options type has a Validate method that returns every problem
//     at once, joined, each wrapping [ErrInvalidArgument] and naming the
//     field and the fix.
//   - Constructors that return an error return those problems (with the
//     ones that depend on the other arguments, such as what a driver can
//     honour). The set-up functions that have no error result ([New],
//     [NewRegistry], [Retry], [Timeout], the registrations without Safely)
//     panic with it instead: they run at start-up, where such a mistake is
//     a bug. Call Validate, or the ...Safely variant, to get the error.
//   - Options of one handler are [HandlerOption] values ([WithName],
//     [WithMiddleware], [WithPriority], [WithPooledContext]) given to its
//     registration.
//   - Every wait between tries is a [Backoff].
//
// # Pooled contexts
//
// The context a handler runs with is allocated for its call, because a
// handler may keep it: a context kept past the call must not reach the
// unit of work of any other. That allocation is most of what a [Send]
// whose handler records nothing costs, and it is garbage for the
// collector. A command or query handler that promises not to keep its
// context, nor let a goroutine use it after returning, can say so with
// [WithPooledContext]: it then runs with a context reused from call to
// call, and such a Send or [Query] allocates nothing. A context kept
// anyway is safe but dead: it reports itself cancelled, carries no values
// and reaches no unit of work, its own or a later call's. A handler that
// emits events, begins a transaction or reads its metadata allocates its
// call's bookkeeping on first use, as without the option.
//
// # Concurrency
//
// A [Bus] is safe for concurrent use. Dispatch reads an immutable snapshot
// of the registrations and takes no lock shared between goroutines; what
// parallel sends share is the garbage collector, which collects a frame
// per Send, and none with [WithPooledContext]. Handlers of one event run
// one after another unless [Options.EventConcurrency] allows more. There
// is no package-level state: buses are independent.
package mb
