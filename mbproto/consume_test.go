package mbproto_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbproto"
	"github.com/mb-go/mb/mbproto/internal/testpb"
	"github.com/mb-go/mb/mbtest"
	"google.golang.org/protobuf/proto"
)

// TestPublishConsume sends protobuf events through mb's in-memory broker:
// a Publisher encodes them with the codec, a Consumer decodes them into the
// wrapper and runs the typed handler. A payload the codec cannot decode, a
// corrupt one or one written by a JSON producer, is dead-lettered at once.
func TestPublishConsume(t *testing.T) {
	const topic, group = "orders.placed", "shipping"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := mbmem.New(nil)
	t.Cleanup(func() { _ = tr.Close() }) // after the consumer stops (cleanups run last first)
	// Create the group and the dead-letter subscription before anything
	// is published, so that the group keeps every message.
	r, err := tr.Subscribe(ctx, mbdriver.Subscription{Topic: topic, Group: group})
	if err != nil {
		t.Fatal(err)
	}
	_ = r.Close()
	dlq, err := tr.Subscribe(ctx, mbdriver.Subscription{Topic: topic + ".dlq", Group: "ops"})
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Close()

	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders"})
	mb.RegisterMessage[OrderPlaced](reg)
	codec := mbproto.New(nil)

	// Producers: one with the protobuf codec, one still on JSON.
	wire := &recordingPublisher{Publisher: tr}
	pub, err := mb.NewPublisher(wire, reg, &mb.PublisherOptions{Codec: codec})
	if err != nil {
		t.Fatal(err)
	}
	jsonPub, err := mb.NewPublisher(tr, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	sent := []*testpb.OrderPlaced{fullOrder(), {OrderId: "o-2", Items: []string{"lamp"}}}
	for _, m := range sent[:1] {
		if err := pub.Publish(ctx, OrderPlaced{m}); err != nil {
			t.Fatal(err)
		}
	}
	if err := jsonPub.Publish(ctx, OrderPlaced{&testpb.OrderPlaced{OrderId: "from-json"}}); err != nil {
		t.Fatal(err)
	}
	corrupt := &mbdriver.Message{ID: "corrupt", Body: []byte{0x0a, 0x7f, 'x'}, Headers: map[string]string{
		"ce-id": "corrupt", "ce-source": "/orders", "ce-specversion": "1.0", "ce-type": topic, "content-type": "application/protobuf",
	}}
	if err := tr.Publish(ctx, topic, []*mbdriver.Message{corrupt}); err != nil {
		t.Fatal(err)
	}
	for _, m := range sent[1:] {
		if err := pub.Publish(ctx, OrderPlaced{m}); err != nil {
			t.Fatal(err)
		}
	}

	// The payload on the wire is plain protobuf, labelled as such.
	msgs := wire.sent
	if len(msgs) != len(sent) {
		t.Fatalf("published %d messages, want %d", len(msgs), len(sent))
	}
	for i, m := range msgs {
		var got testpb.OrderPlaced
		if err := proto.Unmarshal(m.Body, &got); err != nil || !proto.Equal(&got, sent[i]) {
			t.Errorf("message %d: body decodes to %v, %v", i, &got, err)
		}
		if ct := m.Headers["content-type"]; ct != "application/protobuf" {
			t.Errorf("message %d: content-type %q", i, ct)
		}
	}

	// The consumer.
	bus := mb.New()
	handled := make(chan OrderPlaced, 10)
	mb.Subscribe(bus, func(ctx context.Context, e OrderPlaced) error {
		handled <- e
		return nil
	})
	c, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{
		Topic: topic, Group: group, Codec: codec, DeadLetter: tr, Concurrency: 1,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ErrorHandler: func(context.Context, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	mbtest.RunConsumer(t, ctx, c) // stopped, and Run's error checked, at the end

	for i, want := range sent {
		select {
		case e := <-handled:
			if e.OrderPlaced == nil || !proto.Equal(e, want) {
				t.Errorf("handled event %d = %v, want %v", i, e.OrderPlaced, want)
			}
		case <-ctx.Done():
			t.Fatalf("event %d not handled", i)
		}
	}

	dead := map[string]string{} // message id → mb-error
	for len(dead) < 2 {
		got, err := dlq.Receive(ctx, 10)
		if err != nil {
			t.Fatalf("dead-letter receive: %v (have %v)", err, dead)
		}
		for _, m := range got {
			dead[m.Headers["ce-id"]] = m.Headers[mb.HeaderError]
		}
		if err := dlq.Ack(ctx, got); err != nil {
			t.Fatal(err)
		}
	}
	var jsonErr string
	for id, e := range dead {
		if id != "corrupt" {
			jsonErr = e
		}
	}
	if e := dead["corrupt"]; !strings.Contains(e, mb.ErrDecode.Error()) {
		t.Errorf("mb-error of the corrupt message = %q", e)
	}
	if !strings.Contains(jsonErr, `content type "application/json", but the codec decodes "application/protobuf"`) {
		t.Errorf("mb-error of the JSON message = %q", jsonErr)
	}
	select {
	case e := <-handled:
		t.Errorf("an undecodable message reached the handler: %v", e.OrderPlaced)
	default:
	}
}

// recordingPublisher records what it publishes. It is used from one
// goroutine.
type recordingPublisher struct {
	mbdriver.Publisher
	sent []*mbdriver.Message
}

func (p *recordingPublisher) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	p.sent = append(p.sent, msgs...)
	return p.Publisher.Publish(ctx, topic, msgs)
}

// A topic moving from JSON to protobuf: a consumer whose Codec is the
// protobuf codec and whose Codecs list the JSON one handles both kinds of
// message through the same typed handler.
func TestConsumeDuringMigrationFromJSON(t *testing.T) {
	const topic, group = "orders.placed", "shipping"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tr := mbmem.New(nil)
	t.Cleanup(func() { _ = tr.Close() }) // after the consumer stops (cleanups run last first)
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders"})
	mb.RegisterMessage[OrderPlaced](reg)
	codec := mbproto.New(nil)

	for _, c := range []mb.Codec{mb.JSONCodec{}, codec} {
		pub, err := mb.NewPublisher(tr, reg, &mb.PublisherOptions{Codec: c})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, OrderPlaced{&testpb.OrderPlaced{OrderId: c.ContentType(), Items: []string{"lamp"}}}); err != nil {
			t.Fatal(err)
		}
	}
	bus := mb.New()
	handled := make(chan *testpb.OrderPlaced, 2)
	mb.Subscribe(bus, func(_ context.Context, e OrderPlaced) error {
		handled <- e.OrderPlaced
		return nil
	})
	c, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{
		Topic: topic, Group: group, Start: mbdriver.StartOldest, Concurrency: 1,
		Codec: codec, Codecs: []mb.Codec{mb.JSONCodec{}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ErrorHandler: func(context.Context, error) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, ctx, c)
	for _, want := range []string{"application/json", "application/protobuf"} {
		select {
		case e := <-handled:
			if e == nil || e.GetOrderId() != want || len(e.GetItems()) != 1 || e.GetItems()[0] != "lamp" {
				t.Errorf("handled %v, want order %q with its item", e, want)
			}
		case <-ctx.Done():
			t.Fatalf("order %q not handled", want)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("Run = %v", err)
	}
}
