package mbredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/redis/go-redis/v9"
)

// Stream entry fields. A message is one stream entry: its ID in field
// "id", its body in "body", its partition key (when set) in "pk", and each
// header in a field named "h:" followed by the header name. Field values
// are Redis strings and hold any bytes.
const (
	fieldID           = "id"
	fieldBody         = "body"
	fieldPartitionKey = "pk"
	fieldHeaderPrefix = "h:"
)

// Defaults of [StreamsOptions].
const (
	DefaultBlock               = time.Second
	DefaultClaimMinIdle        = 30 * time.Second
	DefaultPruneConsumersAfter = time.Hour
)

// closeTimeout bounds the Redis commands a Receiver's Close sends.
const closeTimeout = 2 * time.Second

// StreamsOptions configures [NewStreams]. The zero value (or nil) means the
// defaults.
type StreamsOptions struct {
	// KeyPrefix is put before every topic to make the stream key: the
	// stream of topic "orders" is KeyPrefix+"orders". Empty by default.
	KeyPrefix string

	// Block is the longest one XREADGROUP call waits for new entries
	// (default [DefaultBlock]). With a *redis.Client, each receiver reads
	// on a connection of its own (opened with the client's options, outside
	// its pool, so that receivers never take connections from acks and
	// publishes; hooks added to the client do not see these reads), and
	// Close or the cancellation of
	// Receive's context ends the wait at once (CLIENT UNBLOCK). With other
	// clients (cluster, ring), or a server that refuses CLIENT ID, reads
	// go through the pool and are not interrupted: Block then also bounds
	// how late Receive notices that its context was cancelled and how long
	// Close waits for a Receive in progress. A context deadline is always
	// honoured. Must not be negative.
	Block time.Duration

	// ClaimMinIdle is how long an entry stays delivered but unacknowledged
	// before another consumer of the group may take it over with
	// XAUTOCLAIM (default [DefaultClaimMinIdle]). A receiver's consumer
	// keeps the entries it is still handling by extending them every
	// ClaimMinIdle/3 (the consumer runtime of package mb does; see
	// Extending in the package documentation); entries that are not
	// extended must be acknowledged within ClaimMinIdle, or they are
	// delivered a second time while still being handled. It is also the
	// longest delay Nack honours. Must not be negative.
	ClaimMinIdle time.Duration

	// MaxLen, when positive, trims every stream to about that many entries
	// on each XADD ("MAXLEN ~"). Trimming removes the oldest entries
	// whether or not every group has read or acknowledged them, so it must
	// be large enough for the slowest group. Zero (the default) never
	// trims. Must not be negative.
	MaxLen int64

	// PruneConsumersAfter is how long a consumer of a group must have been
	// idle, with no pending entries, before a receiver of the group deletes
	// it (XGROUP DELCONSUMER), so that the names of consumers that are gone
	// (generated names of processes that were killed, names of scaled-down
	// replicas) do not pile up in the group (default
	// [DefaultPruneConsumersAfter]). A negative value turns pruning off. See
	// Pruning in the package documentation.
	PruneConsumersAfter time.Duration
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument] and naming the field and the fix. [NewStreams]
// returns them.
func (o *StreamsOptions) Validate() error {
	_, err := o.withDefaults()
	return err
}

func (o *StreamsOptions) withDefaults() (StreamsOptions, error) {
	var r StreamsOptions
	if o != nil {
		r = *o
	}
	var errs []error
	if r.Block < 0 {
		errs = append(errs, invalid("StreamsOptions.Block is %v; use a positive duration, or 0 for the default %v", r.Block, DefaultBlock))
	}
	if r.ClaimMinIdle < 0 {
		errs = append(errs, invalid("StreamsOptions.ClaimMinIdle is %v; use a positive duration, or 0 for the default %v", r.ClaimMinIdle, DefaultClaimMinIdle))
	}
	if r.MaxLen < 0 {
		errs = append(errs, invalid("StreamsOptions.MaxLen is %d; use a positive length, or 0 not to trim", r.MaxLen))
	}
	if r.Block == 0 {
		r.Block = DefaultBlock
	}
	if r.Block < time.Millisecond {
		r.Block = time.Millisecond
	}
	if r.ClaimMinIdle == 0 {
		r.ClaimMinIdle = DefaultClaimMinIdle
	}
	if r.PruneConsumersAfter == 0 {
		r.PruneConsumersAfter = DefaultPruneConsumersAfter
	}
	return r, errors.Join(errs...)
}

// Streams is an [mbdriver.Driver] over Redis Streams: a topic is a stream,
// a Subscription's Group is a consumer group, a message is a stream entry.
//
// Delivery is at least once. Subscribe creates the group (XGROUP CREATE
// MKSTREAM) if it does not exist: at "$" with [mbdriver.StartNew], so that
// it receives the entries added after it was first created, or at "0"
// with [mbdriver.StartOldest], so that it also receives those the stream
// still holds from before (all of them, or about the last MaxLen when
// MaxLen is set); either way also while none of its receivers runs. An
// existing group keeps its position. A new receiver's Receive first returns
// the entries still pending for its consumer name (of an earlier receiver
// of that name that stopped without acknowledging them). Then Receive
// returns the entries the receiver took over with XAUTOCLAIM (those idle
// for ClaimMinIdle: of a consumer that died, or nacked) before new ones
// read with XREADGROUP; Ack is XACK.
//
// Nack does not copy the entry: it resets the entry's idle time with
// XCLAIM ... IDLE so that it becomes claimable after the Nack delay (at
// most ClaimMinIdle), and the next Receive of any consumer of the group
// takes it over. The entry keeps its ID, so it is redelivered to this
// group only, and its Redis delivery count, which is reported as
// Message.Attempt.
//
// Streams declares Persistent, ConsumerGroups, Redelivery, Replay and
// Extend (its receivers implement [mbdriver.Extender]). It does not
// declare OrderingPerKey: consumers of a group compete for entries without
// regard to their partition key, and a redelivered entry comes after
// entries added later. It does not declare DelayedDelivery (a Nack delay is
// honoured only up to ClaimMinIdle), DeadLetter or Patterns.
//
// A Streams is safe for concurrent use. It does not own the client: Close
// closes the receivers it opened but leaves the client open.
type Streams struct {
	client redis.UniversalClient
	opts   StreamsOptions
	stops  bool // client stops at context deadlines itself

	mu        sync.Mutex
	closed    bool
	receivers map[*streamReceiver]struct{}
}

var (
	_ mbdriver.Driver   = (*Streams)(nil)
	_ mbdriver.Extender = (*streamReceiver)(nil)
)

// NewStreams returns a Streams driver over client with opts (nil means the
// defaults). It returns an error naming every invalid option. It reads
// once whether client has ContextTimeoutEnabled: see Deadlines in the
// package documentation.
func NewStreams(client redis.UniversalClient, opts *StreamsOptions) (*Streams, error) {
	o, err := opts.withDefaults()
	if client == nil {
		err = errors.Join(invalid("NewStreams: client is nil; pass a *redis.Client, *redis.ClusterClient or other redis.UniversalClient"), err)
	}
	if err != nil {
		return nil, err
	}
	return &Streams{client: client, opts: o, stops: stopsAtDeadline(client), receivers: make(map[*streamReceiver]struct{})}, nil
}

// Capabilities returns Persistent, ConsumerGroups, Redelivery, Replay and
// Extend.
func (s *Streams) Capabilities() mbdriver.Capabilities {
	return mbdriver.Capabilities{Persistent: true, ConsumerGroups: true, Redelivery: true, Replay: true, Extend: true}
}

// IsRetryable reports whether err is transient: a network error, EOF, a
// timeout, a pool timeout, or a LOADING, CLUSTERDOWN, TRYAGAIN, READONLY,
// MASTERDOWN, MOVED, ASK, BUSY or max-clients reply.
func (s *Streams) IsRetryable(err error) bool { return isRetryable(err) }

// As sets i to the client if i is a *redis.UniversalClient, or a
// **redis.Client, **redis.ClusterClient or **redis.Ring of the client's
// concrete type.
func (s *Streams) As(i any) bool { return asClient(s.client, i) }

func (s *Streams) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Publish adds msgs to the stream of topic, in order, with one XADD each,
// all sent in one pipeline (one round trip). Each entry holds the message's
// ID, Body, PartitionKey and Headers (see the package documentation).
// With MaxLen set, each XADD trims the stream approximately. On error some
// of msgs may have been added.
func (s *Streams) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if s.isClosed() {
		return mbdriver.ErrClosed
	}
	if topic == "" {
		return errors.New("mbredis: Publish: topic is empty")
	}
	for i, m := range msgs {
		if m == nil {
			return fmt.Errorf("mbredis: Publish: message %d is nil", i)
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return withinErr(ctx, s.stops, func() error { return s.publish(ctx, s.opts.KeyPrefix+topic, msgs) })
}

func (s *Streams) publish(ctx context.Context, key string, msgs []*mbdriver.Message) error {
	var boxes valueBoxes
	if len(msgs) == 1 {
		return s.client.XAdd(ctx, s.xaddArgs(key, msgs[0], &boxes)).Err()
	}
	_, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range msgs {
			p.XAdd(ctx, s.xaddArgs(key, m, &boxes))
		}
		return nil
	})
	return err
}

// commonHeaders are the headers mb writes on most messages. Their entry
// field names are boxed once (commonHeaderFields), and their values are
// boxed once per batch when consecutive messages share them (valueBoxes).
var commonHeaders = [...]string{
	"ce-id", "ce-source", "ce-specversion", "ce-type", "ce-time", "ce-subject",
	"ce-dataschema", "ce-correlationid", "ce-causationid", "ce-traceparent",
	"ce-tracestate", "ce-partitionkey", "content-type",
}

// commonHeaderFields maps each of commonHeaders to its index and its entry
// field name, already boxed. Read-only after package initialisation.
var commonHeaderFields = func() map[string]commonHeader {
	m := make(map[string]commonHeader, len(commonHeaders))
	for i, h := range commonHeaders {
		m[h] = commonHeader{i, fieldHeaderPrefix + h}
	}
	return m
}()

type commonHeader struct {
	index int
	field any
}

// valueBoxes keeps, for each of commonHeaders, the last value written in
// a batch, boxed: the source, type, spec version and content type of a
// batch are usually the same for every message, and boxing a string
// allocates.
type valueBoxes [len(commonHeaders)]any

// box returns v boxed, reusing the box of the previous message's value of
// header i when it is the same string.
func (b *valueBoxes) box(i int, v string) any {
	if prev, ok := b[i].(string); ok && prev == v {
		return b[i]
	}
	b[i] = v
	return b[i]
}

func (s *Streams) xaddArgs(key string, m *mbdriver.Message, boxes *valueBoxes) *redis.XAddArgs {
	id := any(m.ID) // boxed once: ce-id, often ce-correlationid, repeat it
	values := make([]any, 0, 6+2*len(m.Headers))
	values = append(values, fieldID, id, fieldBody, m.Body)
	if m.PartitionKey != "" {
		values = append(values, fieldPartitionKey, m.PartitionKey)
	}
	// Field order within an entry carries no meaning; no sorting.
	for k, v := range m.Headers {
		if h, ok := commonHeaderFields[k]; ok {
			if v == m.ID {
				values = append(values, h.field, id)
			} else {
				values = append(values, h.field, boxes.box(h.index, v))
			}
		} else {
			values = append(values, fieldHeaderPrefix+k, v)
		}
	}
	a := &redis.XAddArgs{Stream: key, Values: values}
	if s.opts.MaxLen > 0 {
		a.MaxLen = s.opts.MaxLen
		a.Approx = true
	}
	return a
}

// Subscribe creates sub.Group on the stream of sub.Topic if it does not
// exist yet (XGROUP CREATE MKSTREAM, BUSYGROUP ignored), at "$" for
// sub.Start [mbdriver.StartNew] and at "0" for [mbdriver.StartOldest], and
// returns a receiver for it. An existing group is left where it is,
// whatever sub.Start. sub.Group is required; sub.Pattern is not
// supported. A receiver whose sub.Consumer is the name of an earlier one
// starts with the entries still pending for that name (see Receive). When
// sub.Consumer is empty, a consumer name "<hostname>-<pid>-<random>" is
// generated; such a consumer is removed from the group by Close when it
// has no pending entries left.
func (s *Streams) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	if s.isClosed() {
		return nil, mbdriver.ErrClosed
	}
	var errs []error
	if sub.Topic == "" {
		errs = append(errs, errors.New("mbredis: Subscribe: Subscription.Topic is empty; set the stream name"))
	}
	if sub.Pattern {
		errs = append(errs, errors.New("mbredis: Subscribe: Streams does not support pattern subscriptions (Capabilities.Patterns is false); subscribe to each stream"))
	}
	if sub.Group == "" {
		errs = append(errs, errors.New("mbredis: Subscribe: Subscription.Group is empty; Redis Streams consumers need a consumer group"))
	}
	var start string
	switch sub.Start {
	case mbdriver.StartNew:
		start = "$"
	case mbdriver.StartOldest:
		start = "0"
	default:
		errs = append(errs, fmt.Errorf("mbredis: Subscribe: Subscription.Start is %v; use mbdriver.StartNew or mbdriver.StartOldest", sub.Start))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r := &streamReceiver{
		d:        s,
		key:      s.opts.KeyPrefix + sub.Topic,
		topic:    sub.Topic,
		group:    sub.Group,
		consumer: sub.Consumer,
		cursor:   "0-0",
		backlog:  "0",
		closed:   make(chan struct{}),
		idle:     make(chan struct{}, 1),
	}
	if r.consumer == "" {
		r.consumer = generateConsumerName()
		r.generated = true
	}
	if err := r.createGroup(ctx, start); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, mbdriver.ErrClosed
	}
	s.receivers[r] = struct{}{}
	return r, nil
}

// Close closes the receivers opened by s (see the Receiver's Close) and
// makes Publish and Subscribe return [mbdriver.ErrClosed]. It does not
// close the client. Close is idempotent.
func (s *Streams) Close() error {
	s.mu.Lock()
	s.closed = true
	rs := slices.Collect(maps.Keys(s.receivers))
	s.mu.Unlock()
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.Close())
	}
	return errors.Join(errs...)
}

func (s *Streams) forget(r *streamReceiver) {
	s.mu.Lock()
	delete(s.receivers, r)
	s.mu.Unlock()
}

func generateConsumerName() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])
}

// streamReceiver is the Receiver of Streams.
type streamReceiver struct {
	d         *Streams
	key       string
	topic     string
	group     string
	consumer  string
	generated bool

	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error

	// recvMu is held by Receive and by Close, so that Close runs after
	// the Receive in progress.
	recvMu sync.Mutex
	// conn is the receiver's own connection for blocking reads, connID its
	// CLIENT ID; noConn says blocking reads use the pool. Guarded by
	// recvMu. blockedID is connID while a blocking read is in progress,
	// for unblock.
	side      *redis.Client // the client conn comes from, opened on first use
	conn      *redis.Conn
	connID    int64
	noConn    bool
	blockedID atomic.Int64
	// backlog is the ID after which the consumer's own pending entries
	// are read next, "" once none is left. Guarded by recvMu.
	backlog string
	// nextPrune is when Receive next deletes the group's idle consumers
	// (zero: at the first call). Guarded by recvMu.
	nextPrune time.Time

	// idle is a lock (a one-slot semaphore, so that waiting for it
	// honours a context) that orders the commands that change the idle
	// time of the consumer's entries (Extend, Nack, Close): an extension
	// cannot land after, and undo, a Nack or Close sent after it.
	idle chan struct{}
	// held are the IDs of the entries this receiver returned and that were
	// not acked or nacked since: those Extend extends. Guarded by heldMu,
	// which is never held during a command.
	heldMu sync.Mutex
	held   map[string]struct{}

	// mu guards the XAUTOCLAIM schedule, which Nack changes.
	mu          sync.Mutex
	nextClaim   time.Time // zero: claim at the first Receive
	cursor      string    // XAUTOCLAIM start
	resetCursor bool      // a Nack happened while claiming
}

func (r *streamReceiver) createGroup(ctx context.Context, start string) error {
	err := withinErr(ctx, r.d.stops, func() error {
		return r.d.client.XGroupCreateMkStream(ctx, r.key, r.group, start).Err()
	})
	if redis.HasErrorPrefix(err, "BUSYGROUP") {
		return nil
	}
	return err
}

func (r *streamReceiver) isClosed() bool {
	select {
	case <-r.closed:
		return true
	default:
		return false
	}
}

// claimInterval is how often a receiver looks for entries to take over.
func (r *streamReceiver) claimInterval() time.Duration {
	return max(r.d.opts.ClaimMinIdle/2, 10*time.Millisecond)
}

// Receive returns up to max entries. The first calls return the entries
// still pending for the receiver's consumer name, delivered to an earlier
// receiver of that name that stopped without acknowledging them (a process
// restarted after a crash), read with XREADGROUP from ID 0 on, until none
// is left. Then it returns first the entries it takes over with
// XAUTOCLAIM (looked for at the first call, every ClaimMinIdle/2, and when
// a Nack delay ends), then new ones read with XREADGROUP BLOCK. A group
// that disappeared (the stream was deleted, or the server lost its data)
// is created again from the start of the stream. Cancelling ctx, or
// Close, ends a blocked read at once with a *redis.Client, within Block
// with other clients (see StreamsOptions.Block). The first call, and one
// every PruneConsumersAfter, also deletes the group's idle consumers
// without pending entries (see Pruning in the package documentation).
func (r *streamReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	msgs, err := r.receive(ctx, max)
	r.hold(msgs)
	return msgs, err
}

// receive is Receive but for keeping track of the messages held.
func (r *streamReceiver) receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	if max < 1 {
		return nil, fmt.Errorf("mbredis: Receive: max is %d; it must be at least 1", max)
	}
	if r.isClosed() {
		return nil, mbdriver.ErrClosed
	}
	r.recvMu.Lock()
	defer r.recvMu.Unlock()
	for {
		if r.isClosed() {
			return nil, mbdriver.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		now := time.Now()
		if r.d.opts.PruneConsumersAfter > 0 && !now.Before(r.nextPrune) {
			r.nextPrune = now.Add(r.d.opts.PruneConsumersAfter)
			// Best effort: a failure is tried again next time.
			_ = withinErr(ctx, r.d.stops, func() error { return r.prune(ctx) })
		}
		if r.backlog != "" {
			b, err := within(ctx, r.d.stops, func() (backlog, error) { return r.readPending(ctx, r.backlog, max) })
			if err != nil {
				if err = r.regroup(ctx, err); err == nil {
					continue
				}
				return nil, err
			}
			r.backlog = b.last
			if len(b.msgs) > 0 {
				return b.msgs, nil
			}
		}
		r.mu.Lock()
		due := !now.Before(r.nextClaim)
		r.mu.Unlock()
		if due {
			msgs, err := within(ctx, r.d.stops, func() ([]*mbdriver.Message, error) { return r.claim(ctx, now, max) })
			if err != nil {
				if err = r.regroup(ctx, err); err == nil {
					continue
				}
				return nil, err
			}
			if len(msgs) > 0 {
				return msgs, nil
			}
		}
		block, ok := r.blockFor(ctx, now)
		if !ok {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-r.closed:
				return nil, mbdriver.ErrClosed
			}
		}
		res, err := r.readGroup(ctx, &redis.XReadGroupArgs{
			Group:    r.group,
			Consumer: r.consumer,
			Streams:  []string{r.key, ">"},
			Count:    int64(max),
			Block:    block,
		})
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if err = r.regroup(ctx, err); err == nil {
				continue
			}
			return nil, err
		}
		n := 0
		for _, st := range res {
			n += len(st.Messages)
		}
		msgs := r.messages(n)
		n = 0
		for _, st := range res {
			for _, xm := range st.Messages {
				r.fill(msgs[n], xm, 1)
				n++
			}
		}
		if r.isClosed() {
			// Pending now; Close releases them.
			return nil, mbdriver.ErrClosed
		}
		if len(msgs) > 0 {
			return msgs, nil
		}
	}
}

// regroup returns nil when err says that the group no longer exists and
// it was created again (from the start of the stream: what it held is
// lost), or the error Receive returns.
func (r *streamReceiver) regroup(ctx context.Context, err error) error {
	if isNoGroup(err) {
		if err = r.createGroup(ctx, "0"); err == nil {
			return nil
		}
	}
	return r.ctxErr(ctx, err)
}

// pruneScript deletes the consumers of group ARGV[1] of stream KEYS[1]
// that have no pending entries and have been idle for ARGV[2]
// milliseconds or more, and returns how many it deleted. Looking and
// deleting in one script makes it atomic: deleting a consumer deletes its
// pending entries from the group, and none can be delivered to it between
// the look and the deletion. XINFO CONSUMERS reports "idle" as the time
// since the consumer's last read or claim (Redis 7.2 and later add
// "inactive", the time since its last successful one, which is not used).
var pruneScript = redis.NewScript(`
local deleted = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
	local f = {}
	for i = 1, #c, 2 do
		f[c[i]] = c[i + 1]
	end
	if f['pending'] == 0 and f['idle'] >= tonumber(ARGV[2]) then
		redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
		deleted = deleted + 1
	end
end
return deleted
`)

// prune deletes the consumers of the group that have been idle for
// PruneConsumersAfter with no pending entries (pruneScript).
func (r *streamReceiver) prune(ctx context.Context) error {
	after := r.d.opts.PruneConsumersAfter.Milliseconds()
	return pruneScript.Run(ctx, r.d.client, []string{r.key}, r.group, after).Err()
}

// backlog is a batch of the consumer's own pending entries: the messages,
// and the ID to read from next, or "" when none was left.
type backlog struct {
	msgs []*mbdriver.Message
	last string
}

// readPending reads up to max of the entries pending for the receiver's
// consumer name with IDs after start (XREADGROUP with that ID instead of
// ">", which raises their delivery count). It does not block.
func (r *streamReceiver) readPending(ctx context.Context, start string, max int) (backlog, error) {
	res, err := r.d.client.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group:    r.group,
		Consumer: r.consumer,
		Streams:  []string{r.key, start},
		Count:    int64(max),
		Block:    -1,
	}).Result()
	if errors.Is(err, redis.Nil) {
		err = nil
	}
	if err != nil || len(res) == 0 || len(res[0].Messages) == 0 {
		return backlog{}, err
	}
	xms := res[0].Messages
	last := xms[len(xms)-1].ID
	msgs, err := r.deliver(ctx, xms)
	return backlog{msgs, last}, err
}

// readGroup runs one blocking XREADGROUP. On a *redis.Client it runs on
// the receiver's own connection (from a one-connection client with the
// same options, outside the caller's pool), whose CLIENT ID lets Close and the
// cancellation of ctx end the wait at once (CLIENT UNBLOCK from another
// connection); elsewhere (a cluster or ring client, or a server that
// refuses CLIENT ID) on the pool, and the wait ends within Block. Called
// with recvMu held.
func (r *streamReceiver) readGroup(ctx context.Context, a *redis.XReadGroupArgs) ([]redis.XStream, error) {
	conn, id := r.blockingConn(ctx)
	if conn == nil {
		return within(ctx, r.d.stops, func() ([]redis.XStream, error) { return r.d.client.XReadGroup(ctx, a).Result() })
	}
	r.blockedID.Store(id)
	stop := context.AfterFunc(ctx, r.unblock)
	defer func() {
		stop()
		r.blockedID.Store(0)
	}()
	if r.isClosed() || ctx.Err() != nil { // before the id was published: no unblock came
		return nil, redis.Nil
	}
	res, err := conn.XReadGroup(ctx, a).Result()
	if err != nil && !errors.Is(err, redis.Nil) && !redis.HasErrorPrefix(err, "NOGROUP") {
		// The connection may be broken; the next read takes a new one.
		r.dropConn()
	}
	return res, err
}

// blockingConn returns the receiver's own connection and its CLIENT ID,
// opening it on first use, or nil when blocking reads go through the
// pool. Called with recvMu held.
func (r *streamReceiver) blockingConn(ctx context.Context) (*redis.Conn, int64) {
	if r.conn != nil {
		return r.conn, r.connID
	}
	c, ok := r.d.client.(*redis.Client)
	if !ok || r.noConn {
		return nil, 0
	}
	if r.side == nil {
		// A client of its own, with the same options but one
		// connection: a receiver must not hold a connection of the
		// caller's pool for its lifetime (receivers of many topics would
		// starve acks and publishes). It stops at the deadline of
		// Receive's context whatever the caller's client does.
		o := *c.Options()
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = 1, 0, 1, 1
		o.ContextTimeoutEnabled = true
		r.side = redis.NewClient(&o)
	}
	conn := r.side.Conn()
	id, err := conn.ClientID(ctx).Result()
	if err != nil {
		_ = conn.Close()
		if redis.HasErrorPrefix(err, "NOPERM") || redis.HasErrorPrefix(err, "ERR unknown command") {
			r.noConn = true // not allowed here: use the pool from now on
		}
		return nil, 0
	}
	r.conn, r.connID = conn, id
	return conn, id
}

// dropConn closes the receiver's own connection. Called with recvMu held.
func (r *streamReceiver) dropConn() {
	if r.conn != nil {
		_ = r.conn.Close()
		r.conn, r.connID = nil, 0
	}
}

// unblock ends the blocking read in progress on the receiver's own
// connection, if there is one, as if its time had run out. The read may
// have been sent but not yet be blocked in the server (CLIENT UNBLOCK then
// finds nothing to unblock): it tries again, briefly, while that read is
// in progress.
func (r *streamReceiver) unblock() {
	id := r.blockedID.Load()
	if id == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	for range 50 {
		n, err := within(ctx, r.d.stops, func() (int64, error) { return r.d.client.ClientUnblock(ctx, id).Result() })
		if n == 1 || err != nil || r.blockedID.Load() != id {
			return
		}
		t := time.NewTimer(2 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if r.blockedID.Load() != id {
			return
		}
	}
}

// ctxErr prefers ctx's error: a read cut short by ctx's deadline fails
// with an I/O timeout, possibly a moment before ctx's own timer marks ctx
// done.
func (r *streamReceiver) ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return err
}

// blockFor returns how long the next XREADGROUP may block: at most Block,
// until the next claim, and ending before ctx's deadline (the client's read
// deadline follows it). It reports false when ctx's deadline is too close.
func (r *streamReceiver) blockFor(ctx context.Context, now time.Time) (time.Duration, bool) {
	b := r.d.opts.Block
	r.mu.Lock()
	if until := r.nextClaim.Sub(now); until < b {
		b = until
	}
	r.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		rem := dl.Sub(now)
		rem -= min(rem/5, 50*time.Millisecond)
		if rem < 2*time.Millisecond {
			return 0, false
		}
		b = min(b, rem)
	}
	// BLOCK 0 would wait forever.
	return max(b, time.Millisecond), true
}

// claim takes over up to max entries idle for ClaimMinIdle with XAUTOCLAIM
// and sets their Attempt from their delivery count.
func (r *streamReceiver) claim(ctx context.Context, now time.Time, max int) ([]*mbdriver.Message, error) {
	r.mu.Lock()
	start := r.cursor
	r.resetCursor = false
	r.mu.Unlock()
	xms, next, err := r.d.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
		Stream:   r.key,
		Group:    r.group,
		Consumer: r.consumer,
		MinIdle:  r.d.opts.ClaimMinIdle,
		Start:    start,
		Count:    int64(max),
	}).Result()
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	more := len(xms) > 0 || next != "0-0"
	switch {
	case r.resetCursor:
		// A Nack during the call scheduled the next look itself.
		r.cursor = "0-0"
		if more && now.Before(r.nextClaim) {
			r.nextClaim = now
		}
	case more:
		// More may be waiting: look again at the next Receive.
		r.cursor = next
		r.nextClaim = now
	default:
		r.cursor = next
		r.nextClaim = now.Add(r.claimInterval())
	}
	r.mu.Unlock()
	return r.deliver(ctx, xms)
}

// deliver turns entries that were just delivered to the receiver's
// consumer (read again or taken over) into messages whose Attempt is their
// delivery count, looked up with one XPENDING per entry in one pipeline.
// Entries deleted from the stream while pending (trimmed) come without
// fields: they are acknowledged and left out.
func (r *streamReceiver) deliver(ctx context.Context, xms []redis.XMessage) ([]*mbdriver.Message, error) {
	var gone []string
	live := xms[:0]
	for _, xm := range xms {
		if len(xm.Values) == 0 {
			// Deleted (trimmed) while pending; Redis before 7 still
			// returns it.
			gone = append(gone, xm.ID)
			continue
		}
		live = append(live, xm)
	}
	if len(gone) > 0 {
		if err := r.d.client.XAck(ctx, r.key, r.group, gone...).Err(); err != nil {
			return nil, err
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	cmds, err := r.d.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, xm := range live {
			p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: r.key, Group: r.group, Start: xm.ID, End: xm.ID, Count: 1})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	msgs := r.messages(len(live))
	for i, xm := range live {
		attempt := 0
		if pe, err := cmds[i].(*redis.XPendingExtCmd).Result(); err == nil && len(pe) == 1 && pe[0].ID == xm.ID {
			attempt = int(pe[0].RetryCount)
		}
		r.fill(msgs[i], xm, attempt)
	}
	return msgs, nil
}

// messages returns n new, empty Messages, allocated in one block.
func (r *streamReceiver) messages(n int) []*mbdriver.Message {
	block := make([]mbdriver.Message, n)
	msgs := make([]*mbdriver.Message, n)
	for i := range block {
		msgs[i] = &block[i]
	}
	return msgs
}

// fill turns a stream entry into the empty Message m.
func (r *streamReceiver) fill(m *mbdriver.Message, xm redis.XMessage, attempt int) {
	*m = mbdriver.Message{Topic: r.topic, Attempt: attempt, AckID: xm.ID, PublishedAt: entryTime(xm.ID)}
	for f, v := range xm.Values {
		s, _ := v.(string)
		switch {
		case f == fieldID:
			m.ID = s
		case f == fieldBody:
			m.Body = []byte(s)
		case f == fieldPartitionKey:
			m.PartitionKey = s
		case strings.HasPrefix(f, fieldHeaderPrefix):
			if m.Headers == nil {
				m.Headers = make(map[string]string, max(len(xm.Values)-2, 1)) // all but id and body
			}
			m.Headers[f[len(fieldHeaderPrefix):]] = s
		}
	}
}

// entryTime returns the time in a stream entry ID ("<ms>-<seq>").
func entryTime(id string) time.Time {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}
	}
	n, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func ackIDs(msgs []*mbdriver.Message) ([]string, error) {
	ids := make([]string, 0, len(msgs))
	for i, m := range msgs {
		if m == nil {
			return nil, fmt.Errorf("mbredis: message %d is nil", i)
		}
		id, ok := m.AckID.(string)
		if !ok || id == "" {
			return nil, fmt.Errorf("mbredis: message %d (id %q) has no stream entry ID in AckID; it was not received from this driver", i, m.ID)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// lockIdle takes the idle lock, or returns ctx's error.
func (r *streamReceiver) lockIdle(ctx context.Context) error {
	select {
	case r.idle <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *streamReceiver) unlockIdle() { <-r.idle }

// hold records msgs as held, for Extend.
func (r *streamReceiver) hold(msgs []*mbdriver.Message) {
	if len(msgs) == 0 {
		return
	}
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	if r.held == nil {
		r.held = make(map[string]struct{}, len(msgs))
	}
	for _, m := range msgs {
		r.held[m.AckID.(string)] = struct{}{}
	}
}

// settle records the entries ids as no longer held.
func (r *streamReceiver) settle(ids []string) {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	for _, id := range ids {
		delete(r.held, id)
	}
}

// stillHeld returns those of ids that are held, in a new slice.
func (r *streamReceiver) stillHeld(ids []string) []string {
	r.heldMu.Lock()
	defer r.heldMu.Unlock()
	var out []string
	for _, id := range ids {
		if _, ok := r.held[id]; ok {
			out = append(out, id)
		}
	}
	return out
}

// Ack acknowledges msgs with one XACK. It may be called after Close.
func (r *streamReceiver) Ack(ctx context.Context, msgs []*mbdriver.Message) error {
	ids, err := ackIDs(msgs)
	if err != nil || len(ids) == 0 {
		return err
	}
	r.settle(ids)
	return withinErr(ctx, r.d.stops, func() error { return r.d.client.XAck(ctx, r.key, r.group, ids...).Err() })
}

// Nack makes msgs claimable by the group's consumers after delay, capped
// at ClaimMinIdle, with one XCLAIM ... IDLE ... JUSTID, which leaves their
// delivery count as it is. It may be called after Close.
func (r *streamReceiver) Nack(ctx context.Context, msgs []*mbdriver.Message, delay time.Duration) error {
	ids, err := ackIDs(msgs)
	if err != nil || len(ids) == 0 {
		return err
	}
	delay = min(max(delay, 0), r.d.opts.ClaimMinIdle)
	if err := r.lockIdle(ctx); err != nil {
		return err
	}
	r.settle(ids)
	err = r.release(ctx, ids, r.d.opts.ClaimMinIdle-delay)
	r.unlockIdle()
	if err != nil {
		return err
	}
	// Redis counts whole milliseconds: look a little later.
	due := time.Now().Add(delay + 2*time.Millisecond)
	r.mu.Lock()
	r.resetCursor = true
	r.cursor = "0-0"
	if due.Before(r.nextClaim) {
		r.nextClaim = due
	}
	r.mu.Unlock()
	return nil
}

// release sets the idle time of the pending entries ids to idle, keeping
// them with this consumer, so that XAUTOCLAIM takes them over once they
// have been idle for ClaimMinIdle.
func (r *streamReceiver) release(ctx context.Context, ids []string, idle time.Duration) error {
	args := make([]any, 0, 8+len(ids))
	args = append(args, "XCLAIM", r.key, r.group, r.consumer, 0)
	for _, id := range ids {
		args = append(args, id)
	}
	args = append(args, "IDLE", idle.Milliseconds(), "JUSTID")
	return withinErr(ctx, r.d.stops, func() error { return r.d.client.Do(ctx, args...).Err() })
}

// extendScript restarts the idle time of those of the pending entries
// ARGV[3:] of group ARGV[1] of stream KEYS[1] that belong to consumer
// ARGV[2], without raising their delivery count (XCLAIM to their own
// consumer with JUSTID), and returns how many it extended. The owner is
// checked and the entries claimed in one script, atomically: XCLAIM alone
// would take back an entry that another consumer took over meanwhile.
var extendScript = redis.NewScript(`
local args = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
	local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
	if #p == 1 and p[1][2] == ARGV[2] then
		args[#args + 1] = ARGV[i]
	end
end
if #args == 5 then
	return 0
end
args[#args + 1] = 'JUSTID'
return #redis.call(unpack(args))
`)

// extendBatch is the most entries one extendScript call extends (Lua's
// unpack takes a few thousand values at most).
const extendBatch = 1000

// ExtendInterval implements [mbdriver.Extender]: a third of ClaimMinIdle
// (a millisecond at least).
func (r *streamReceiver) ExtendInterval() time.Duration {
	return max(r.d.opts.ClaimMinIdle/3, time.Millisecond)
}

// Extend implements [mbdriver.Extender]: it restarts the idle time of the
// entries of msgs that this receiver returned, that were not acked or
// nacked since and that are still pending for its consumer, so that no
// other consumer takes them over for another ClaimMinIdle, without raising
// their delivery count; the others are skipped. See Extending in the
// package documentation for how, and its limits. It returns ErrClosed after
// Close, and an error for a message that was not received from this
// driver.
func (r *streamReceiver) Extend(ctx context.Context, msgs []*mbdriver.Message) error {
	if r.isClosed() {
		return mbdriver.ErrClosed
	}
	ids, err := ackIDs(msgs)
	if err != nil {
		return err
	}
	if err := r.lockIdle(ctx); err != nil {
		return err
	}
	defer r.unlockIdle()
	if r.isClosed() {
		return mbdriver.ErrClosed
	}
	ids = r.stillHeld(ids)
	for len(ids) > 0 {
		batch := ids[:min(len(ids), extendBatch)]
		ids = ids[len(batch):]
		args := make([]any, 0, 2+len(batch))
		args = append(args, r.group, r.consumer)
		for _, id := range batch {
			args = append(args, id)
		}
		err := withinErr(ctx, r.d.stops, func() error {
			return extendScript.Run(ctx, r.d.client, []string{r.key}, args...).Err()
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Close stops receiving: a Receive in progress returns ErrClosed (within
// Block) and later ones too. The entries delivered to this consumer and
// not acknowledged are made claimable at once, so that the other consumers
// of the group take them over at their next look; a generated consumer
// without pending entries is deleted from the group. Ack and Nack still
// work after Close. Close is idempotent; it returns the error of that
// clean-up, if any.
func (r *streamReceiver) Close() error {
	r.closeOnce.Do(func() {
		close(r.closed)
		r.unblock()
		r.recvMu.Lock()
		defer r.recvMu.Unlock()
		defer r.d.forget(r)
		defer func() {
			r.dropConn()
			if r.side != nil {
				_ = r.side.Close()
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		// After the Extend in progress, before any other.
		if r.closeErr = r.lockIdle(ctx); r.closeErr != nil {
			return
		}
		defer r.unlockIdle()
		r.heldMu.Lock()
		r.held = nil
		r.heldMu.Unlock()
		r.closeErr = withinErr(ctx, r.d.stops, func() error { return r.releaseAll(ctx) })
	})
	return r.closeErr
}

func (r *streamReceiver) releaseAll(ctx context.Context) error {
	const page = 1000
	start := "-"
	total := 0
	for {
		pe, err := r.d.client.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: r.key, Group: r.group, Start: start, End: "+", Count: page, Consumer: r.consumer,
		}).Result()
		if isNoGroup(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(pe) == 0 {
			break
		}
		ids := make([]string, len(pe))
		for i, p := range pe {
			ids[i] = p.ID
		}
		if err := r.release(ctx, ids, r.d.opts.ClaimMinIdle); err != nil {
			return err
		}
		total += len(pe)
		if len(pe) < page {
			break
		}
		start = "(" + pe[len(pe)-1].ID
	}
	if total == 0 && r.generated {
		return r.d.client.XGroupDelConsumer(ctx, r.key, r.group, r.consumer).Err()
	}
	return nil
}
