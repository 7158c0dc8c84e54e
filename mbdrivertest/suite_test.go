package mbdrivertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbdrivertest"
	"github.com/mb-go/mb/mbmem"
)

// An at-most-once driver without groups (like Redis Pub/Sub) passes the
// subtests for its capabilities, FanOut included.
func TestAtMostOnce(t *testing.T) {
	broker := mbmem.New(nil)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(*testing.T) mbdriver.Driver { return &pubsub{Transport: broker.Connect()} },
	})
}

// pubsub turns mbmem into an at-most-once fan-out transport: every
// receiver has a group of its own, and Receive acks at once. Like Redis
// Pub/Sub it keeps nothing for replay, so it refuses StartOldest.
type pubsub struct {
	*mbmem.Transport
}

var receivers atomic.Int64

func (p *pubsub) Capabilities() mbdriver.Capabilities {
	return mbdriver.Capabilities{AtMostOnce: true}
}

func (p *pubsub) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	if sub.Start == mbdriver.StartOldest {
		return nil, fmt.Errorf("pubsub: Subscription.Start is StartOldest, but this driver keeps no messages to replay: %w", errors.ErrUnsupported)
	}
	sub.Group = fmt.Sprint("pubsub-", receivers.Add(1))
	r, err := p.Transport.Subscribe(ctx, sub)
	if err != nil {
		return nil, err
	}
	return pubsubReceiver{r}, nil
}

type pubsubReceiver struct{ mbdriver.Receiver }

func (r pubsubReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	msgs, err := r.Receiver.Receive(ctx, max)
	if err == nil {
		err = r.Receiver.Ack(ctx, msgs)
	}
	for _, m := range msgs {
		m.AckID, m.Attempt = nil, 0
	}
	return msgs, err
}

func (pubsubReceiver) Ack(context.Context, []*mbdriver.Message) error { return nil }

func (pubsubReceiver) Nack(context.Context, []*mbdriver.Message, time.Duration) error { return nil }

// mutationEnv names the defect TestBrokenDriver injects.
const mutationEnv = "MBDRIVERTEST_MUTATION"

// The suite catches broken drivers: each mutation of mbmem must fail the
// named subtest. The suite runs in a child process because a failing
// *testing.T cannot be observed in-process.
func TestSuiteCatchesBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, tc := range []struct{ mutation, subtest string }{
		{"drop-header", "Headers"},
		{"binary-header", "Headers"},
		{"rewrite-id", "RoundTrip"},
		{"rewrite-id", "DuplicateID"},
		{"reorder", "Batch"},
		{"reorder", "PerKeyOrder"},
		{"ack-noop", "AckNoRedelivery"},
		{"nack-noop", "NackRedelivery"},
		{"nack-no-delay", "NackDelay"},
		{"one-group", "TwoGroups"},
		{"no-sharing", "CompetingConsumers"},
		{"close-keeps", "StoppedConsumer"},
		{"pattern-topic", "Pattern"},
		{"pattern-all", "Pattern"},
		{"closed-error", "CloseSemantics"},
		{"ctx-swallowed", "ReceiveContextCancel"},
		{"as-anything", "AsAndIsRetryable"},
		{"replay-none", "StartOldest"},
		{"replay-pattern-none", "StartOldestPattern"},
		{"replay-rewinds", "StartOldestExistingGroup"},
		{"replay-ignored", "StartOldestUnsupported"},
		{"start-new-replays", "StartNew"},
		{"start-invalid", "StartInvalid"},
		{"extend-noop", "ExtendHolds"},
		{"extend-counts", "ExtendHolds"},
		{"extend-settled-error", "ExtendSettled"},
		{"extend-closed-nil", "ExtendAfterClose"},
	} {
		t.Run(tc.mutation+"/"+tc.subtest, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestBrokenDriver$/^"+tc.subtest+"$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), mutationEnv+"="+tc.mutation)
			out, err := cmd.CombinedOutput()
			want := "--- FAIL: TestBrokenDriver/" + tc.subtest
			if err == nil || !strings.Contains(string(out), want) {
				t.Errorf("with mutation %q the suite did not fail %s (err %v):\n%s", tc.mutation, tc.subtest, err, out)
			}
		})
	}
}

// TestBrokenDriver runs the suite against a broken mbmem, in the child
// process of TestSuiteCatchesBugs.
func TestBrokenDriver(t *testing.T) {
	m := os.Getenv(mutationEnv)
	if m == "" {
		t.Skip(mutationEnv + " not set: run by TestSuiteCatchesBugs")
	}
	var opts mbmem.Options
	if strings.HasPrefix(m, "extend-") {
		// Extend needs an ack timeout.
		opts.AckTimeout = mutantAckTimeout
	}
	broker := mbmem.New(&opts)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open:           func(*testing.T) mbdriver.Driver { return &mutant{Transport: broker.Connect(), m: m} },
		RedeliveryWait: 300 * time.Millisecond,
		// In memory, what should arrive does at once: fail broken
		// variants sooner than the default bound.
		ReceiveWait: 2 * time.Second,
		HoldTimeout: mutantAckTimeout,
	})
}

const mutantAckTimeout = 200 * time.Millisecond

// extensions counts the extensions of each message id, for the mutation
// extend-counts, which adds them to the Attempt of later deliveries.
var extensions sync.Map // id -> *atomic.Int64

// mutant is mbmem with one defect.
type mutant struct {
	*mbmem.Transport
	m string
}

func (d *mutant) Capabilities() mbdriver.Capabilities {
	c := d.Transport.Capabilities()
	if d.m == "replay-ignored" {
		c.Replay = false
	}
	return c
}

func (d *mutant) As(i any) bool {
	if d.m == "as-anything" {
		return true
	}
	return d.Transport.As(i)
}

func (d *mutant) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if d.m == "reorder" {
		for _, m := range msgs {
			m.PartitionKey = ""
		}
	}
	return d.Transport.Publish(ctx, topic, msgs)
}

var groups atomic.Int64

func (d *mutant) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	pattern := sub.Topic
	switch d.m {
	case "one-group":
		sub.Group = "one"
	case "no-sharing":
		sub.Group = fmt.Sprint(sub.Group, groups.Add(1))
	case "pattern-all":
		if sub.Pattern {
			sub.Topic = ">"
		}
	case "replay-none", "replay-ignored":
		// StartOldest quietly starts at the new messages.
		if sub.Start == mbdriver.StartOldest {
			sub.Start = mbdriver.StartNew
		}
	case "replay-pattern-none":
		if sub.Pattern && sub.Start == mbdriver.StartOldest {
			sub.Start = mbdriver.StartNew
		}
	case "replay-rewinds":
		// StartOldest always makes a new group, so an existing group
		// starts over.
		if sub.Start == mbdriver.StartOldest {
			sub.Group = fmt.Sprint(sub.Group, "-", groups.Add(1))
		}
	case "start-new-replays":
		if sub.Start == mbdriver.StartNew {
			sub.Start = mbdriver.StartOldest
		}
	case "start-invalid":
		if sub.Start != mbdriver.StartOldest {
			sub.Start = mbdriver.StartNew
		}
	}
	r, err := d.Transport.Subscribe(ctx, sub)
	if err != nil {
		return nil, err
	}
	mr := &mutantReceiver{Receiver: r, m: d.m, pattern: sub.Pattern, topic: pattern}
	if e, ok := r.(mbdriver.Extender); ok {
		return &mutantExtender{mutantReceiver: mr, e: e}, nil
	}
	return mr, nil
}

type mutantReceiver struct {
	mbdriver.Receiver
	m       string
	pattern bool
	topic   string
	closed  atomic.Bool
	acked   sync.Map // ids acked through this receiver
}

func (r *mutantReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	if r.m == "closed-error" && r.closed.Load() {
		return nil, errors.New("receiver closed")
	}
	msgs, err := r.Receiver.Receive(ctx, max)
	if r.m == "ctx-swallowed" && ctx.Err() != nil {
		return nil, nil
	}
	for _, m := range msgs {
		switch r.m {
		case "drop-header":
			delete(m.Headers, "x-unicode")
		case "binary-header":
			for k, v := range m.Headers {
				m.Headers[k] = strings.ToValidUTF8(v, "?")
			}
		case "rewrite-id":
			m.ID = "broker-" + m.ID[:8]
		case "pattern-topic":
			if r.pattern {
				m.Topic = r.topic
			}
		case "extend-counts":
			if n, ok := extensions.Load(m.ID); ok {
				m.Attempt += int(n.(*atomic.Int64).Load())
			}
		}
	}
	if r.m == "reorder" {
		slices.Reverse(msgs)
	}
	return msgs, err
}

func (r *mutantReceiver) Ack(ctx context.Context, msgs []*mbdriver.Message) error {
	if r.m == "ack-noop" {
		return nil
	}
	for _, m := range msgs {
		r.acked.Store(m.ID, true)
	}
	return r.Receiver.Ack(ctx, msgs)
}

func (r *mutantReceiver) Nack(ctx context.Context, msgs []*mbdriver.Message, delay time.Duration) error {
	switch r.m {
	case "nack-noop":
		return nil
	case "nack-no-delay":
		delay = 0
	}
	return r.Receiver.Nack(ctx, msgs, delay)
}

func (r *mutantReceiver) Close() error {
	r.closed.Store(true)
	if r.m == "close-keeps" {
		return nil // unacked messages stay in flight forever
	}
	return r.Receiver.Close()
}

// mutantExtender is a mutantReceiver that implements mbdriver.Extender,
// for a driver that declares Extend.
type mutantExtender struct {
	*mutantReceiver
	e mbdriver.Extender
}

func (r *mutantExtender) ExtendInterval() time.Duration { return r.e.ExtendInterval() }

func (r *mutantExtender) Extend(ctx context.Context, msgs []*mbdriver.Message) error {
	switch r.m {
	case "extend-noop":
		return nil
	case "extend-closed-nil":
		if r.closed.Load() {
			return nil
		}
	case "extend-settled-error":
		for _, m := range msgs {
			if _, ok := r.acked.Load(m.ID); ok {
				return fmt.Errorf("message %q was acked", m.ID)
			}
		}
	case "extend-counts":
		for _, m := range msgs {
			n, _ := extensions.LoadOrStore(m.ID, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
		}
	}
	return r.e.Extend(ctx, msgs)
}
