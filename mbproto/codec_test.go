package mbproto_test

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbproto"
	"github.com/mb-go/mb/mbproto/internal/testdata/directpb"
	"github.com/mb-go/mb/mbproto/internal/testpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// OrderPlacedV2 wraps the later version of the OrderPlaced message.
type OrderPlacedV2 struct{ *testpb.OrderPlacedV2 }

func (OrderPlacedV2) MessageName() string { return "orders.placed.v2" }

// Plain is a message type that is not a protobuf message.
type Plain struct{ N int }

func (Plain) MessageName() string { return "plain" }

// Look-alikes of a wrapper that the codec rejects.
type (
	twoMessages struct {
		*testpb.OrderPlaced
		*testpb.Address
	}
	orderPlaced = testpb.OrderPlaced
	hidden      struct{ *orderPlaced }
	nested      struct{ *OrderPlaced }
)

const directName = "test.order.shipped"

func newRegistry(t testing.TB) *mb.Registry {
	t.Helper()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/test"})
	mb.RegisterMessage[OrderPlaced](reg)
	mb.RegisterMessage[OrderPlacedV2](reg)
	mb.RegisterMessage[directpb.OrderShipped](reg)
	mb.RegisterMessage[Plain](reg)
	return reg
}

func fullOrder() *testpb.OrderPlaced {
	return &testpb.OrderPlaced{
		OrderId:     "o-1",
		AmountCents: 12345,
		Items:       []string{"book", "pen", "caneta ✒"},
		Quantities:  map[string]int32{"book": 1, "pen": 3, "ink": 12},
		ShipTo:      &testpb.Address{City: "Lisbon", Country: "PT"},
		WeightKg:    1.25,
	}
}

// protoOf returns the protobuf message of a value Registry.Decode returned:
// the embedded pointer of a wrapper, or a pointer to a copy of a generated
// message value; nil for anything else. The copy is made with reflection,
// as the codec does, so that this test code copies no lock of its own (go
// vet checks it).
func protoOf(v any) proto.Message {
	if m, ok := v.(proto.Message); ok {
		return m
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return nil
	}
	p := reflect.New(rv.Type())
	p.Elem().Set(rv)
	m, _ := p.Interface().(proto.Message)
	return m
}

// orderID returns the order_id field of a decoded message, or "".
func orderID(v any) string {
	m := protoOf(v)
	if m == nil {
		return ""
	}
	r := m.ProtoReflect()
	if f := r.Descriptor().Fields().ByName("order_id"); f != nil {
		return r.Get(f).String()
	}
	return ""
}

func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one wrapping %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Errorf("error %q does not wrap %q", err, target)
		}
	}
}

func wantText(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v does not mention %q", err, p)
		}
	}
}

func TestRegistryRoundTripWrapper(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)
	want := fullOrder()
	env, err := reg.Encode(OrderPlaced{want}, codec, &mb.Envelope{Subject: "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != "orders.placed" || env.DataContentType != "application/protobuf" || env.Subject != "o-1" {
		t.Errorf("envelope %+v", env)
	}
	// The payload is the plain protobuf encoding: any protobuf consumer
	// reads it.
	var raw testpb.OrderPlaced
	if err := proto.Unmarshal(env.Data, &raw); err != nil || !proto.Equal(&raw, want) {
		t.Fatalf("proto.Unmarshal(payload) = %v, %v; want %v", &raw, err, want)
	}

	v, err := reg.Decode(env, codec)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := v.(OrderPlaced)
	if !ok {
		t.Fatalf("Decode returned a %T, want OrderPlaced", v)
	}
	if got.OrderPlaced == nil || got.OrderPlaced == want {
		t.Fatalf("the embedded message is %p (sent %p); Decode must allocate a new one", got.OrderPlaced, want)
	}
	if !proto.Equal(got, want) {
		t.Errorf("decoded %v, want %v", got.OrderPlaced, want)
	}
	if got.GetShipTo().GetCity() != "Lisbon" || got.Quantities["ink"] != 12 {
		t.Errorf("promoted getters and fields: %v", got.OrderPlaced)
	}

	// Through structured mode too: the binary payload travels as
	// data_base64.
	js, err := mb.MarshalStructured(env)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"data_base64"`)) {
		t.Errorf("structured event without data_base64: %s", js)
	}
	env2, err := mb.UnmarshalStructured(js)
	if err != nil {
		t.Fatal(err)
	}
	v, err = reg.Decode(env2, codec)
	if err != nil || !proto.Equal(protoOf(v), want) {
		t.Errorf("structured round trip = %v, %v", v, err)
	}
}

func TestRegistryRoundTripDirect(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)
	// A composite literal is the one way to pass a generated value that go
	// vet accepts; a variable would be a copied lock.
	env, err := reg.Encode(directpb.OrderShipped{OrderId: "o-2", Carrier: "post", Parcels: []string{"p1", "p2"}}, codec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env.Type != directName || env.DataContentType != mbproto.DefaultContentType {
		t.Errorf("envelope %+v", env)
	}
	want := &directpb.OrderShipped{OrderId: "o-2", Carrier: "post", Parcels: []string{"p1", "p2"}}
	wantData, err := proto.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(env.Data, wantData) {
		t.Errorf("payload %x, want %x", env.Data, wantData)
	}
	v, err := reg.Decode(env, codec)
	if err != nil {
		t.Fatal(err)
	}
	if reflect.TypeOf(v) != reflect.TypeFor[directpb.OrderShipped]() {
		t.Fatalf("Decode returned a %T, want directpb.OrderShipped", v)
	}
	if got := protoOf(v); !proto.Equal(got, want) {
		t.Errorf("decoded %v, want %v", got, want)
	}
	// The pointer form is what a standalone caller has.
	b, err := codec.Marshal(want)
	if err != nil || !bytes.Equal(b, wantData) {
		t.Errorf("Marshal(*OrderShipped) = %x, %v", b, err)
	}
}

func TestZeroWrapperIsEmptyMessage(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)
	env, err := reg.Encode(OrderPlaced{}, codec, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env.Data == nil || len(env.Data) != 0 {
		t.Errorf("payload of the zero wrapper = %#v, want empty and non-nil", env.Data)
	}
	for _, data := range [][]byte{env.Data, nil} {
		env.Data = data
		v, err := reg.Decode(env, codec)
		if err != nil {
			t.Fatal(err)
		}
		got := v.(OrderPlaced)
		if got.OrderPlaced == nil {
			t.Fatal("decoded wrapper has a nil message; the codec must allocate it")
		}
		if !proto.Equal(got, &testpb.OrderPlaced{}) {
			t.Errorf("decoded %v, want the empty message", got.OrderPlaced)
		}
	}
	// A nil pointer is no message at all, unlike a wrapper around nil.
	if b, err := codec.Marshal((*testpb.OrderPlaced)(nil)); err == nil || b != nil {
		t.Errorf("Marshal(nil *OrderPlaced) = %x, %v; want an error", b, err)
	}
}

func TestMarshalForms(t *testing.T) {
	codec := mbproto.New(&mbproto.Options{Marshal: proto.MarshalOptions{Deterministic: true}})
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(fullOrder())
	if err != nil {
		t.Fatal(err)
	}
	w := OrderPlaced{fullOrder()}
	for _, v := range []any{w, &w, fullOrder(), testpb.OrderPlaced{
		OrderId: "o-1", AmountCents: 12345, Items: []string{"book", "pen", "caneta ✒"},
		Quantities: map[string]int32{"book": 1, "pen": 3, "ink": 12},
		ShipTo:     &testpb.Address{City: "Lisbon", Country: "PT"}, WeightKg: 1.25,
	}} {
		got, err := codec.Marshal(v)
		if err != nil {
			t.Errorf("Marshal(%T) = %v", v, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("Marshal(%T) = %x, want %x", v, got, want)
		}
	}
	// A pointer to a zero wrapper is the empty message as well.
	if got, err := codec.Marshal(&OrderPlaced{}); err != nil || len(got) != 0 {
		t.Errorf("Marshal(&OrderPlaced{}) = %x, %v", got, err)
	}
}

func TestUnmarshalForms(t *testing.T) {
	codec := mbproto.New(nil)
	data, err := proto.Marshal(fullOrder())
	if err != nil {
		t.Fatal(err)
	}

	// A zero wrapper gets a new message.
	var w OrderPlaced
	if err := codec.Unmarshal(data, &w); err != nil || !proto.Equal(w, fullOrder()) {
		t.Errorf("Unmarshal(&OrderPlaced{}) = %v, %v", w.OrderPlaced, err)
	}

	// A wrapper with a message is decoded into in place, which resets it
	// first, as proto.Unmarshal does.
	old := &testpb.OrderPlaced{OrderId: "old", WeightKg: 9}
	w = OrderPlaced{old}
	if err := codec.Unmarshal(data, &w); err != nil || w.OrderPlaced != old || !proto.Equal(old, fullOrder()) {
		t.Errorf("Unmarshal into a wrapper with a message = %v (same message: %v), %v", w.OrderPlaced, w.OrderPlaced == old, err)
	}
	// ... unless Options.Unmarshal.Merge says otherwise.
	merging := mbproto.New(&mbproto.Options{Unmarshal: proto.UnmarshalOptions{Merge: true}})
	w = OrderPlaced{&testpb.OrderPlaced{Items: []string{"first"}}}
	if err := merging.Unmarshal(data, &w); err != nil || len(w.Items) != 4 || w.Items[0] != "first" {
		t.Errorf("merging Unmarshal = %v, %v", w.OrderPlaced, err)
	}

	// A generated message pointer.
	var m testpb.OrderPlaced
	if err := codec.Unmarshal(data, &m); err != nil || !proto.Equal(&m, fullOrder()) {
		t.Errorf("Unmarshal(*testpb.OrderPlaced) = %v, %v", &m, err)
	}

	// A failed decode leaves a zero wrapper's pointer nil.
	w = OrderPlaced{}
	if err := codec.Unmarshal([]byte{0xff}, &w); err == nil || w.OrderPlaced != nil {
		t.Errorf("Unmarshal(bad) = %v, message %v; want an error and no message", err, w.OrderPlaced)
	}
}

func TestCorruptData(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)
	valid, err := proto.Marshal(fullOrder())
	if err != nil {
		t.Fatal(err)
	}
	badUTF8 := protowire.AppendTag(nil, 1, protowire.BytesType)
	badUTF8 = protowire.AppendBytes(badUTF8, []byte{'o', 0xff})
	cases := map[string][]byte{
		"truncated":        valid[:len(valid)-1],
		"bad tag":          {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"field number 0":   {0x00, 0x01},
		"length overflows": {0x0a, 0x7f, 'x'},
		"invalid UTF-8":    badUTF8,
		"text":             []byte(`{"order_id":"o-1"}`),
	}
	for name, data := range cases {
		for _, typ := range []string{"orders.placed", directName} {
			env := &mb.Envelope{ID: "1", Source: "/t", SpecVersion: mb.SpecVersion, Type: typ, DataContentType: "application/protobuf", Data: data}
			v, err := reg.Decode(env, codec)
			if v != nil {
				t.Errorf("%s as %s: Decode returned %v with error %v", name, typ, v, err)
			}
			wantErr(t, err, mb.ErrDecode)
			if errors.Is(err, mb.ErrPanic) || errors.Is(err, mbproto.ErrUnsupportedType) {
				t.Errorf("%s as %s: %v", name, typ, err)
			}
			wantText(t, err, typ)
		}
	}
}

func TestUnsupportedTypes(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)

	// A registered type that is not a protobuf message.
	_, err := reg.Encode(Plain{N: 1}, codec, nil)
	wantErr(t, err, mbproto.ErrUnsupportedType)
	wantText(t, err, "mbproto_test.Plain is not a protobuf message", "type Plain struct{ *pb.Plain }", "MessageName")
	env := &mb.Envelope{ID: "1", Source: "/t", SpecVersion: mb.SpecVersion, Type: "plain", Data: []byte{}}
	_, err = reg.Decode(env, codec)
	wantErr(t, err, mb.ErrDecode, mbproto.ErrUnsupportedType)
	wantText(t, err, "mbproto_test.Plain is not a protobuf message")

	var n int
	var nilWrapper *OrderPlaced
	marshal := map[string]struct {
		v    any
		text string
	}{
		"nil":             {nil, "cannot marshal nil"},
		"int":             {42, "int is not a protobuf message"},
		"string":          {"x", "string is not a protobuf message"},
		"pointer to int":  {&n, "*int is not a protobuf message"},
		"nil pointer":     {nilWrapper, "nil *mbproto_test.OrderPlaced"},
		"two messages":    {twoMessages{}, "embeds 2 protobuf messages"},
		"unexported":      {hidden{}, "unexported field"},
		"wrapper wrapper": {nested{}, "not a generated protobuf message"},
	}
	for name, c := range marshal {
		t.Run("Marshal "+name, func(t *testing.T) {
			b, err := codec.Marshal(c.v)
			if b != nil {
				t.Errorf("Marshal returned %x", b)
			}
			wantErr(t, err, mbproto.ErrUnsupportedType)
			wantText(t, err, c.text)
		})
	}

	var w OrderPlaced
	var p *OrderPlaced
	unmarshal := map[string]struct {
		v    any
		text string
	}{
		"nil":             {nil, "non-nil pointer to a message, got nil"},
		"value":           {w, "non-nil pointer to a message, got mbproto_test.OrderPlaced"},
		"nil pointer":     {p, "got *mbproto_test.OrderPlaced"},
		"pointer to int":  {&n, "*int is not a protobuf message"},
		"pointer pointer": {&p, "**mbproto_test.OrderPlaced is not a protobuf message"},
		"not a message":   {&Plain{}, "mbproto_test.Plain is not a protobuf message"},
		"two messages":    {&twoMessages{}, "embeds 2 protobuf messages (*testpb.OrderPlaced and *testpb.Address)"},
		"unexported":      {&hidden{}, "embeds *testpb.OrderPlaced as an unexported field"},
		"wrapper wrapper": {&nested{}, "embeds *mbproto_test.OrderPlaced, which is not a generated protobuf message"},
	}
	for name, c := range unmarshal {
		t.Run("Unmarshal "+name, func(t *testing.T) {
			err := codec.Unmarshal([]byte{}, c.v)
			wantErr(t, err, mbproto.ErrUnsupportedType)
			wantText(t, err, c.text)
		})
	}
}

func TestContentType(t *testing.T) {
	reg := newRegistry(t)
	data, err := proto.Marshal(fullOrder())
	if err != nil {
		t.Fatal(err)
	}
	env := func(ct string) *mb.Envelope {
		return &mb.Envelope{ID: "1", Source: "/t", SpecVersion: mb.SpecVersion, Type: "orders.placed", DataContentType: ct, Data: data}
	}
	decode := func(c mb.Codec, ct string) error {
		v, err := reg.Decode(env(ct), c)
		if err == nil && !proto.Equal(protoOf(v), fullOrder()) {
			t.Errorf("%s: decoded %v", ct, v)
		}
		return err
	}

	std := mbproto.New(nil)
	if got := std.ContentType(); got != "application/protobuf" {
		t.Errorf("ContentType() = %q", got)
	}
	for _, ct := range []string{"application/protobuf", "Application/Protobuf", "application/protobuf; proto=mbproto.test.v1.OrderPlaced", ""} {
		if err := decode(std, ct); err != nil {
			t.Errorf("content type %q: %v", ct, err)
		}
	}
	for _, ct := range []string{"application/x-protobuf", "application/json", "application/octet-stream", "not a media type"} {
		err := decode(std, ct)
		wantErr(t, err, mb.ErrDecode)
		wantText(t, err, fmt.Sprintf("content type %q, but the codec decodes %q", ct, "application/protobuf"))
	}

	// A codec for the older name writes and decodes that one only.
	x := mbproto.New(&mbproto.Options{ContentType: "application/x-protobuf"})
	if got := x.ContentType(); got != "application/x-protobuf" {
		t.Errorf("ContentType() = %q", got)
	}
	e, err := reg.Encode(OrderPlaced{fullOrder()}, x, nil)
	if err != nil || e.DataContentType != "application/x-protobuf" {
		t.Fatalf("Encode = %+v, %v", e, err)
	}
	if err := decode(x, "application/x-protobuf"); err != nil {
		t.Error(err)
	}
	wantErr(t, decode(x, "application/protobuf"), mb.ErrDecode)

	// The zero Codec is the default one.
	var zero mbproto.Codec
	if zero.ContentType() != mbproto.DefaultContentType {
		t.Errorf("zero Codec ContentType() = %q", zero.ContentType())
	}
	if err := decode(&zero, "application/protobuf"); err != nil {
		t.Error(err)
	}
}

func TestNewInvalidOptions(t *testing.T) {
	defer func() {
		err, _ := recover().(error)
		wantErr(t, err, mb.ErrInvalidArgument)
		wantText(t, err, "Options.ContentType \"text/\" is not a media type", "Options.Marshal.UseCachedSize")
	}()
	mbproto.New(&mbproto.Options{ContentType: "text/", Marshal: proto.MarshalOptions{UseCachedSize: true}})
	t.Error("New did not panic")
}

func TestOptionsPassThrough(t *testing.T) {
	reg := newRegistry(t)

	// Deterministic: equal messages with maps encode to equal bytes.
	det := mbproto.New(&mbproto.Options{Marshal: proto.MarshalOptions{Deterministic: true}})
	big := fullOrder()
	for i := range 200 {
		big.Quantities[fmt.Sprint("sku-", i)] = int32(i)
	}
	first, err := det.Marshal(OrderPlaced{big})
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		again, err := det.Marshal(OrderPlaced{proto.Clone(big).(*testpb.OrderPlaced)})
		if err != nil || !bytes.Equal(again, first) {
			t.Fatalf("deterministic Marshal differs: %v", err)
		}
	}

	// Unknown fields are kept by default and dropped with DiscardUnknown.
	v2 := OrderPlacedV2{&testpb.OrderPlacedV2{OrderId: "o-3", Coupon: "SAVE10"}}
	data, err := mbproto.New(nil).Marshal(v2)
	if err != nil {
		t.Fatal(err)
	}
	env := &mb.Envelope{ID: "1", Source: "/t", SpecVersion: mb.SpecVersion, Type: "orders.placed", Data: data}
	for _, discard := range []bool{false, true} {
		c := mbproto.New(&mbproto.Options{Unmarshal: proto.UnmarshalOptions{DiscardUnknown: discard}})
		v, err := reg.Decode(env, c)
		if err != nil {
			t.Fatal(err)
		}
		old := v.(OrderPlaced)
		if old.GetOrderId() != "o-3" {
			t.Errorf("decoded %v", old.OrderPlaced)
		}
		if unknown := old.ProtoReflect().GetUnknown(); (len(unknown) == 0) != discard {
			t.Errorf("DiscardUnknown %v: unknown fields %x", discard, unknown)
		}
		// Re-encoded by a consumer that does not know the coupon, the
		// message still carries it unless it was discarded.
		b, err := c.Marshal(old)
		if err != nil {
			t.Fatal(err)
		}
		var back testpb.OrderPlacedV2
		if err := proto.Unmarshal(b, &back); err != nil || (back.GetCoupon() == "SAVE10") == discard {
			t.Errorf("DiscardUnknown %v: re-encoded coupon %q, %v", discard, back.GetCoupon(), err)
		}
	}
}

// TestConcurrentUse runs one codec from many goroutines on types it has
// not seen yet, for the race detector.
func TestConcurrentUse(t *testing.T) {
	codec := mbproto.New(nil)
	reg := newRegistry(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 50 {
				var msg any = OrderPlaced{&testpb.OrderPlaced{OrderId: fmt.Sprint(i, "-", j)}}
				if j%2 == 1 {
					msg = directpb.OrderShipped{OrderId: fmt.Sprint(i, "-", j)}
				}
				env, err := reg.Encode(msg, codec, nil)
				if err != nil {
					t.Error(err)
					return
				}
				v, err := reg.Decode(env, codec)
				if err != nil {
					t.Error(err)
					return
				}
				if id := orderID(v); id != fmt.Sprint(i, "-", j) {
					t.Errorf("decoded order %q", id)
				}
			}
		})
	}
	wg.Wait()
}

// As a registry's codec, the codec refuses at registration the types it
// cannot carry.
func TestCheckTypeAtRegistration(t *testing.T) {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/test", Codec: mbproto.New(nil)})
	if err := mb.RegisterMessageSafely[OrderPlaced](reg); err != nil {
		t.Fatal(err)
	}
	err := mb.RegisterMessageSafely[Plain](reg)
	wantErr(t, err, mb.ErrInvalidMessage, mbproto.ErrUnsupportedType)
	wantText(t, err, "mbproto_test.Plain is not a protobuf message")
	wantErr(t, mbproto.New(nil).CheckType(reflect.TypeFor[int]()), mbproto.ErrUnsupportedType)
	wantErr(t, mbproto.New(nil).CheckType(reflect.TypeFor[hidden]()), mbproto.ErrUnsupportedType)
}
