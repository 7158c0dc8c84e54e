package mbproto_test

import (
	"context"
	"fmt"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbproto"
	"github.com/mb-go/mb/mbproto/internal/testpb"
)

// OrderPlaced wraps the generated message: copying it copies a pointer,
// so handlers take it by value and go vet stays quiet. The generated
// getters are promoted.
type OrderPlaced struct{ *testpb.OrderPlaced }

// MessageName is the stable wire name, on the value receiver as mb
// requires.
func (OrderPlaced) MessageName() string { return "orders.placed" }

// Example shows the wrapper pattern: a protobuf event encoded into an
// envelope, decoded back into the wrapper and handled by a typed handler.
func Example() {
	// The registry's codec: Encode, Decode, publishers and consumers use
	// it, and RegisterMessage refuses types it cannot carry.
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders", Codec: mbproto.New(nil)})
	mb.RegisterMessage[OrderPlaced](reg)

	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e OrderPlaced) error {
		fmt.Printf("ship order %s (%d items) to %s\n", e.GetOrderId(), len(e.GetItems()), e.GetShipTo().GetCity())
		return nil
	})

	// Producer: the payload is the protobuf encoding of the message.
	env, err := reg.Encode(OrderPlaced{&testpb.OrderPlaced{
		OrderId: "o-42",
		Items:   []string{"book", "pen"},
		ShipTo:  &testpb.Address{City: "Lisbon"},
	}}, nil, nil)
	if err != nil {
		panic(err)
	}
	fmt.Println(env.Type, env.DataContentType, len(env.Data), "bytes")

	// Consumer: Decode returns an OrderPlaced whose message the codec
	// allocated; the bus hands it to the typed handler.
	v, err := reg.Decode(env, nil)
	if err != nil {
		panic(err)
	}
	if err := mb.Publish(context.Background(), bus, v); err != nil {
		panic(err)
	}
	// Output:
	// orders.placed application/protobuf 27 bytes
	// ship order o-42 (2 items) to Lisbon
}
