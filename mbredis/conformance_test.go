package mbredis_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbdrivertest"
	"github.com/mb-go/mb/mbredis"
)

const (
	testBlock        = 100 * time.Millisecond
	testClaimMinIdle = 200 * time.Millisecond
)

func TestStreamsConformance(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(t *testing.T) mbdriver.Driver {
			// Each driver has a client of its own, as a process would.
			d, err := mbredis.NewStreams(newClient(t), &mbredis.StreamsOptions{
				KeyPrefix:    p,
				Block:        testBlock,
				ClaimMinIdle: testClaimMinIdle,
			})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Prefix:         "mbtest-",
		RedeliveryWait: 5 * time.Second,
		HoldTimeout:    testClaimMinIdle,
	})
}

func TestPubSubConformance(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(t *testing.T) mbdriver.Driver {
			d, err := mbredis.NewPubSub(newClient(t), &mbredis.PubSubOptions{KeyPrefix: p})
			if err != nil {
				t.Fatal(err)
			}
			return d
		},
		Prefix: "mbtest-",
	})
}

// Start errors name the driver and the fix, before any call to Redis.
func TestSubscribeStartErrors(t *testing.T) {
	c := newClientNoPing(t)
	ctx := context.Background()
	ps, err := mbredis.NewPubSub(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	_, err = ps.Subscribe(ctx, mbdriver.Subscription{Topic: "t", Start: mbdriver.StartOldest})
	if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "PubSub") || !strings.Contains(err.Error(), "StartNew") || !strings.Contains(err.Error(), "Streams") {
		t.Errorf("PubSub.Subscribe with StartOldest = %v; want an ErrUnsupported naming PubSub and the fixes (StartNew, Streams)", err)
	}
	st, err := mbredis.NewStreams(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, d := range []mbdriver.Driver{ps, st} {
		_, err = d.Subscribe(ctx, mbdriver.Subscription{Topic: "t", Group: "g", Start: 5})
		if err == nil || !strings.Contains(err.Error(), "StartPosition(5)") {
			t.Errorf("%T.Subscribe with Start 5 = %v; want an error naming it", d, err)
		}
	}
}

// Entries other programs add to a stream need not look like mbredis's: a
// receiver returns them with what it recognises (here one header, a body
// only, an unknown field only) and never fails on their shape.
func TestStreamsForeignEntries(t *testing.T) {
	c := newClient(t)
	p := prefix(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: "foreign", Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, values := range [][]any{{"h:ce-type", "x"}, {"body", "b"}, {"other", "o"}} {
		if err := c.XAdd(ctx, &redis.XAddArgs{Stream: p + "foreign", Values: values}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	var got []*mbdriver.Message
	for len(got) < 3 {
		msgs, err := r.Receive(ctx, 10)
		if err != nil {
			t.Fatalf("Receive after %d: %v", len(got), err)
		}
		got = append(got, msgs...)
	}
	if got[0].Headers["ce-type"] != "x" || string(got[1].Body) != "b" || len(got[2].Headers) != 0 || got[2].Body != nil {
		t.Errorf("received %+v, %+v, %+v", got[0], got[1], got[2])
	}
	if err := r.Ack(ctx, got); err != nil {
		t.Fatal(err)
	}
}

// Glob characters in KeyPrefix are matched literally by a pattern
// subscription: only the topic part is a pattern.
func TestPubSubPatternEscapesKeyPrefix(t *testing.T) {
	c := newClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := runPrefix + redistest.RandHex(4)
	odd, err := mbredis.NewPubSub(c, &mbredis.PubSubOptions{KeyPrefix: base + "[x]*?\\:"})
	if err != nil {
		t.Fatal(err)
	}
	defer odd.Close()
	// "<base>x-anything:" matches the prefix read as a glob.
	plain, err := mbredis.NewPubSub(c, &mbredis.PubSubOptions{KeyPrefix: base + "x-anything\\:"})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	r, err := odd.Subscribe(ctx, mbdriver.Subscription{Topic: "orders.*", Pattern: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	foreign := &mbdriver.Message{ID: "foreign", Headers: map[string]string{}, Body: []byte("f")}
	own := &mbdriver.Message{ID: "own", Headers: map[string]string{}, Body: []byte("o")}
	if err := plain.Publish(ctx, "orders.created", []*mbdriver.Message{foreign}); err != nil {
		t.Fatal(err)
	}
	if err := odd.Publish(ctx, "orders.created", []*mbdriver.Message{own}); err != nil {
		t.Fatal(err)
	}
	msgs, err := r.Receive(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].ID != "own" {
		t.Errorf("the pattern subscription received %q first; the prefix was matched as a glob", msgs[0].ID)
	}
}
