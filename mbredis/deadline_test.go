package mbredis_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// TestDeadlinesWithFrozenRedis: with the server stopped (SIGSTOP), calls
// with a short deadline return an error wrapping context.DeadlineExceeded,
// whether or not the client honours context deadlines itself. The clients
// have no read or write timeouts of their own, so a call that waits for
// the server's reply instead of its deadline never returns, or, for a
// blocking read, returns when go-redis gives up 10 seconds after the BLOCK
// time: the 5 seconds the calls are given together are only a safety net,
// more than ten times their deadline.
func TestDeadlinesWithFrozenRedis(t *testing.T) {
	srv := startOwnRedis(t)
	for _, contextTimeouts := range []bool{false, true} {
		name := "ContextTimeoutEnabled=false"
		if contextTimeouts {
			name = "ContextTimeoutEnabled=true"
		}
		t.Run(name, func(t *testing.T) {
			c := redis.NewClient(&redis.Options{
				Addr: srv.addr(), ReadTimeout: -1, WriteTimeout: -1,
				ContextTimeoutEnabled: contextTimeouts,
			})
			defer c.Close()
			checkDeadlines(t, srv, c)
		})
	}
}

func checkDeadlines(t *testing.T, srv *ownRedis, c *redis.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Block and ClaimMinIdle of an hour: only the deadline can end a call.
	st, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: redistest.RandHex(4) + ":", Block: time.Hour, ClaimMinIdle: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ps, err := mbredis.NewPubSub(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()

	// r1 has received once: its next Receive blocks in XREADGROUP on its
	// own connection. r2 has not: its first Receive starts with commands
	// on the client's pool.
	sub := mbdriver.Subscription{Topic: "t", Group: "g", Consumer: "c1"}
	r1, err := st.Subscribe(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer r1.Close()
	sub.Consumer = "c2"
	r2, err := st.Subscribe(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	// One message for each of Ack, Nack and Extend, which would skip a
	// message acked or nacked.
	if err := st.Publish(ctx, "t", []*mbdriver.Message{{ID: "ack"}, {ID: "nack"}, {ID: "extend"}}); err != nil {
		t.Fatal(err)
	}
	got := map[string][]*mbdriver.Message{}
	for len(got) < 3 {
		msgs, err := r1.Receive(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			got[m.ID] = []*mbdriver.Message{m}
		}
	}

	srv.freeze()
	defer srv.thaw()
	msgs := func(ids ...string) []*mbdriver.Message {
		var ms []*mbdriver.Message
		for _, id := range ids {
			ms = append(ms, &mbdriver.Message{ID: id})
		}
		return ms
	}
	calls := map[string]func(ctx context.Context) error{
		"Streams.Publish":         func(ctx context.Context) error { return st.Publish(ctx, "t", msgs("a")) },
		"Streams.Publish (batch)": func(ctx context.Context) error { return st.Publish(ctx, "t", msgs("a", "b")) },
		"Streams.Subscribe": func(ctx context.Context) error {
			r, err := st.Subscribe(ctx, mbdriver.Subscription{Topic: "t2", Group: "g"})
			if err == nil {
				_ = r.Close()
			}
			return err
		},
		"Receive (blocking read)": func(ctx context.Context) error { _, err := r1.Receive(ctx, 1); return err },
		"Receive (first)":         func(ctx context.Context) error { _, err := r2.Receive(ctx, 1); return err },
		"Ack":                     func(ctx context.Context) error { return r1.Ack(ctx, got["ack"]) },
		"Nack":                    func(ctx context.Context) error { return r1.Nack(ctx, got["nack"], 0) },
		"Extend":                  func(ctx context.Context) error { return r1.(mbdriver.Extender).Extend(ctx, got["extend"]) },
		"PubSub.Publish":          func(ctx context.Context) error { return ps.Publish(ctx, "t", msgs("a")) },
		"PubSub.Subscribe": func(ctx context.Context) error {
			r, err := ps.Subscribe(ctx, mbdriver.Subscription{Topic: "t"})
			if err == nil {
				_ = r.Close()
			}
			return err
		},
	}
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(calls))
	net := time.After(5 * time.Second)
	for name, call := range calls {
		go func() {
			cctx, ccancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer ccancel()
			results <- result{name, call(cctx)}
		}()
	}
	for range calls {
		select {
		case r := <-results:
			if !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("%s with a frozen server = %v, want an error wrapping context.DeadlineExceeded", r.name, r.err)
			}
			delete(calls, r.name)
		case <-net:
			t.Fatalf("still waiting for the frozen server 5s after their deadline of 300ms: %v", slices.Sorted(maps.Keys(calls)))
		}
	}
}
