package mb_test

import (
	"context"
	"fmt"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

// OrderPlaced crosses processes: it has a stable wire name.
type OrderPlaced struct {
	Order string
	Total int
}

func (OrderPlaced) MessageName() string { return "orders.placed" }

// A Publisher sends events to a transport; a Consumer in another service
// receives them with its consumer group and runs that service's handlers.
// Here both sides share an in-memory transport.
func ExampleConsumer() {
	ctx := context.Background()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders"})
	mb.RegisterMessage[OrderPlaced](reg)
	transport := mbmem.New(nil)
	defer transport.Close()

	// The producing service.
	pub, err := mb.NewPublisher(transport, reg, nil)
	if err != nil {
		panic(err)
	}
	if err := pub.Publish(ctx, OrderPlaced{"o-1", 30}, OrderPlaced{"o-2", 12}); err != nil {
		panic(err)
	}

	// The consuming service. Its group is new, so StartOldest makes it
	// handle the events published before it first ran.
	bus := mb.New()
	handled := make(chan struct{})
	n := 0
	mb.Subscribe(bus, func(ctx context.Context, e OrderPlaced) error {
		md, _ := mb.MetadataFrom(ctx)
		fmt.Printf("shipping %s (total %d), correlation id kept: %t\n", e.Order, e.Total, md.CorrelationID != "")
		if n++; n == 2 {
			close(handled)
		}
		return nil
	}, mb.WithName("shipping.OrderPlaced"))
	c, err := mb.NewConsumer(bus, transport, reg, &mb.ConsumerOptions{
		Topic: "orders.placed", Group: "shipping", Start: mbdriver.StartOldest,
		Concurrency: 1, // one at a time, in order, for this example's output
	})
	if err != nil {
		panic(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- c.Run(runCtx) }()
	<-handled
	stop() // drains: in-flight messages finish and are acknowledged
	fmt.Println("Run:", <-done)
	// Output:
	// shipping o-1 (total 30), correlation id kept: true
	// shipping o-2 (total 12), correlation id kept: true
	// Run: <nil>
}

// A Registry turns a message into a CloudEvents envelope and back; only
// registered names are ever decoded. Transports carry the envelope as
// headers and a body (binary mode) or as one JSON document (structured
// mode).
func ExampleRegistry() {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders"})
	mb.RegisterMessage[OrderPlaced](reg)

	env, err := reg.Encode(OrderPlaced{"o-1", 30}, nil, &mb.Envelope{Subject: "o-1"})
	if err != nil {
		panic(err)
	}
	h := env.ToHeaders()
	fmt.Println(h["ce-type"], h["ce-source"], h["ce-subject"], h["content-type"], string(env.Data))

	back, err := mb.EnvelopeFromHeaders(h, env.Data)
	if err != nil {
		panic(err)
	}
	v, err := reg.Decode(back, nil)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%#v\n", v)

	_, err = reg.Decode(&mb.Envelope{Type: "orders.cancelled", Data: []byte(`{}`)}, nil)
	fmt.Println(err)
	// Output:
	// orders.placed /orders o-1 application/json {"Order":"o-1","Total":30}
	// mb_test.OrderPlaced{Order:"o-1", Total:30}
	// mb: unknown message: "orders.cancelled" is not a registered message name
}
