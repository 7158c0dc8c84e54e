// Command producer places a few orders: a PlaceOrder command handler
// publishes an OrderPlaced event for each through an mb.Publisher over
// Redis Streams. Run the consumer (../consumer) to handle them.
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/redis-events/producer -n 3
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/examples/redis-events/orders"
	"github.com/mb-go/mb/mbredis"
	"github.com/redis/go-redis/v9"
)

// PlaceOrder is the command; it stays in this process, so it needs no
// MessageName.
type PlaceOrder struct {
	OrderID  string
	Customer string
	Total    int
}

func main() {
	n := flag.Int("n", 3, "how many orders to place")
	flag.Parse()
	if err := run(*n); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func run(n int) error {
	opts, err := redis.ParseURL(orders.RedisURL())
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	// Commands stop at their context's deadline in the client itself
	// (see Deadlines in the mbredis documentation).
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	defer client.Close()
	streams, err := mbredis.NewStreams(client, &mbredis.StreamsOptions{KeyPrefix: orders.KeyPrefix()})
	if err != nil {
		return err
	}
	defer streams.Close()

	reg := mb.NewRegistry(&mb.RegistryOptions{Source: orders.Source})
	orders.Register(reg)
	pub, err := mb.NewPublisher(streams, reg, nil)
	if err != nil {
		return err
	}
	defer pub.Close()

	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, cmd PlaceOrder) error {
		// ... store the order ...
		// Publishing is not transactional: use an outbox when the event
		// must leave if and only if the order is stored.
		return pub.Publish(ctx, orders.OrderPlaced{OrderID: cmd.OrderID, Customer: cmd.Customer, Total: cmd.Total})
	})

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	customers := []string{"alice", "bob", "carol"}
	for i := 1; i <= n; i++ {
		cmd := PlaceOrder{
			OrderID:  fmt.Sprintf("order-%d", i),
			Customer: customers[(i-1)%len(customers)],
			Total:    1000 * i,
		}
		if err := mb.Exec(ctx, bus, cmd); err != nil {
			return fmt.Errorf("place %s: %w", cmd.OrderID, err)
		}
		fmt.Printf("placed %s for %s\n", cmd.OrderID, cmd.Customer)
	}
	return nil
}
