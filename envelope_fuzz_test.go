package mb_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/mb-go/mb"
)

// parseHeaderLines turns "name: value" lines into a header map.
func parseHeaderLines(s string) map[string]string {
	h := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		k, v, _ := strings.Cut(line, ":")
		h[k] = strings.TrimPrefix(v, " ")
	}
	return h
}

func FuzzEnvelopeFromHeaders(f *testing.F) {
	f.Add("ce-id: 1\nce-source: /s\nce-specversion: 1.0\nce-type: t", []byte(`{}`))
	f.Add("Ce-Id: 1\nCE-SOURCE: urn:x\nce-specversion: 1.0\nce-type: t\nce-time: 2020-01-02T03:04:05.5+01:00\ncontent-type: application/json\nce-tenant: ä\nx-other: y", []byte("\x00\xff"))
	f.Add("ce-id: 1\nce-id: 2\nce-time: x\nce-Bad_Name: 1\nce-: \nce-data: 1", []byte(nil))
	f.Fuzz(func(t *testing.T, headers string, data []byte) {
		e, err := mb.EnvelopeFromHeaders(parseHeaderLines(headers), data)
		if err != nil {
			if e != nil {
				t.Fatal("envelope returned with an error")
			}
			return
		}
		noErr(t, e.Validate())
		h := e.ToHeaders()
		e2, err := mb.EnvelopeFromHeaders(h, e.Data)
		if err != nil {
			t.Fatalf("re-reading %q: %v", h, err)
		}
		wantSameEnvelope(t, e2, e)
		if h2 := e2.ToHeaders(); !reflect.DeepEqual(h2, h) {
			t.Fatalf("headers changed:\n%q\n%q", h, h2)
		}
		// The other mode carries the same envelope.
		b, err := mb.MarshalStructured(e)
		if err != nil {
			t.Fatalf("MarshalStructured of a valid envelope: %v", err)
		}
		e3, err := mb.UnmarshalStructured(b)
		if err != nil {
			t.Fatalf("UnmarshalStructured(%s): %v", b, err)
		}
		wantSameEnvelope(t, e3, e)
	})
}

func FuzzUnmarshalStructured(f *testing.F) {
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":[1,2]}}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2020-01-02T03:04:05Z","datacontenttype":"text/plain","data":"hé"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"AP8="}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","ext":5,"flag":true,"subject":null,"partitionkey":"p"}`))
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":1,"data_base64":""}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		e, err := mb.UnmarshalStructured(in)
		if err != nil {
			if e != nil {
				t.Fatal("envelope returned with an error")
			}
			return
		}
		noErr(t, e.Validate())
		b, err := mb.MarshalStructured(e)
		if err != nil {
			t.Fatalf("MarshalStructured of a read envelope: %v", err)
		}
		e2, err := mb.UnmarshalStructured(b)
		if err != nil {
			t.Fatalf("re-reading %s: %v", b, err)
		}
		wantSameEnvelope(t, e2, e)
		b2, err := mb.MarshalStructured(e2)
		noErr(t, err)
		if !bytes.Equal(b2, b) {
			t.Fatalf("structured form changed:\n%s\n%s", b, b2)
		}
		e3, err := mb.EnvelopeFromHeaders(e.ToHeaders(), e.Data)
		if err != nil {
			t.Fatalf("binary mode of a read envelope: %v", err)
		}
		wantSameEnvelope(t, e3, e)
	})
}

// WireFuzzed has fields of the kinds JSON payloads exercise.
type WireFuzzed struct {
	S   string            `json:"s"`
	N   int64             `json:"n"`
	U   uint8             `json:"u"`
	F   float64           `json:"f"`
	B   bool              `json:"b"`
	Raw []byte            `json:"raw"`
	L   []string          `json:"l"`
	M   map[string]int    `json:"m"`
	P   *WireOrderShipped `json:"p"`
	Any any               `json:"any"`
}

func (WireFuzzed) MessageName() string { return "fuzz.v1" }

func FuzzDecode(f *testing.F) {
	f.Add("fuzz.v1", "application/json", []byte(`{"s":"é\u2028","n":-5,"u":255,"f":1.5e300,"b":true,"raw":"AP8=","l":["x"],"m":{"a":1},"p":{"order_id":"1"},"any":[1,{"x":null}]}`))
	f.Add("shop.order-shipped.v1", "", []byte(`{"order_id":"1","at":1}`))
	f.Add("fuzz.v1", "text/plain", []byte(`{}`))
	f.Add("fuzz.v1", "application/json", []byte(`{"u":256}`))
	f.Add("unknown", "application/json", []byte(`{}`))
	f.Add("fuzz.v1", "", []byte(`null`))
	r := mb.NewRegistry(&mb.RegistryOptions{Source: "/fuzz", MaxDataSize: 4096})
	mb.RegisterMessage[WireFuzzed](r)
	mb.RegisterMessage[WireOrderShipped](r)
	f.Fuzz(func(t *testing.T, typ, contentType string, data []byte) {
		env := &mb.Envelope{ID: "1", Source: "/s", SpecVersion: "1.0", Type: typ, DataContentType: contentType, Data: data}
		v, err := r.Decode(env, nil)
		if err != nil {
			if v != nil {
				t.Fatal("value returned with an error")
			}
			return
		}
		want, _ := r.Lookup(typ)
		if reflect.TypeOf(v) != want {
			t.Fatalf("Decode returned %T for %q", v, typ)
		}
		env2, err := r.Encode(v, nil, nil)
		if errors.Is(err, mb.ErrMessageTooLarge) {
			return // the re-encoding may be longer ("1e300" is "1e+300")
		}
		if err != nil {
			t.Fatalf("re-encoding %#v: %v", v, err)
		}
		if env2.Type != typ {
			t.Fatalf("re-encoded as %q, want %q", env2.Type, typ)
		}
		v2, err := r.Decode(env2, nil)
		if err != nil {
			t.Fatalf("decoding the re-encoded %s: %v", env2.Data, err)
		}
		if !reflect.DeepEqual(v2, v) {
			t.Fatalf("round trip changed the value:\n%#v\n%#v", v, v2)
		}
		env3, err := r.Encode(v2, nil, nil)
		noErr(t, err)
		if !bytes.Equal(env3.Data, env2.Data) {
			t.Fatalf("encoding is not stable:\n%s\n%s", env2.Data, env3.Data)
		}
	})
}
