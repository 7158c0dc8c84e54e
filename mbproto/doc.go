// Package mbproto is an [mb.Codec] for Protocol Buffers: messages that
// cross a process through mb travel in the protobuf binary format instead
// of JSON, with the message types protoc-gen-go generates.
//
// It is a module of its own, github.com/mb-go/mb/mbproto, so that the root
// module keeps depending on the standard library only; it depends on
// google.golang.org/protobuf.
//
// # Usage
//
// Wrap each generated message in a small struct (see the next section),
// make a [Codec] the registry's codec, and register the wrappers: the
// [mb.Publisher] and the [mb.Consumer] use the registry's codec, and the
// registry refuses a type the codec cannot carry ([Codec.CheckType]):
//
//	type OrderPlaced struct{ *orderspb.OrderPlaced }
//
//	func (OrderPlaced) MessageName() string { return "orders.placed" }
//
//	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/orders", Codec: mbproto.New(nil)})
//	mb.RegisterMessage[OrderPlaced](reg)
//
//	pub, err := mb.NewPublisher(transport, reg, nil)
//	...
//	err = pub.Publish(ctx, OrderPlaced{&orderspb.OrderPlaced{OrderId: "o-1"}})
//
// and on the consuming side
//
//	mb.Subscribe(bus, func(ctx context.Context, e OrderPlaced) error {
//		log.Println("placed", e.GetOrderId())
//		return nil
//	})
//	c, err := mb.NewConsumer(bus, transport, reg, &mb.ConsumerOptions{
//		Topic: "orders.placed", Group: "shipping",
//	})
//
// A registry with JSON messages too can keep JSON as its codec and give the
// protobuf codec to the publisher and consumer of the protobuf messages
// instead (PublisherOptions.Codec, ConsumerOptions.Codec or Codecs);
// [mb.Registry.Encode] and [mb.Registry.Decode] take a codec the same
// way. Producer and consumer must both use a protobuf codec for a message
// type; the wire name (MessageName) and the .proto schema are the
// contract between them, and protobuf's rules for evolving a schema apply
// (add fields with new numbers; never reuse a number).
//
// # The wrapper pattern, and why
//
// mb's message types are struct values with a MessageName() string method
// on the value receiver, and handlers take the message by value. A
// generated message type has its methods on the pointer receiver and holds
// a no-copy marker, so using it as a value copies a lock: go vet
// (copylocks) reports a value-receiver MessageName on it and every handler
// like func(ctx context.Context, e pb.OrderPlaced) error; protobuf-go
// documents that its messages must not be copied.
//
// A wrapper avoids all of this. It is a struct that embeds exactly one
// pointer to a generated message:
//
//	type OrderPlaced struct{ *orderspb.OrderPlaced }
//
//	func (OrderPlaced) MessageName() string { return "orders.placed" }
//
// Copying an OrderPlaced copies a pointer, which vet accepts. The value
// implements proto.Message through the embedded pointer's ProtoReflect,
// and the generated getters and fields are promoted, so handlers write
// e.GetOrderId() or e.OrderId. Build one with
// OrderPlaced{&orderspb.OrderPlaced{...}}. Only the embedded message is
// encoded: other fields a wrapper may have stay behind.
//
// When decoding, [mb.Registry.Decode] passes the codec a pointer to a zero
// wrapper, whose embedded pointer is nil; the codec finds the embedded
// field (once per type) and sets it to a new message holding the data, so
// handlers always get a non-nil message. When encoding, a wrapper whose
// embedded pointer is nil (the zero OrderPlaced{}) encodes as the empty
// message, as protobuf treats a nil message; it is decoded as a wrapper
// around a new, empty message. Several handlers of one event share its
// message through the pointer: they must treat it as read-only, as with
// any event.
//
// A generated message type can also be registered directly, with a
// MessageName method on its value receiver declared in the generated
// package, and the codec encodes and decodes it (a value to encode is
// copied to make it addressable). It works, but vet reports the method and
// every handler that takes the message by value, and the values are copied
// on the way; use a wrapper.
//
// # Content type
//
// The codec writes "application/protobuf" ([DefaultContentType], the name
// the CloudEvents protobuf format uses) to the envelope's datacontenttype,
// and [mb.Registry.Decode] decodes a payload only when its datacontenttype
// is the codec's media type, parameters and case aside (so
// "application/protobuf; proto=orders.v1.OrderPlaced" is decoded) or when
// the envelope has none. Another media type, "application/json" or
// "application/x-protobuf" included, is an error wrapping [mb.ErrDecode]
// without decoding anything; a consumer dead-letters such a message at
// once. To exchange messages with systems that write the older
// "application/x-protobuf", set [Options.ContentType] to it; one codec
// decodes one media type. A consumer reading a topic that carries several
// formats, during a migration from JSON for example, lists the others in
// [mb.ConsumerOptions].Codecs and each message is decoded by the codec of
// its content type:
//
//	c, err := mb.NewConsumer(bus, transport, reg, &mb.ConsumerOptions{
//		Topic: "orders.placed", Group: "shipping",
//		Codec:  mbproto.New(nil),
//		Codecs: []mb.Codec{mb.JSONCodec{}, mbproto.New(&mbproto.Options{ContentType: "application/x-protobuf"})},
//	})
//
// The payload is the message alone, in the protobuf binary format, without
// a length prefix or a type URL: the envelope's type attribute (the
// MessageName) says which message it is.
//
// # Errors
//
// [Codec.Marshal] and [Codec.Unmarshal] return errors of the protobuf
// library as they are (for example for data that is not a valid encoding
// of the message, or a string field that is not valid UTF-8), and an error
// wrapping [ErrUnsupportedType], naming the type and the fix, for a value
// that is not a protobuf message in one of the two forms above. Through mb
// they come wrapped once more: [mb.Registry.Decode] wraps every decoding
// failure in [mb.ErrDecode] (a message that will never decode, which a
// consumer dead-letters), and [mb.Registry.Encode] and [mb.Publisher]
// return the codec's error with the message name. Decoding never panics on
// any input.
package mbproto
