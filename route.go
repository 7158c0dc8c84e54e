package mb

// Router maps a message name (the result of its MessageName method, the
// CloudEvents "type") to the topic it is published to. The same Router must
// be used by publishers and consumers of a message, so that both sides
// agree on where it travels. A Router must be safe for concurrent use and
// must return a non-empty topic; the [Publisher] reports an empty one as an
// error.
type Router func(messageName string) string

// DefaultRouter is the Router used when none is configured: every message
// travels on the topic named after its message name, so "orders.placed"
// goes to topic "orders.placed". It suits brokers where topics are cheap
// (Redis Streams, NATS subjects); with a broker where they are not, route
// several names to one topic and let the consumer's [Registry] tell them
// apart.
func DefaultRouter(messageName string) string { return messageName }
