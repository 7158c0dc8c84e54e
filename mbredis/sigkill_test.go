package mbredis_test

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

// helperReceiveNoAck (helper mode "receive-no-ack") receives n messages
// without acknowledging them, prints "received <n>", and then hangs as if
// handling them, until it is killed.
func helperReceiveNoAck(d *mbredis.Streams, topic, group string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := d.Subscribe(ctx, mbdriver.Subscription{
		Topic: topic, Group: group, Consumer: helperConsumer,
		Start: mbdriver.StartOldest, // the messages were published before the group existed
	})
	if err != nil {
		return err
	}
	got := 0
	for got < n {
		msgs, err := r.Receive(ctx, n-got)
		if err != nil {
			return err
		}
		got += len(msgs)
	}
	fmt.Printf("received %d\n", got)
	select {} // "handling": killed here
}

// publishN publishes n messages to topic, whose IDs and bodies are
// "msg-<i>", and returns their IDs.
func publishN(t *testing.T, d *mbredis.Streams, topic string, n int) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := map[string]bool{}
	var msgs []*mbdriver.Message
	for i := range n {
		id := fmt.Sprintf("msg-%02d", i)
		ids[id] = true
		msgs = append(msgs, &mbdriver.Message{ID: id, Body: []byte(id)})
	}
	if err := d.Publish(ctx, topic, msgs); err != nil {
		t.Fatal(err)
	}
	return ids
}

// startReceiveNoAck starts the helper process "receive-no-ack" and returns
// it once it has received n messages.
func startReceiveNoAck(t *testing.T, prefix, topic, group string, n int) *exec.Cmd {
	t.Helper()
	cmd, out := startHelper(t, "receive-no-ack", prefix, topic, group, n)
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != fmt.Sprintf("received %d", n) {
		t.Fatalf("helper said %q, %v", line, err)
	}
	return cmd
}

// TestSigkillReclaim: a consumer process receives messages without acking
// them and is killed with SIGKILL; a second consumer of the group takes
// its pending entries over (XAUTOCLAIM) and receives all of them.
func TestSigkillReclaim(t *testing.T) {
	const n = 20
	c := newClient(t)
	p := prefix(t, c)
	topic, group := "orders", "billing"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	d, err := mbredis.NewStreams(c, &mbredis.StreamsOptions{KeyPrefix: p, Block: testBlock, ClaimMinIdle: testClaimMinIdle})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	want := publishN(t, d, topic, n)
	cmd := startReceiveNoAck(t, p, topic, group, n)
	pending, err := c.XPending(ctx, p+topic, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != n || pending.Consumers[helperConsumer] != n {
		t.Fatalf("before the kill: pending %+v, want %d with %q", pending, n, helperConsumer)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil {
		t.Fatal("helper exited normally, want killed")
	}

	r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: topic, Group: group, Consumer: "survivor", Start: mbdriver.StartOldest})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := map[string]bool{}
	for len(got) < n {
		msgs, err := r.Receive(ctx, n)
		if err != nil {
			t.Fatalf("Receive after %d of %d: %v", len(got), n, err)
		}
		for _, m := range msgs {
			if !want[m.ID] || string(m.Body) != m.ID {
				t.Errorf("unexpected message %+v", m)
			}
			if m.Attempt < 2 {
				t.Errorf("message %s reclaimed with Attempt %d, want >= 2", m.ID, m.Attempt)
			}
			got[m.ID] = true
		}
		if err := r.Ack(ctx, msgs); err != nil {
			t.Fatal(err)
		}
	}
	pending, err = c.XPending(ctx, p+topic, group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("after reclaiming and acking: pending %+v, want none", pending)
	}
}

// TestRestartedConsumer: a consumer that stopped without acking, started
// again with the same name, gets its pending entries back at its first
// Receive, with their delivery count as Attempt. ClaimMinIdle is an hour,
// so that they cannot come from XAUTOCLAIM: a consumer restarted after a
// crash must not wait for ClaimMinIdle to handle its own entries.
func TestRestartedConsumer(t *testing.T) {
	const n = 5
	c := newClient(t)
	opts := func(p string) *mbredis.StreamsOptions {
		return &mbredis.StreamsOptions{KeyPrefix: p, Block: testBlock, ClaimMinIdle: time.Hour}
	}
	// restart subscribes as consumer again and receives want at once.
	restart := func(t *testing.T, d *mbredis.Streams, topic, group, consumer string, want map[string]bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: topic, Group: group, Consumer: consumer})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		got := map[string]bool{}
		for len(got) < len(want) {
			msgs, err := r.Receive(ctx, n)
			if err != nil {
				t.Fatalf("Receive after %d of the %d pending entries: %v", len(got), len(want), err)
			}
			for _, m := range msgs {
				if !want[m.ID] || got[m.ID] {
					t.Errorf("unexpected message %+v", m)
				}
				if m.Attempt != 2 {
					t.Errorf("message %s received again with Attempt %d, want 2", m.ID, m.Attempt)
				}
				got[m.ID] = true
			}
			if err := r.Ack(ctx, msgs); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("Killed", func(t *testing.T) {
		p := prefix(t, c)
		topic, group := "orders", "billing"
		d, err := mbredis.NewStreams(c, opts(p))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		want := publishN(t, d, topic, n)
		cmd := startReceiveNoAck(t, p, topic, group, n)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		restart(t, d, topic, group, helperConsumer, want)
	})

	t.Run("Closed", func(t *testing.T) {
		p := prefix(t, c)
		d, err := mbredis.NewStreams(c, opts(p))
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sub := mbdriver.Subscription{Topic: "orders", Group: "billing", Consumer: "fixed"}
		r, err := d.Subscribe(ctx, sub)
		if err != nil {
			t.Fatal(err)
		}
		want := publishN(t, d, sub.Topic, n)
		for got := 0; got < n; {
			msgs, err := r.Receive(ctx, n)
			if err != nil {
				t.Fatal(err)
			}
			got += len(msgs)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		restart(t, d, sub.Topic, sub.Group, sub.Consumer, want)
	})
}
