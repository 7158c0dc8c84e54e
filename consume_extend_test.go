package mb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbtest"
)

// extending declares Extend over an in-memory transport and records what
// the consumer asks its receivers to keep held.
type extending struct {
	*mbmem.Transport
	mu       sync.Mutex
	extended map[string]int // message id -> Extend calls that named it
}

func (x *extending) Capabilities() mbdriver.Capabilities {
	c := x.Transport.Capabilities()
	c.Extend = true
	return c
}

func (x *extending) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := x.Transport.Subscribe(ctx, sub)
	if err != nil {
		return nil, err
	}
	return &extendingReceiver{Receiver: r, x: x}, nil
}

func (x *extending) count(id string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.extended[id]
}

type extendingReceiver struct {
	mbdriver.Receiver
	x *extending
}

func (r *extendingReceiver) ExtendInterval() time.Duration { return time.Millisecond }

func (r *extendingReceiver) Extend(ctx context.Context, msgs []*mbdriver.Message) error {
	r.x.mu.Lock()
	defer r.x.mu.Unlock()
	for _, m := range msgs {
		r.x.extended[m.ID]++
	}
	return nil
}

// A consumer keeps the messages it has received held at the broker while
// they are handled and while they wait for a worker, for drivers that
// declare Extend.
func TestConsumerKeepsHeldMessagesExtended(t *testing.T) {
	b := setupCx(t, "cx.order.placed")
	x := &extending{Transport: b.tr, extended: map[string]int{}}
	release := make(chan struct{})
	var handled recorder
	mb.Subscribe(b.bus, func(ctx context.Context, e CxOrderPlaced) error {
		if e.Order == "slow" {
			<-release
		}
		handled.add(e.Order)
		return nil
	})
	b.publish(t, CxOrderPlaced{Order: "slow"}, CxOrderPlaced{Order: "queued"})
	sent := b.sent.get(b.topic)
	slow, queued := sent[0].ID, sent[1].ID
	stop := mbtest.RunConsumer(t, context.Background(), b.consumer(t, x, mb.ConsumerOptions{Concurrency: 1}))
	eventually(t, "both messages extended several times", func() bool { return x.count(slow) >= 3 && x.count(queued) >= 3 })
	close(release)
	b.settled(t)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantSeq(t, handled.get(), []string{"slow", "queued"})
}
