package mbredis_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// extendFixture is consumer "a" of group "g" of stream key, which
// received m and has not settled it yet.
type extendFixture struct {
	ctx context.Context
	c   *redis.Client
	key string
	r   mbdriver.Receiver
	e   mbdriver.Extender
	m   *mbdriver.Message
}

// newExtendFixture subscribes with ClaimMinIdle of an hour (nothing is
// taken over unless released) and receives one message.
func newExtendFixture(t *testing.T) *extendFixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	c := newClient(t)
	p := prefix(t, c)
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: testBlock, ClaimMinIdle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: "t", Group: "g", Consumer: "a"})
	if err != nil {
		t.Fatal(err)
	}
	e, ok := r.(mbdriver.Extender)
	if !ok {
		t.Fatalf("%T does not implement mbdriver.Extender", r)
	}
	if iv := e.ExtendInterval(); iv != 20*time.Minute {
		t.Errorf("ExtendInterval() = %v, want a third of ClaimMinIdle", iv)
	}
	if err := d.Publish(ctx, "t", []*mbdriver.Message{{ID: "m", Body: []byte("m")}}); err != nil {
		t.Fatal(err)
	}
	msgs, err := r.Receive(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	return &extendFixture{ctx: ctx, c: c, key: p + "t", r: r, e: e, m: msgs[0]}
}

// extend extends f.m.
func (f *extendFixture) extend(t *testing.T) {
	t.Helper()
	if err := f.e.Extend(f.ctx, []*mbdriver.Message{f.m}); err != nil {
		t.Fatalf("Extend: %v", err)
	}
}

// pending returns f.m's pending entry.
func (f *extendFixture) pending(t *testing.T) redis.XPendingExt {
	t.Helper()
	id := f.m.AckID.(string)
	pe, err := f.c.XPendingExt(f.ctx, &redis.XPendingExtArgs{Stream: f.key, Group: "g", Start: id, End: id, Count: 1}).Result()
	if err != nil || len(pe) != 1 {
		t.Fatalf("XPENDING %s: %v, %v", id, pe, err)
	}
	return pe[0]
}

func TestStreamsExtend(t *testing.T) {
	// Extend keeps the entry with its consumer without counting a
	// delivery.
	t.Run("KeepsDeliveryCount", func(t *testing.T) {
		f := newExtendFixture(t)
		for range 3 {
			f.extend(t)
		}
		if pe := f.pending(t); pe.Consumer != "a" || pe.RetryCount != 1 {
			t.Errorf("after 3 extensions: pending %+v, want consumer a, delivery count 1", pe)
		}
	})

	// An entry that another consumer took over meanwhile is not taken
	// back by a late Extend.
	t.Run("DoesNotTakeBack", func(t *testing.T) {
		f := newExtendFixture(t)
		// What XAUTOCLAIM by consumer b does once the entry is idle enough.
		if err := f.c.XClaimJustID(f.ctx, &redis.XClaimArgs{Stream: f.key, Group: "g", Consumer: "b", Messages: []string{f.m.AckID.(string)}}).Err(); err != nil {
			t.Fatal(err)
		}
		f.extend(t)
		if pe := f.pending(t); pe.Consumer != "b" {
			t.Errorf("after a late Extend by a: pending %+v, want it still with b", pe)
		}
	})

	// An Extend that comes after a Nack does not undo it: the entry is
	// redelivered at once (Nack without delay), not after ClaimMinIdle.
	t.Run("AfterNack", func(t *testing.T) {
		f := newExtendFixture(t)
		if err := f.r.Nack(f.ctx, []*mbdriver.Message{f.m}, 0); err != nil {
			t.Fatal(err)
		}
		f.extend(t)
		msgs, err := f.r.Receive(f.ctx, 1)
		if err != nil {
			t.Fatalf("Receive of the nacked entry, extended after the Nack: %v", err)
		}
		if msgs[0].ID != f.m.ID || msgs[0].Attempt != 2 {
			t.Errorf("received %+v, want %s again with Attempt 2", msgs[0], f.m.ID)
		}
	})
}
