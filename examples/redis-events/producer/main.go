// Command producer places a few orders: a PlaceOrder command handler
// emits an OrderPlaced event for each, which the bus forwards to Redis
// Streams through an mb.Publisher once the command's unit of work has
// committed. Run the consumer (../consumer) to handle them.
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

	// Forward: the integration events a unit emits (those the registry
	// knows) are published after it commits, and never if it rolls back.
	// An event is lost if the process dies between the commit and the
	// publish: with a database, an mb.Outbox in Forward's place stores it
	// in the order's transaction instead, and a relay publishes it.
	bus := mb.New(&mb.Options{Forward: pub})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, cmd PlaceOrder) error {
		// ... store the order ...
		return mb.Emit(ctx, orders.OrderPlaced{OrderID: cmd.OrderID, Customer: cmd.Customer, Total: cmd.Total})
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
