package mbmem_test

import (
	"context"
	"fmt"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

func ExampleNew() {
	ctx := context.Background()
	tr := mbmem.New(nil)
	defer tr.Close()

	// Subscribe first: by default a group starts at the messages published
	// after it was created.
	r, err := tr.Subscribe(ctx, mbdriver.Subscription{Topic: "orders.created", Group: "billing"})
	if err != nil {
		panic(err)
	}
	err = tr.Publish(ctx, "orders.created", []*mbdriver.Message{
		{ID: "m1", Headers: map[string]string{"ce-type": "orders.created"}, Body: []byte(`{"id":1}`)},
	})
	if err != nil {
		panic(err)
	}
	msgs, err := r.Receive(ctx, 10)
	if err != nil {
		panic(err)
	}
	for _, m := range msgs {
		fmt.Println(m.ID, m.Topic, m.Attempt, string(m.Body))
	}
	if err := r.Ack(ctx, msgs); err != nil {
		panic(err)
	}
	// Output:
	// m1 orders.created 1 {"id":1}
}

// A group created with StartOldest also gets the messages the broker
// retained from before it existed.
func ExampleNew_startOldest() {
	ctx := context.Background()
	tr := mbmem.New(&mbmem.Options{Retain: 100}) // per topic
	defer tr.Close()

	for _, id := range []string{"m1", "m2"} {
		if err := tr.Publish(ctx, "orders.created", []*mbdriver.Message{{ID: id, Body: []byte(id)}}); err != nil {
			panic(err)
		}
	}
	r, err := tr.Subscribe(ctx, mbdriver.Subscription{
		Topic: "orders.created", Group: "reporting", Start: mbdriver.StartOldest,
	})
	if err != nil {
		panic(err)
	}
	msgs, err := r.Receive(ctx, 10)
	if err != nil {
		panic(err)
	}
	for _, m := range msgs {
		fmt.Println(m.ID)
	}
	if err := r.Ack(ctx, msgs); err != nil {
		panic(err)
	}
	// Output:
	// m1
	// m2
}
