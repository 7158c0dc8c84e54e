package mbredis_test

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// TestPruneConsumers: a receiver deletes the consumers of its group that
// have been idle for PruneConsumersAfter and hold no pending entries, and
// no other: not one with pending entries, however idle, nor one that read
// recently. With pruning off, it deletes none.
func TestPruneConsumers(t *testing.T) {
	const after = time.Second
	c := newClient(t)
	p := prefix(t, c)
	key, group := p+"orders", "billing"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	newDriver := func(prune time.Duration) *mbredis.Streams {
		// ClaimMinIdle of an hour: nothing is taken over.
		d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{
			KeyPrefix: p, Block: testBlock, ClaimMinIdle: time.Hour, PruneConsumersAfter: prune,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = d.Close() })
		return d
	}
	// receive subscribes as consumer and receives the one entry added
	// after it subscribed; its first Receive prunes.
	receive := func(d *mbredis.Streams, consumer string) {
		t.Helper()
		r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: "orders", Group: group, Consumer: consumer})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"id", consumer}}).Err(); err != nil {
			t.Fatal(err)
		}
		msgs, err := r.Receive(ctx, 10)
		if err != nil || len(msgs) != 1 || msgs[0].ID != consumer {
			t.Fatalf("%s: Receive = %+v, %v; want its one entry", consumer, msgs, err)
		}
		if err := r.Ack(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	consumers := func() map[string]redis.XInfoConsumer {
		t.Helper()
		cs, err := c.XInfoConsumers(ctx, key, group).Result()
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]redis.XInfoConsumer{}
		for _, ci := range cs {
			m[ci.Name] = ci
		}
		return m
	}
	read := func(consumer string) {
		t.Helper()
		err := c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: group, Consumer: consumer, Streams: []string{key, ">"}, Count: 1, Block: -1}).Err()
		if err != nil && err != redis.Nil {
			t.Fatal(err)
		}
	}

	if err := c.XGroupCreateMkStream(ctx, key, group, "$").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XGroupCreateConsumer(ctx, key, group, "gone-empty").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"id", "held"}}).Err(); err != nil {
		t.Fatal(err)
	}
	read("gone-pending") // takes the entry and never acks it
	waitUntil(t, ctx, func() string { return "the consumers to be idle for " + after.String() }, func() bool {
		cs := consumers()
		return cs["gone-empty"].Idle >= after && cs["gone-pending"].Idle >= after
	})
	// A consumer that showed up just now.
	if err := c.XGroupCreateConsumer(ctx, key, group, "recent").Err(); err != nil {
		t.Fatal(err)
	}

	receive(newDriver(-1), "pruning-off")
	if cs := consumers(); len(cs) != 4 {
		t.Errorf("with pruning off: consumers %v, want gone-empty, gone-pending, recent and pruning-off", slices.Sorted(maps.Keys(cs)))
	}

	receive(newDriver(after), "pruner")
	cs := consumers()
	if _, ok := cs["gone-empty"]; ok {
		t.Errorf("gone-empty, idle for %v without pending entries, was not deleted", cs["gone-empty"].Idle)
	}
	if cs["gone-pending"].Pending != 1 {
		t.Errorf("gone-pending, idle with a pending entry, was deleted or lost it: %+v", cs["gone-pending"])
	}
	for _, name := range []string{"recent", "pruning-off", "pruner"} {
		if _, ok := cs[name]; !ok {
			t.Errorf("%s, idle for less than %v, was deleted", name, after)
		}
	}
}
