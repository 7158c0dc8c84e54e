package mb_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mb-go/mb"
)

// Message types for the check that a codec would carry their fields.

type wireHidden struct{ order, note string }

func (wireHidden) MessageName() string { return "t.hidden" }

type wireDashed struct {
	Order string `json:"-"`
	note  string
}

func (wireDashed) MessageName() string { return "t.dashed" }

type wireEmpty struct{}

func (wireEmpty) MessageName() string { return "t.empty" }

type wireMarshaler struct{ order string }

func (wireMarshaler) MessageName() string            { return "t.marshaler" }
func (w wireMarshaler) MarshalJSON() ([]byte, error) { return json.Marshal(w.order) }
func (w *wireMarshaler) UnmarshalJSON(b []byte) error {
	return json.Unmarshal(b, &w.order)
}

type inner struct{ Order string }

type wirePromoted struct {
	inner // unexported, but its exported fields are promoted
	note  string
}

func (wirePromoted) MessageName() string { return "t.promoted" }

type wireText struct{ n int }

func (wireText) MessageName() string             { return "t.text" }
func (w wireText) MarshalText() ([]byte, error)  { return []byte("x"), nil }
func (w *wireText) UnmarshalText(b []byte) error { return nil }

// A message type whose fields encoding/json would all leave out encodes as
// {} and loses its payload without an error: the registry refuses it.
func TestRegistryRefusesTypesItsCodecEncodesEmpty(t *testing.T) {
	for name, reg := range map[string]func(*mb.Registry) error{
		"unexported fields": mb.RegisterMessageSafely[wireHidden],
		"tagged out":        mb.RegisterMessageSafely[wireDashed],
	} {
		t.Run(name, func(t *testing.T) {
			err := reg(mb.NewRegistry())
			wantErr(t, err, mb.ErrInvalidMessage)
			if !strings.Contains(err.Error(), "{}") || !strings.Contains(err.Error(), "json.Marshaler") {
				t.Errorf("error %q does not say why and how to fix it", err)
			}
		})
	}
	for name, reg := range map[string]func(*mb.Registry) error{
		"no fields":       mb.RegisterMessageSafely[wireEmpty],
		"json.Marshaler":  mb.RegisterMessageSafely[wireMarshaler],
		"TextMarshaler":   mb.RegisterMessageSafely[wireText],
		"promoted fields": mb.RegisterMessageSafely[wirePromoted],
	} {
		t.Run(name, func(t *testing.T) { noErr(t, reg(mb.NewRegistry())) })
	}
}

func TestRegistryRefusalNamesTheCodec(t *testing.T) {
	err := mb.RegisterMessageSafely[wireHidden](mb.NewRegistry())
	t.Log(err)
	if !strings.Contains(err.Error(), "mb.JSONCodec") || !strings.Contains(err.Error(), "wireHidden") {
		t.Fatalf("error %q does not name the codec and the type", err)
	}
}

// wireTyped carries an extension attribute of its own.
type wireTyped struct{ Order string }

func (wireTyped) MessageName() string { return "t.typed" }
func (w wireTyped) Extensions() map[string]string {
	return map[string]string{"peertype": "ecst_event", "region": w.Order}
}

// A message's Extensions method adds CloudEvents extension attributes to
// its envelope; attributes given to Encode win.
func TestEncodeMessageExtensions(t *testing.T) {
	r := mb.NewRegistry(&mb.RegistryOptions{Source: "/t"})
	mb.RegisterMessage[wireTyped](r)
	env, err := r.Encode(wireTyped{"eu"}, nil, &mb.Envelope{Extensions: map[string]string{"region": "us"}})
	noErr(t, err)
	if env.Extensions["peertype"] != "ecst_event" || env.Extensions["region"] != "us" {
		t.Fatalf("extensions %v", env.Extensions)
	}
	h := env.ToHeaders()
	if h["ce-peertype"] != "ecst_event" {
		t.Fatalf("headers %v", h)
	}
}
