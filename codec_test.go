package mb_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// Wire message types of the codec tests.

type WireOrderPlaced struct {
	OrderID string            `json:"order_id"`
	Note    string            `json:"note"`
	Blob    []byte            `json:"blob"`
	Lines   map[string]int    `json:"lines,omitempty"`
	Total   float64           `json:"total"`
	Tags    []string          `json:"tags,omitempty"`
	Meta    map[string]string `json:"meta,omitempty"`
}

func (WireOrderPlaced) MessageName() string { return "shop.order-placed.v1" }
func (o WireOrderPlaced) PartitionKey() string {
	return "order/" + o.OrderID
}

type WireOrderShipped struct {
	OrderID string `json:"order_id"`
	At      int64  `json:"at"`
}

func (WireOrderShipped) MessageName() string { return "shop.order-shipped.v1" }

// WireClash claims the name of WireOrderPlaced.
type WireClash struct{}

func (WireClash) MessageName() string { return "shop.order-placed.v1" }

type WireNoName struct{ N int }

type WirePtrName struct{ N int }

func (*WirePtrName) MessageName() string { return "ptr-name" }

type WireEmptyName struct{}

func (WireEmptyName) MessageName() string { return "" }

type WireBadName struct{}

func (WireBadName) MessageName() string { return "bad\nname" }

func newWireRegistry(t testing.TB, opts ...*mb.RegistryOptions) *mb.Registry {
	t.Helper()
	if len(opts) == 0 {
		opts = []*mb.RegistryOptions{{Source: "/shop"}}
	}
	r := mb.NewRegistry(opts...)
	mb.RegisterMessage[WireOrderPlaced](r)
	mb.RegisterMessage[WireOrderShipped](r)
	return r
}

func TestRegistryRegister(t *testing.T) {
	r := newWireRegistry(t)
	typ, ok := r.Lookup("shop.order-placed.v1")
	if !ok || typ != reflect.TypeFor[WireOrderPlaced]() {
		t.Fatalf("Lookup = %v, %v", typ, ok)
	}
	if _, ok := r.Lookup("WireOrderPlaced"); ok {
		t.Fatal("Lookup found a Go type name")
	}

	err := mb.RegisterMessageSafely[WireOrderPlaced](r)
	wantErr(t, err, mb.ErrDuplicateMessage)
	err = mb.RegisterMessageSafely[WireClash](r)
	wantErr(t, err, mb.ErrDuplicateMessage)
	if !strings.Contains(err.Error(), "WireOrderPlaced") || !strings.Contains(err.Error(), "WireClash") {
		t.Fatalf("duplicate error %q does not name both types", err)
	}
	if typ, _ := r.Lookup("shop.order-placed.v1"); typ != reflect.TypeFor[WireOrderPlaced]() {
		t.Fatal("a failed registration replaced the first")
	}
	panicErr(t, mustPanic(t, func() { mb.RegisterMessage[WireClash](r) }), mb.ErrDuplicateMessage)

	cases := []struct {
		name string
		reg  func(*mb.Registry) error
		want string
	}{
		{"no MessageName", mb.RegisterMessageSafely[WireNoName], "add func (WireNoName) MessageName() string"},
		{"pointer receiver", mb.RegisterMessageSafely[WirePtrName], "value receiver"},
		{"pointer type", mb.RegisterMessageSafely[*WireOrderShipped], "pointer"},
		{"not a struct", mb.RegisterMessageSafely[string], "struct"},
		{"empty name", mb.RegisterMessageSafely[WireEmptyName], `returns ""`},
		{"control character in name", mb.RegisterMessageSafely[WireBadName], "U+000A"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.reg(mb.NewRegistry())
			wantErr(t, err, mb.ErrInvalidMessage)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
	wantErr(t, mb.RegisterMessageSafely[WireOrderPlaced](nil), mb.ErrInvalidArgument)
}

func TestNewRegistryOptions(t *testing.T) {
	if got := mb.NewRegistry().MaxDataSize(); got != 1<<20 {
		t.Fatalf("default MaxDataSize = %d", got)
	}
	err, _ := mustPanic(t, func() { mb.NewRegistry(&mb.RegistryOptions{MaxDataSize: -1, Source: "a\x00"}) }).(error)
	if err == nil || !strings.Contains(err.Error(), "MaxDataSize") || !strings.Contains(err.Error(), "Source") {
		t.Fatalf("NewRegistry with bad options panicked with %v", err)
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := newWireRegistry(t)
	msg := WireOrderPlaced{
		OrderID: "42",
		Note:    "héllo <wörld> & 日本語 🚀 \u2028",
		Blob:    []byte{0, 1, 2, 0xfe, 0xff},
		Lines:   map[string]int{"ä": 1, "b": 2},
		Total:   12.5,
	}
	attrs := &mb.Envelope{
		Subject:       "order 42",
		CorrelationID: "corr",
		CausationID:   "cause",
		Extensions:    map[string]string{"tenant": "acme"},
	}
	before := time.Now()
	env, err := r.Encode(msg, nil, attrs)
	noErr(t, err)
	noErr(t, env.Validate())
	wantUUIDv7(t, env.ID)
	if env.Type != "shop.order-placed.v1" || env.Source != "/shop" || env.SpecVersion != "1.0" ||
		env.DataContentType != "application/json" || env.Subject != "order 42" ||
		env.CorrelationID != "corr" || env.CausationID != "cause" || env.PartitionKey != "order/42" ||
		env.Extensions["tenant"] != "acme" {
		t.Fatalf("Encode = %+v", env)
	}
	if env.Time.Location() != time.UTC || env.Time.Before(before.Add(-time.Second)) || env.Time.After(time.Now()) {
		t.Fatalf("Time = %v, want now in UTC", env.Time)
	}
	if attrs.ID != "" || attrs.Type != "" || attrs.PartitionKey != "" || len(attrs.Extensions) != 1 {
		t.Fatalf("Encode modified its attributes: %+v", attrs)
	}
	env.Extensions["tenant"] = "changed"
	if attrs.Extensions["tenant"] != "acme" {
		t.Fatal("Encode shares the Extensions map of its attributes")
	}

	got, err := r.Decode(env, nil)
	noErr(t, err)
	if _, ok := got.(WireOrderPlaced); !ok {
		t.Fatalf("Decode returned %T, want WireOrderPlaced (a value)", got)
	}
	if !reflect.DeepEqual(got, msg) {
		t.Fatalf("Decode = %+v, want %+v", got, msg)
	}

	// Through both wire modes.
	b, err := mb.MarshalStructured(env)
	noErr(t, err)
	s, err := mb.UnmarshalStructured(b)
	noErr(t, err)
	got, err = r.Decode(s, mb.JSONCodec{})
	noErr(t, err)
	if !reflect.DeepEqual(got, msg) {
		t.Fatalf("structured: Decode = %+v, want %+v", got, msg)
	}
	h, err := mb.EnvelopeFromHeaders(env.ToHeaders(), env.Data)
	noErr(t, err)
	got, err = r.Decode(h, nil)
	noErr(t, err)
	if !reflect.DeepEqual(got, msg) {
		t.Fatalf("binary: Decode = %+v, want %+v", got, msg)
	}

	// Given attributes win.
	env, err = r.Encode(WireOrderShipped{OrderID: "1"}, nil, &mb.Envelope{
		ID: "given", Source: "/other", Time: time.Unix(1, 0), PartitionKey: "pk", Type: "ignored",
	})
	noErr(t, err)
	if env.ID != "given" || env.Source != "/other" || !env.Time.Equal(time.Unix(1, 0)) || env.PartitionKey != "pk" || env.Type != "shop.order-shipped.v1" {
		t.Fatalf("Encode with attributes = %+v", env)
	}
}

func TestEncodeErrors(t *testing.T) {
	r := newWireRegistry(t)
	_, err := r.Encode(WireNoName{}, nil, nil)
	wantErr(t, err, mb.ErrUnknownMessage)
	_, err = r.Encode(&WireOrderShipped{}, nil, nil)
	wantErr(t, err, mb.ErrInvalidMessage)
	_, err = r.Encode(nil, nil, nil)
	wantErr(t, err, mb.ErrInvalidMessage)

	_, err = mb.NewRegistry().Encode(WireOrderShipped{}, nil, nil)
	wantErr(t, err, mb.ErrUnknownMessage)
	noSource := mb.NewRegistry()
	mb.RegisterMessage[WireOrderShipped](noSource)
	_, err = noSource.Encode(WireOrderShipped{}, nil, nil)
	wantErr(t, err, mb.ErrInvalidEnvelope)
	if !strings.Contains(err.Error(), "RegistryOptions.Source") {
		t.Fatalf("error %q does not name the fix", err)
	}
	_, err = r.Encode(WireOrderShipped{}, nil, &mb.Envelope{Extensions: map[string]string{"Bad": "x"}})
	wantErr(t, err, mb.ErrInvalidEnvelope)

	small := newWireRegistry(t, &mb.RegistryOptions{Source: "/s", MaxDataSize: 64})
	_, err = small.Encode(WireOrderPlaced{Note: strings.Repeat("x", 64)}, nil, nil)
	wantErr(t, err, mb.ErrMessageTooLarge)

	boom := errors.New("boom")
	_, err = r.Encode(WireOrderShipped{}, failingCodec{err: boom}, nil)
	wantErr(t, err, boom)
}

func TestDecodeErrors(t *testing.T) {
	r := newWireRegistry(t, &mb.RegistryOptions{Source: "/s", MaxDataSize: 32})
	env := func(typ, data string) *mb.Envelope {
		return &mb.Envelope{ID: "1", Source: "/s", SpecVersion: "1.0", Type: typ, DataContentType: "application/json", Data: []byte(data)}
	}

	_, err := r.Decode(env("shop.unknown", `{}`), nil)
	wantErr(t, err, mb.ErrUnknownMessage)
	if !strings.Contains(err.Error(), `"shop.unknown"`) {
		t.Fatalf("error %q does not name the message", err)
	}
	_, err = r.Decode(env("WireOrderShipped", `{}`), nil)
	wantErr(t, err, mb.ErrUnknownMessage)

	// The limit is checked before decoding; exactly the limit is fine.
	_, err = r.Decode(env("shop.order-shipped.v1", `{"order_id":"`+strings.Repeat("x", 20)+`"}`), nil)
	wantErr(t, err, mb.ErrMessageTooLarge)
	_, err = r.Decode(env("shop.order-shipped.v1", `{"order_id":"`+strings.Repeat("x", 17)+`"}`), nil)
	noErr(t, err)

	for _, data := range []string{``, `{`, `{"order_id":5}`, `[]`, `{} {}`, `"x"`, "ÿ"} {
		_, err = r.Decode(env("shop.order-shipped.v1", data), nil)
		wantErr(t, err, mb.ErrDecode)
		if !strings.Contains(err.Error(), "shop.order-shipped.v1") {
			t.Fatalf("error %q does not name the message", err)
		}
	}

	e := env("shop.order-shipped.v1", `{}`)
	e.DataContentType = "application/protobuf"
	_, err = r.Decode(e, nil)
	wantErr(t, err, mb.ErrDecode)
	for _, ct := range []string{"", "application/json; charset=utf-8", "Application/JSON", "application/cloudevents+json"} {
		e.DataContentType = ct
		_, err = r.Decode(e, nil)
		noErr(t, err)
	}

	e.DataContentType = ""
	_, err = r.Decode(e, panickingCodec{})
	wantErr(t, err, mb.ErrDecode, mb.ErrPanic)

	_, err = r.Decode(nil, nil)
	wantErr(t, err, mb.ErrInvalidEnvelope)

	var nilReg *mb.Registry
	_, err = nilReg.Decode(e, nil)
	wantErr(t, err, mb.ErrInvalidArgument)
	_, err = nilReg.Encode(WireOrderShipped{}, nil, nil)
	wantErr(t, err, mb.ErrInvalidArgument)
	if _, ok := nilReg.Lookup("shop.order-shipped.v1"); ok {
		t.Fatal("a nil registry has names")
	}
}

func TestRegistryConcurrent(t *testing.T) {
	r := newWireRegistry(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 50 {
				env, err := r.Encode(WireOrderShipped{OrderID: fmt.Sprint(i, j)}, nil, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := r.Decode(env, nil); err != nil {
					t.Error(err)
					return
				}
				_, _ = r.Lookup("shop.order-placed.v1")
			}
		})
	}
	wg.Go(func() {
		_ = mb.RegisterMessageSafely[WireClash](r)
		_ = mb.RegisterMessageSafely[WireNoName](r)
	})
	wg.Wait()
}

type failingCodec struct{ err error }

func (failingCodec) ContentType() string                  { return "application/json" }
func (c failingCodec) Marshal(any) ([]byte, error)        { return nil, c.err }
func (c failingCodec) Unmarshal(data []byte, v any) error { return c.err }

type panickingCodec struct{}

func (panickingCodec) ContentType() string         { return "application/json" }
func (panickingCodec) Marshal(any) ([]byte, error) { panic("marshal") }
func (panickingCodec) Unmarshal([]byte, any) error { panic("unmarshal") }

// JSONCodec reuses its encoders: what Marshal returned stays the caller's,
// untouched by later calls, whatever their sizes; HTML is not escaped and
// there is no trailing newline.
func TestJSONCodecMarshalResultsAreIndependent(t *testing.T) {
	c := mb.JSONCodec{}
	first, err := c.Marshal(map[string]string{"a": "<b>"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Marshal(map[string]string{"long": strings.Repeat("x", 100_000)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Marshal(func() {}); err == nil {
		t.Fatal("Marshal of a func succeeded")
	}
	if _, err := c.Marshal(map[string]int{"zz": 1}); err != nil {
		t.Fatal(err)
	}
	if got := string(first); got != `{"a":"<b>"}` {
		t.Errorf("first result is now %q, want %q", got, `{"a":"<b>"}`)
	}
}
