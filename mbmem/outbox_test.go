package mbmem_test

import (
	"context"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Changed closes at each change of the outbox; Due counts claimed messages
// as due until they are sent, and later ones as waiting.
func TestOutboxChangedAndDue(t *testing.T) {
	var o mbmem.Outbox
	ch := o.Changed()
	if closed(ch) {
		t.Fatal("Changed closed before any change")
	}
	write := func(msgs ...*mbdriver.OutboxMessage) {
		t.Helper()
		err := mb.Run(context.Background(), mb.New(), "write", func(ctx context.Context) error { return o.Write(ctx, msgs) })
		if err != nil {
			t.Fatal(err)
		}
	}
	write(&mbdriver.OutboxMessage{Topic: "t", Message: mbdriver.Message{ID: "now"}},
		&mbdriver.OutboxMessage{Topic: "t", Message: mbdriver.Message{ID: "later"}, NotBefore: time.Now().Add(time.Hour)})
	if !closed(ch) {
		t.Fatal("Changed not closed by a write")
	}
	if due, waiting := o.Due(); due != 1 || waiting != 1 {
		t.Fatalf("Due = %d, %d; want 1, 1", due, waiting)
	}
	claimed, err := o.Claim(context.Background(), "r", 10, time.Minute)
	if err != nil || len(claimed) != 1 {
		t.Fatalf("Claim = %d messages, %v", len(claimed), err)
	}
	if due, _ := o.Due(); due != 1 {
		t.Fatalf("a claimed message counts as %d due, want 1", due)
	}
	ch = o.Changed()
	if err := o.Sent(context.Background(), claimed); err != nil {
		t.Fatal(err)
	}
	if !closed(ch) {
		t.Fatal("Changed not closed by Sent")
	}
	if due, waiting := o.Due(); due != 0 || waiting != 1 {
		t.Fatalf("after Sent, Due = %d, %d; want 0, 1", due, waiting)
	}
}

// Transport.Changed closes when a group is created, a message published and
// a message acked.
func TestTransportChanged(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	sub := mbdriver.Subscription{Topic: "t", Group: "g"}
	ch := tr.Changed()
	r := subscribe(t, tr, sub)
	if !closed(ch) {
		t.Fatal("Changed not closed by a new group")
	}
	ch = tr.Changed()
	if closed(ch) {
		t.Fatal("Changed closed with no change")
	}
	publish(t, tr, "t", msg("m1", ""))
	if !closed(ch) {
		t.Fatal("Changed not closed by a publish")
	}
	got := receive(t, r, 1)
	ch = tr.Changed()
	if tr.Pending(sub) != 1 {
		t.Fatalf("Pending = %d, want 1", tr.Pending(sub))
	}
	ack(t, r, got...)
	if !closed(ch) {
		t.Fatal("Changed not closed by an ack")
	}
	if tr.Pending(sub) != 0 {
		t.Fatalf("Pending after ack = %d", tr.Pending(sub))
	}
}
