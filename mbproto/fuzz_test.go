package mbproto_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbproto"
	"github.com/mb-go/mb/mbproto/internal/testdata/directpb"
	"github.com/mb-go/mb/mbproto/internal/testpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// FuzzUnmarshal decodes arbitrary bytes through Registry.Decode, as a
// wrapper and as a generated value. Decoding must never panic (the registry
// would turn a panic into an error wrapping mb.ErrPanic) and fails only
// with mb.ErrDecode; what decodes must encode again, and encoding is then
// stable: decoding and re-encoding that output gives the same bytes.
func FuzzUnmarshal(f *testing.F) {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/fuzz"})
	mb.RegisterMessage[OrderPlaced](reg)
	mb.RegisterMessage[directpb.OrderShipped](reg)
	codec := mbproto.New(&mbproto.Options{Marshal: proto.MarshalOptions{Deterministic: true}})

	seed := func(m proto.Message) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	v2 := seed(&testpb.OrderPlacedV2{OrderId: "o", Coupon: "c", ShipTo: &testpb.Address{City: "x"}})
	f.Add(seed(fullOrder()), false)
	f.Add(v2, false)
	f.Add(v2, true)
	f.Add(seed(&directpb.OrderShipped{OrderId: "o", Carrier: "c", Parcels: []string{"a", "b"}}), true)
	f.Add([]byte{}, false)
	f.Add(protowire.AppendTag(nil, 3, protowire.StartGroupType), false)
	f.Add([]byte{0x0a, 0x02, 'o', 0xff}, true)
	f.Add([]byte{0x22, 0x04, 0x0a, 0x00, 0x10, 0x01}, false)

	f.Fuzz(func(t *testing.T, data []byte, direct bool) {
		name := OrderPlaced{}.MessageName()
		if direct {
			name = directpb.OrderShipped{}.MessageName()
		}
		env := &mb.Envelope{ID: "1", Source: "/fuzz", SpecVersion: mb.SpecVersion, Type: name, DataContentType: codec.ContentType(), Data: data}
		v, err := reg.Decode(env, codec)
		if err != nil {
			if errors.Is(err, mb.ErrPanic) || !errors.Is(err, mb.ErrDecode) {
				t.Fatalf("Decode(%x) = %v", data, err)
			}
			return
		}
		if w, ok := v.(OrderPlaced); ok && w.OrderPlaced == nil {
			t.Fatal("decoded a wrapper without a message")
		}
		once, err := reg.Encode(v, codec, nil)
		if err != nil {
			t.Fatalf("Encode of what Decode(%x) returned: %v", data, err)
		}
		v, err = reg.Decode(once, codec)
		if err != nil {
			t.Fatalf("Decode of the re-encoded %x: %v", once.Data, err)
		}
		twice, err := reg.Encode(v, codec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(once.Data, twice.Data) {
			t.Fatalf("encoding is not stable for input %x:\n%x\n%x", data, once.Data, twice.Data)
		}
	})
}
