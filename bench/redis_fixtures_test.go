package bench

// The Redis benchmarks' work and one constructor per variant, shared by the
// benchmarks (redis_bench_test.go) and their honesty tests, as in
// fixtures_test.go. They need a Redis server: MB_TEST_REDIS_URL (default
// redis://127.0.0.1:6379/0). Without one they skip, or fail when
// MB_REQUIRE_SERVICES=1.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// UserCreatedWire is UserCreated as it travels between processes: mb's
// Registry needs a stable wire name (MessageName), which the in-process
// benchmarks do not.
type UserCreatedWire struct {
	Username string
	Email    string
}

// userCreatedName is the wire name of UserCreatedWire and, with mb's
// DefaultRouter, its topic (the stream key after the key prefix).
const userCreatedName = "bench.user.created"

func (UserCreatedWire) MessageName() string { return userCreatedName }

// redisSource is the CloudEvents source of the published messages.
const redisSource = "/bench"

func testWireEvent() UserCreatedWire {
	return UserCreatedWire{Username: "me", Email: "me@message.bus"}
}

// Fields of a stream entry as mbredis writes them (see mbredis/streams.go):
// the message id, the body, and one "h:"-prefixed field per header. The
// headers are those Envelope.ToHeaders gives for an event published by
// mb.Publisher outside a handler: the CloudEvents attributes it sets, in
// sorted order as mbredis writes them.
const (
	fieldID   = "id"
	fieldBody = "body"
	fieldType = "h:ce-type"
)

// redisWireFields are the field names of every entry mb writes (and the
// raw variants write the same): checked by TestRedisPublish.
var redisWireFields = []string{
	fieldID, fieldBody,
	"h:ce-correlationid", "h:ce-id", "h:ce-source", "h:ce-specversion", "h:ce-time", "h:ce-type",
	"h:content-type",
}

// redisEnv is what a Redis benchmark or test needs: a client and a key
// prefix unique to it (its keys are deleted by tb.Cleanup).
type redisEnv struct {
	client *redis.Client
	prefix string
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// redisRunPrefix isolates this process's keys.
var redisRunPrefix = "mbbench:" + randHex(4) + ":"

// newRedisEnv connects to the test Redis, or skips tb (fails it when
// MB_REQUIRE_SERVICES=1) when it is unreachable.
func newRedisEnv(tb testing.TB) *redisEnv {
	tb.Helper()
	e := &redisEnv{client: redistest.Client(tb), prefix: redisRunPrefix + randHex(4) + ":"}
	tb.Cleanup(func() {
		if err := e.deleteKeys(); err != nil {
			tb.Errorf("deleting the keys %s*: %v", e.prefix, err)
		}
	})
	return e
}

// stream is the key of the stream all variants write to and read from.
func (e *redisEnv) stream() string { return e.prefix + userCreatedName }

// keys returns the keys under the prefix.
func (e *redisEnv) keys(ctx context.Context) ([]string, error) {
	pattern := ""
	for _, c := range []byte(e.prefix) {
		switch c {
		case '*', '?', '[', ']', '\\':
			pattern += `\`
		}
		pattern += string(c)
	}
	var keys []string
	iter := e.client.Scan(ctx, 0, pattern+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

func (e *redisEnv) deleteKeys() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := e.keys(ctx)
	if err != nil || len(keys) == 0 {
		return err
	}
	return e.client.Del(ctx, keys...).Err()
}

// resetStream deletes the stream (with its groups); benchmarks call it
// between ops, with the timer stopped, so that every op writes to (or reads
// from) a fresh stream and Redis's memory does not grow.
func (e *redisEnv) resetStream(tb testing.TB) {
	if err := e.client.Del(context.Background(), e.stream()).Err(); err != nil {
		tb.Fatal(err)
	}
}

func newRedisRegistry() *mb.Registry {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: redisSource})
	mb.RegisterMessage[UserCreatedWire](reg)
	return reg
}

// newStreams returns an mbredis driver over e's client, closed by
// tb.Cleanup.
func newStreams(tb testing.TB, e *redisEnv) *mbredis.Streams {
	tb.Helper()
	// A short Block so that a consumer stops quickly once the stream is
	// drained (it does not slow reading while entries are waiting).
	s, err := mbredis.NewStreams(e.client, &mbredis.StreamsOptions{KeyPrefix: e.prefix, Block: 10 * time.Millisecond})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("closing the mbredis driver: %v", err)
		}
	})
	return s
}

// BenchmarkRedisPublish: one op publishes a batch of events to the stream.

type redisPublishFunc func(ctx context.Context) error

type redisPublishVariant struct {
	name string
	new  func(tb testing.TB, e *redisEnv, n int) redisPublishFunc
}

// newRedisPublishMB publishes the batch with one Publisher.Publish call:
// mb encodes each event (JSON payload, envelope, new id) and mbredis sends
// the batch in one pipeline.
func newRedisPublishMB(tb testing.TB, e *redisEnv, n int) redisPublishFunc {
	p, err := mb.NewPublisher(newStreams(tb, e), newRedisRegistry(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = p.Close() })
	events := make([]any, n)
	for i := range events {
		events[i] = testWireEvent()
	}
	return func(ctx context.Context) error { return p.Publish(ctx, events...) }
}

// rawEntry is the hand-written counterpart of mb's encoding: the same
// fields (redisWireFields), with a new id per event and the JSON payload.
func rawEntry(key string, ev UserCreatedWire) (*redis.XAddArgs, error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	id := mb.NewID()
	return &redis.XAddArgs{Stream: key, Values: []any{
		fieldID, id,
		fieldBody, body,
		"h:ce-correlationid", id,
		"h:ce-id", id,
		"h:ce-source", redisSource,
		"h:ce-specversion", "1.0",
		"h:ce-time", time.Now().UTC().Format(time.RFC3339Nano),
		fieldType, userCreatedName,
		"h:content-type", "application/json",
	}}, nil
}

// newRedisPublishRawPipeline sends one XADD per event, all in one
// go-redis pipeline (one round trip): what mbredis does, without mb.
func newRedisPublishRawPipeline(_ testing.TB, e *redisEnv, n int) redisPublishFunc {
	key := e.stream()
	ev := testWireEvent()
	return func(ctx context.Context) error {
		args := make([]*redis.XAddArgs, n)
		for i := range args {
			a, err := rawEntry(key, ev)
			if err != nil {
				return err
			}
			args[i] = a
		}
		_, err := e.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, a := range args {
				p.XAdd(ctx, a)
			}
			return nil
		})
		return err
	}
}

// newRedisPublishWatermill publishes the batch with one call of
// watermill-redisstream's Publisher.Publish, which sends one XADD per
// message and waits for each reply (one round trip per message). The
// payload is the same JSON; the metadata carries the message name, as
// Watermill's CQRS marshalers do.
func newRedisPublishWatermill(tb testing.TB, e *redisEnv, n int) redisPublishFunc {
	// The Publisher closes the client it is given: give it its own.
	p, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: redistest.Client(tb)}, watermill.NopLogger{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Close(); err != nil {
			tb.Errorf("closing the watermill publisher: %v", err)
		}
	})
	key := e.stream()
	ev := testWireEvent()
	return func(context.Context) error {
		msgs := make([]*message.Message, n)
		for i := range msgs {
			body, err := json.Marshal(ev)
			if err != nil {
				return err
			}
			msgs[i] = message.NewMessage(watermill.NewUUID(), body)
			msgs[i].Metadata.Set("name", userCreatedName)
		}
		return p.Publish(key, msgs...)
	}
}

// BenchmarkRedisConsume: one op consumes the m entries pre-published to
// the stream (receive, decode, handle, ack) and returns once all are
// handled.

// redisHandled counts what handleRedisUserCreated handled in the current
// op; done is closed when want events have been handled. The mb consumer
// calls the handler from several goroutines.
type redisHandled struct {
	n    atomic.Int64
	bad  atomic.Int64 // events that were not testWireEvent()
	want int64
	done chan struct{}
}

var redisCount atomic.Pointer[redisHandled]

// startRedisCount starts counting towards want handled events.
func startRedisCount(want int) *redisHandled {
	h := &redisHandled{want: int64(want), done: make(chan struct{})}
	redisCount.Store(h)
	return h
}

// handleRedisUserCreated is the handler of every consume variant.
//
//go:noinline
func handleRedisUserCreated(_ context.Context, e UserCreatedWire) error {
	h := redisCount.Load()
	if e != testWireEvent() {
		h.bad.Add(1)
	}
	if h.n.Add(1) == h.want {
		close(h.done)
	}
	return nil
}

// consumeOp is one op of BenchmarkRedisConsume. The benchmark calls setup
// with the timer stopped, then run timed: run returns once every
// pre-published entry was handled and acknowledged (as far as the variant
// knows), and then stop (untimed) releases what run started.
type consumeOp struct {
	run  func(ctx context.Context) error
	stop func() error
}

type redisConsumeVariant struct {
	name string
	// new builds the variant for ops of m entries and returns the setup
	// of one op: a stream holding m fresh entries, read by a fresh group.
	new func(tb testing.TB, e *redisEnv, m int) func() consumeOp
}

const redisConsumeBatch = 100

// consumeGroup is the consumer group of the consume ops; each op has a
// fresh stream, hence a fresh group.
const consumeGroup = "bench"

// prepareConsume (untimed) deletes the stream, creates the group at its
// start and publishes m events with mb (the format both variants read).
func prepareConsume(tb testing.TB, e *redisEnv, p *mb.Publisher, events []any) {
	tb.Helper()
	ctx := context.Background()
	e.resetStream(tb)
	if err := e.client.XGroupCreateMkStream(ctx, e.stream(), consumeGroup, "0").Err(); err != nil {
		tb.Fatal(err)
	}
	for start := 0; start < len(events); start += mb.DefaultMaxBatch {
		if err := p.Publish(ctx, events[start:min(start+mb.DefaultMaxBatch, len(events))]...); err != nil {
			tb.Fatal(err)
		}
	}
}

// redisPublisher is the publisher that fills the stream before each
// consume op.
func redisPublisher(tb testing.TB, e *redisEnv, m int) (*mb.Publisher, []any) {
	p, err := mb.NewPublisher(newStreams(tb, e), newRedisRegistry(), nil)
	if err != nil {
		tb.Fatal(err)
	}
	events := make([]any, m)
	for i := range events {
		events[i] = testWireEvent()
	}
	return p, events
}

// newRedisConsumeMB returns the mb variant: an mb.Consumer over
// mbredis.Streams (BatchSize 100 like the raw loop's COUNT, default
// Concurrency) dispatching to a Bus with one subscribed handler. Each op
// runs a new Consumer (a Consumer runs once) and ends when the driver has
// acknowledged all the entries; the Consumer is then stopped untimed.
func newRedisConsumeMB(tb testing.TB, e *redisEnv, m int) func() consumeOp {
	pub, events := redisPublisher(tb, e, m)
	streams := &ackCounting{Streams: newStreams(tb, e)}
	reg := newRedisRegistry()
	bus := newBus(&mb.Options{})
	mb.Subscribe(bus, handleRedisUserCreated)
	return func() consumeOp {
		prepareConsume(tb, e, pub, events)
		c, err := mb.NewConsumer(bus, streams, reg, &mb.ConsumerOptions{
			Topic: userCreatedName, Group: consumeGroup, BatchSize: redisConsumeBatch,
			ErrorHandler: func(context.Context, error) { mbErrors.Add(1) },
		})
		if err != nil {
			tb.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		startRedisCount(m)
		acked := &redisHandled{want: int64(m), done: make(chan struct{})}
		streams.acked.Store(acked)
		return consumeOp{
			run: func(ctx context.Context) error {
				go func() { runErr <- c.Run(runCtx) }()
				select {
				case <-acked.done:
					return nil
				case err := <-runErr:
					return fmt.Errorf("consumer stopped after %d of %d acks: %w", acked.n.Load(), m, err)
				case <-ctx.Done():
					cancel()
					return errors.Join(fmt.Errorf("%d of %d acks: %w", acked.n.Load(), m, ctx.Err()), <-runErr)
				}
			},
			stop: func() error {
				cancel()
				return <-runErr
			},
		}
	}
}

// newRedisConsumeRaw returns the raw variant: one goroutine doing
// XREADGROUP COUNT 100, decoding each entry (checking its type field,
// JSON-decoding its body), calling the handler, then one XACK for the
// batch.
func newRedisConsumeRaw(tb testing.TB, e *redisEnv, m int) func() consumeOp {
	return newRedisConsumeLoop(tb, e, m, false)
}

// newRedisConsumeRawAckEach is the raw loop acknowledging each entry with
// its own XACK once handled, as mb's Consumer does: not a target, it shows
// how much of the gap between mb and raw is the acknowledgement strategy.
func newRedisConsumeRawAckEach(tb testing.TB, e *redisEnv, m int) func() consumeOp {
	return newRedisConsumeLoop(tb, e, m, true)
}

func newRedisConsumeLoop(tb testing.TB, e *redisEnv, m int, ackEach bool) func() consumeOp {
	pub, events := redisPublisher(tb, e, m)
	key := e.stream()
	return func() consumeOp {
		prepareConsume(tb, e, pub, events)
		h := startRedisCount(m)
		return consumeOp{
			run: func(ctx context.Context) error {
				ids := make([]string, 0, redisConsumeBatch)
				for h.n.Load() < h.want {
					res, err := e.client.XReadGroup(ctx, &redis.XReadGroupArgs{
						Group: consumeGroup, Consumer: "raw", Streams: []string{key, ">"},
						Count: redisConsumeBatch, Block: 10 * time.Millisecond,
					}).Result()
					if errors.Is(err, redis.Nil) {
						continue
					}
					if err != nil {
						return err
					}
					ids = ids[:0]
					for _, st := range res {
						for _, xm := range st.Messages {
							if t, _ := xm.Values[fieldType].(string); t != userCreatedName {
								return fmt.Errorf("entry %s has type %q", xm.ID, t)
							}
							body, _ := xm.Values[fieldBody].(string)
							var ev UserCreatedWire
							if err := json.Unmarshal([]byte(body), &ev); err != nil {
								return fmt.Errorf("entry %s: %w", xm.ID, err)
							}
							if err := handleRedisUserCreated(ctx, ev); err != nil {
								return err
							}
							if ackEach {
								xackCalls.Add(1)
								if err := e.client.XAck(ctx, key, consumeGroup, xm.ID).Err(); err != nil {
									return err
								}
								continue
							}
							ids = append(ids, xm.ID)
						}
					}
					if len(ids) > 0 {
						xackCalls.Add(1)
						if err := e.client.XAck(ctx, key, consumeGroup, ids...).Err(); err != nil {
							return err
						}
					}
				}
				return nil
			},
			stop: func() error { return nil },
		}
	}
}

// pendingCount returns how many entries of the consume group are delivered
// and not acknowledged.
func pendingCount(ctx context.Context, e *redisEnv) (int64, error) {
	p, err := e.client.XPending(ctx, e.stream(), consumeGroup).Result()
	if err != nil {
		return 0, err
	}
	return p.Count, nil
}

// redisStreamLen returns the number of entries of the stream.
func redisStreamLen(ctx context.Context, e *redisEnv) (int64, error) {
	return e.client.XLen(ctx, e.stream()).Result()
}

// ackCounting wraps the Streams driver given to the mb consumer so that the
// op ends when the last entry is acknowledged, not when its handler
// returns (mb acknowledges after the handlers). It forwards Capabilities,
// IsRetryable and its receivers' Extend, which the Consumer looks for.
type ackCounting struct {
	*mbredis.Streams
	acked atomic.Pointer[redisHandled]
}

func (s *ackCounting) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := s.Streams.Subscribe(ctx, sub)
	if err != nil {
		return nil, err
	}
	return &ackCountingReceiver{Receiver: r, s: s}, nil
}

// xackCalls counts the XACK calls of every consume variant, reported per
// op as acks/op: how well each batches its acknowledgements.
var xackCalls atomic.Int64

type ackCountingReceiver struct {
	mbdriver.Receiver
	s *ackCounting
}

func (r *ackCountingReceiver) Ack(ctx context.Context, msgs []*mbdriver.Message) error {
	err := r.Receiver.Ack(ctx, msgs)
	xackCalls.Add(1)
	if h := r.s.acked.Load(); err == nil && h != nil {
		if h.n.Add(int64(len(msgs))) == h.want {
			close(h.done)
		}
	}
	return err
}

// ExtendInterval and Extend forward to the Streams receiver, which keeps
// the entries the consumer still holds claimed (Capabilities.Extend).
func (r *ackCountingReceiver) ExtendInterval() time.Duration {
	return r.Receiver.(mbdriver.Extender).ExtendInterval()
}

func (r *ackCountingReceiver) Extend(ctx context.Context, msgs []*mbdriver.Message) error {
	return r.Receiver.(mbdriver.Extender).Extend(ctx, msgs)
}
