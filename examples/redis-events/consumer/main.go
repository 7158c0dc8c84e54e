// Command consumer handles the OrderPlaced events of the producer
// (../producer): an mb.Consumer in consumer group "shipping" receives them
// from Redis Streams, decodes them and runs the subscribed handler. The
// first run of a group also ships the orders placed before it (the group
// starts at the oldest entry of the stream); later runs resume where the
// group left off. It stops on SIGINT or SIGTERM after finishing the events
// in hand (graceful drain).
//
//	REDIS_URL=redis://127.0.0.1:6379/0 go run ./examples/redis-events/consumer
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/examples/redis-events/orders"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
	"github.com/redis/go-redis/v9"
)

func main() {
	group := flag.String("group", "shipping", "the consumer group")
	name := flag.String("consumer", "", "the consumer's name in its group, unique among the running consumers; "+
		"a consumer started again with the same name handles at once the events it had not acknowledged "+
		"(default: a new generated name)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *group, *name); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

func ship(ctx context.Context, e orders.OrderPlaced) error {
	md, _ := mb.MetadataFrom(ctx)
	fmt.Printf("shipping %s for %s (%d.%02d) [id %s]\n", e.OrderID, e.Customer, e.Total/100, e.Total%100, md.ID)
	return nil
}

func run(ctx context.Context, group, name string) error {
	opts, err := redis.ParseURL(orders.RedisURL())
	if err != nil {
		return fmt.Errorf("REDIS_URL: %w", err)
	}
	// Commands stop at their context's deadline in the client itself
	// (see Deadlines in the mbredis documentation).
	opts.ContextTimeoutEnabled = true
	client := redis.NewClient(opts)
	defer client.Close()
	prefix := orders.KeyPrefix()
	streams, err := mbredis.NewStreams(client, &mbredis.StreamsOptions{KeyPrefix: prefix})
	if err != nil {
		return err
	}
	defer streams.Close()

	reg := mb.NewRegistry()
	orders.Register(reg)
	bus := mb.New()
	// A stable handler name (it keys the inbox, when one is configured).
	mb.Subscribe(bus, ship, mb.WithName("shipping.ship"))

	c, err := mb.NewConsumer(bus, streams, reg, &mb.ConsumerOptions{
		Topic:    orders.Topic,
		Group:    group,
		Consumer: name,
		// A new group starts at the oldest entry of the stream, so that
		// orders placed before this consumer first ran are shipped too.
		// An existing group resumes where it left off.
		Start: mbdriver.StartOldest,
		// Messages that cannot be decoded, or keep failing, go to the
		// stream "<prefix>orders.placed.dlq".
		DeadLetter: streams,
	})
	if err != nil {
		return err
	}
	fmt.Printf("consuming %s%s as group %s; Ctrl-C to stop\n", prefix, orders.Topic, group)
	if err := c.Run(ctx); err != nil {
		return err
	}
	fmt.Println("stopped")
	return nil
}
