package bench

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/internal/testenv/redistest"
)

// The Redis benchmarks (constructors in redis_fixtures_test.go) and their
// honesty tests. They skip without a Redis server (see newRedisEnv).

var redisPublishVariants = []redisPublishVariant{
	{"mb", newRedisPublishMB},
	{"raw-pipeline", newRedisPublishRawPipeline},
	{"watermill", newRedisPublishWatermill},
}

var redisConsumeVariants = []redisConsumeVariant{
	{"mb", newRedisConsumeMB},
	{"raw", newRedisConsumeRaw},
	{"raw-ack-each", newRedisConsumeRawAckEach},
}

const (
	// redisPublishBatch events are published per op of
	// BenchmarkRedisPublish.
	redisPublishBatch = 100
	// redisConsumeMessages entries are consumed per op of
	// BenchmarkRedisConsume.
	redisConsumeMessages = 1000
)

// reportPerMessage reports the cost of one message of the ops' batches of
// perOp messages, beside ns/op.
func reportPerMessage(b *testing.B, ops, perOp int) {
	msgs := float64(ops) * float64(perOp)
	ns := float64(b.Elapsed().Nanoseconds())
	if msgs == 0 || ns == 0 {
		return
	}
	b.ReportMetric(ns/msgs, "ns/msg")
	b.ReportMetric(msgs/(ns/1e9), "msgs/s")
}

// BenchmarkRedisPublish: one op publishes a batch of 100 events to a Redis
// stream and returns when Redis has added them all. The stream is deleted
// after each op, with the timer stopped.
func BenchmarkRedisPublish(b *testing.B) {
	for _, v := range redisPublishVariants {
		b.Run(v.name, func(b *testing.B) {
			e := newRedisEnv(b)
			publish := v.new(b, e, redisPublishBatch)
			ctx := context.Background()
			ops := 0
			b.ReportAllocs()
			for b.Loop() {
				if err := publish(ctx); err != nil {
					b.Fatal(err)
				}
				ops++
				b.StopTimer()
				e.resetStream(b)
				b.StartTimer()
			}
			reportPerMessage(b, ops, redisPublishBatch)
		})
	}
}

// BenchmarkRedisConsume: one op consumes 1000 entries published beforehand
// (untimed) to a fresh stream with a fresh consumer group: receive, decode,
// handle, acknowledge, until the last one is acknowledged.
func BenchmarkRedisConsume(b *testing.B) {
	for _, v := range redisConsumeVariants {
		b.Run(v.name, func(b *testing.B) {
			e := newRedisEnv(b)
			next := v.new(b, e, redisConsumeMessages)
			xackCalls.Store(0)
			ctx := context.Background()
			ops := 0
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				op := next()
				b.StartTimer()
				if err := op.run(ctx); err != nil {
					b.Fatal(err)
				}
				ops++
				b.StopTimer()
				if err := op.stop(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			reportPerMessage(b, ops, redisConsumeMessages)
			if ops > 0 {
				b.ReportMetric(float64(xackCalls.Swap(0))/float64(ops), "acks/op")
			}
		})
	}
}

// Honesty tests.

// redisTestOps ops per variant, so that state carried from one op to the
// next would show.
const redisTestOps = 2

// TestRedisPublish runs each publish variant and checks the stream: every
// event is there, once, with a fresh id and the JSON of testWireEvent; mb
// and raw-pipeline write exactly the same fields.
func TestRedisPublish(t *testing.T) {
	const n = 10
	for _, v := range redisPublishVariants {
		t.Run(v.name, func(t *testing.T) {
			e := newRedisEnv(t)
			publish := v.new(t, e, n)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			for range redisTestOps {
				if err := publish(ctx); err != nil {
					t.Fatal(err)
				}
			}
			entries, err := e.client.XRange(ctx, e.stream(), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != redisTestOps*n {
				t.Fatalf("%d entries in the stream, want %d", len(entries), redisTestOps*n)
			}
			idField, bodyField := fieldID, fieldBody
			if v.name == "watermill" {
				idField, bodyField = "_watermill_message_uuid", "payload"
			}
			wantFields := slices.Sorted(slices.Values(redisWireFields))
			ids := map[string]bool{}
			for _, xm := range entries {
				if v.name != "watermill" {
					fields := make([]string, 0, len(xm.Values))
					for f := range xm.Values {
						fields = append(fields, f)
					}
					slices.Sort(fields)
					if !slices.Equal(fields, wantFields) {
						t.Fatalf("entry %s has fields %q, want %q", xm.ID, fields, wantFields)
					}
					if typ := xm.Values[fieldType]; typ != userCreatedName {
						t.Errorf("entry %s has type %q, want %q", xm.ID, typ, userCreatedName)
					}
				}
				id, _ := xm.Values[idField].(string)
				if id == "" || ids[id] {
					t.Errorf("entry %s: message id %q is empty or repeated", xm.ID, id)
				}
				ids[id] = true
				body, _ := xm.Values[bodyField].(string)
				var ev UserCreatedWire
				if err := json.Unmarshal([]byte(body), &ev); err != nil || ev != testWireEvent() {
					t.Errorf("entry %s: body %q decodes to %+v (%v), want %+v", xm.ID, body, ev, err, testWireEvent())
				}
			}
		})
	}
}

// TestRedisConsume runs each consume variant and checks that every entry
// was handled exactly once, with the right event, and acknowledged.
func TestRedisConsume(t *testing.T) {
	const m = 250 // not a multiple of the batch size
	for _, v := range redisConsumeVariants {
		t.Run(v.name, func(t *testing.T) {
			reset()
			e := newRedisEnv(t)
			next := v.new(t, e, m)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			for i := range redisTestOps {
				op := next()
				if n, err := redisStreamLen(ctx, e); err != nil || n != m {
					t.Fatalf("op %d: the stream holds %d entries (%v), want %d", i, n, err, m)
				}
				err := op.run(ctx)
				if serr := op.stop(); serr != nil {
					t.Errorf("op %d: stop: %v", i, serr)
				}
				if err != nil {
					t.Fatalf("op %d: %v", i, err)
				}
				h := redisCount.Load()
				if n, bad := h.n.Load(), h.bad.Load(); n != m || bad != 0 {
					t.Errorf("op %d: %d events handled (%d of them wrong), want %d", i, n, bad, m)
				}
				if n, err := pendingCount(ctx, e); err != nil || n != 0 {
					t.Errorf("op %d: %d entries left unacknowledged (%v)", i, n, err)
				}
			}
			if n := mbErrors.Load(); n != 0 {
				t.Errorf("mb reported %d errors", n)
			}
		})
	}
}

// TestRedisNoKeysLeft checks that a Redis benchmark's clean-up deletes all
// its keys.
func TestRedisNoKeysLeft(t *testing.T) {
	var e *redisEnv
	t.Run("run", func(t *testing.T) {
		e = newRedisEnv(t)
		next := newRedisConsumeMB(t, e, 10)
		op := next()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		err := op.run(ctx)
		if serr := op.stop(); serr != nil {
			t.Error(serr)
		}
		if err != nil {
			t.Fatal(err)
		}
		if keys, err := e.keys(ctx); err != nil || len(keys) == 0 {
			t.Fatalf("keys during the run: %q (%v); want some", keys, err)
		}
	})
	if e == nil {
		t.Skip("Redis is unreachable")
	}
	// e's client is closed: look with a new one.
	c := redis.NewClient(redistest.Options(t))
	defer func() { _ = c.Close() }()
	after := &redisEnv{client: c, prefix: e.prefix}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if keys, err := after.keys(ctx); err != nil || len(keys) != 0 {
		t.Errorf("keys left under %s: %q (%v)", e.prefix, keys, err)
	}
}
