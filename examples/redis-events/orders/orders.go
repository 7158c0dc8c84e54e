// Package orders holds the messages that the producer and the consumer of
// the redis-events example exchange. Both sides register them in their
// mb.Registry with [Register], so that they agree on the wire names.
package orders

import (
	"os"

	"github.com/mb-go/mb"
)

// OrderPlaced is published by the producer when an order is placed.
type OrderPlaced struct {
	OrderID  string `json:"order_id"`
	Customer string `json:"customer"`
	Total    int    `json:"total_cents"`
}

// MessageName is the stable wire name of OrderPlaced (the CloudEvents
// type). With mb.DefaultRouter it is also the topic, so the events travel
// on the Redis stream "<prefix>orders.placed".
func (OrderPlaced) MessageName() string { return "orders.placed" }

// PartitionKey keeps the events of one customer in order: a consumer
// handles messages with the same key one after the other.
func (e OrderPlaced) PartitionKey() string { return e.Customer }

// Topic is the topic OrderPlaced events travel on (mb.DefaultRouter maps
// a message name to the topic of the same name).
const Topic = "orders.placed"

// Source is the CloudEvents source of the events the producer publishes.
const Source = "/examples/orders"

// Register registers the messages of this package in r.
func Register(r *mb.Registry) {
	mb.RegisterMessage[OrderPlaced](r)
}

// RedisURL returns the REDIS_URL environment variable, or
// redis://127.0.0.1:6379/0.
func RedisURL() string {
	if u := os.Getenv("REDIS_URL"); u != "" {
		return u
	}
	return "redis://127.0.0.1:6379/0"
}

// KeyPrefix returns the REDIS_KEY_PREFIX environment variable, or
// "mbexample:": the prefix of the Redis keys of the example's streams.
func KeyPrefix() string {
	if p, ok := os.LookupEnv("REDIS_KEY_PREFIX"); ok {
		return p
	}
	return "mbexample:"
}
