package mb_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// envelopeDiff describes how a and b differ, or returns "" when they hold
// the same attributes: times compare with time.Time.Equal, Data byte for
// byte, and a nil map or slice equals an empty one.
func envelopeDiff(a, b *mb.Envelope) string {
	if a == nil || b == nil {
		if a == b {
			return ""
		}
		return fmt.Sprintf("one envelope is nil: %v, %v", a, b)
	}
	var d []string
	cmp := func(name, x, y string) {
		if x != y {
			d = append(d, fmt.Sprintf("%s: %q != %q", name, x, y))
		}
	}
	cmp("ID", a.ID, b.ID)
	cmp("Source", a.Source, b.Source)
	cmp("SpecVersion", a.SpecVersion, b.SpecVersion)
	cmp("Type", a.Type, b.Type)
	cmp("DataContentType", a.DataContentType, b.DataContentType)
	cmp("DataSchema", a.DataSchema, b.DataSchema)
	cmp("Subject", a.Subject, b.Subject)
	cmp("CorrelationID", a.CorrelationID, b.CorrelationID)
	cmp("CausationID", a.CausationID, b.CausationID)
	cmp("TraceParent", a.TraceParent, b.TraceParent)
	cmp("TraceState", a.TraceState, b.TraceState)
	cmp("PartitionKey", a.PartitionKey, b.PartitionKey)
	if !a.Time.Equal(b.Time) {
		d = append(d, fmt.Sprintf("Time: %v != %v", a.Time, b.Time))
	}
	if !maps.Equal(a.Extensions, b.Extensions) {
		d = append(d, fmt.Sprintf("Extensions: %q != %q", a.Extensions, b.Extensions))
	}
	if !bytes.Equal(a.Data, b.Data) {
		d = append(d, fmt.Sprintf("Data: %q != %q", a.Data, b.Data))
	}
	return strings.Join(d, "; ")
}

func wantSameEnvelope(t *testing.T, got, want *mb.Envelope) {
	t.Helper()
	if d := envelopeDiff(got, want); d != "" {
		t.Fatalf("envelopes differ: %s", d)
	}
}

// fullEnvelope has every attribute set, with non-ASCII text and binary data.
func fullEnvelope() *mb.Envelope {
	data := make([]byte, 256)
	for i := range data {
		data[i] = byte(i)
	}
	return &mb.Envelope{
		ID:              "0190a0b1-7c3d-7e4f-8a5b-6c7d8e9f0a1b",
		Source:          "urn:example:commandes/Zürich",
		SpecVersion:     "1.0",
		Type:            "shop.order-placed.v1",
		Time:            time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.FixedZone("", 2*3600)),
		DataContentType: "application/octet-stream",
		DataSchema:      "https://example.com/schemas/order-placed.json",
		Subject:         "commande 42 – ✓ 日本語 🚀",
		CorrelationID:   "corr-1",
		CausationID:     "cause-1",
		TraceParent:     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		TraceState:      "congo=t61rcWkgMzE",
		PartitionKey:    "order/42",
		Extensions:      map[string]string{"tenant": "ácme", "priority7": "high"},
		Data:            data,
	}
}

func TestEnvelopeBinaryRoundTrip(t *testing.T) {
	e := fullEnvelope()
	noErr(t, e.Validate())
	h := e.ToHeaders()
	want := map[string]string{
		"ce-id":            e.ID,
		"ce-source":        e.Source,
		"ce-specversion":   "1.0",
		"ce-type":          e.Type,
		"ce-time":          "2025-03-04T05:06:07.123456789+02:00",
		"content-type":     "application/octet-stream",
		"ce-dataschema":    e.DataSchema,
		"ce-subject":       e.Subject,
		"ce-correlationid": "corr-1",
		"ce-causationid":   "cause-1",
		"ce-traceparent":   e.TraceParent,
		"ce-tracestate":    e.TraceState,
		"ce-partitionkey":  "order/42",
		"ce-tenant":        "ácme",
		"ce-priority7":     "high",
	}
	if !maps.Equal(h, want) {
		t.Fatalf("ToHeaders:\n got %q\nwant %q", h, want)
	}

	// Header names are case-insensitive; other headers are ignored.
	in := map[string]string{"X-Request-Id": "abc", "Authorization": "secret"}
	for k, v := range h {
		in[strings.ToUpper(k[:1])+k[1:]] = v
	}
	got, err := mb.EnvelopeFromHeaders(in, e.Data)
	noErr(t, err)
	wantSameEnvelope(t, got, e)
}

func TestEnvelopeBinaryMinimal(t *testing.T) {
	e := &mb.Envelope{ID: "1", Source: "/s", SpecVersion: "1.0", Type: "t"}
	h := e.ToHeaders()
	if len(h) != 4 {
		t.Fatalf("ToHeaders of a minimal envelope = %q, want only the 4 required attributes", h)
	}
	got, err := mb.EnvelopeFromHeaders(h, nil)
	noErr(t, err)
	wantSameEnvelope(t, got, e)
	if got.Extensions != nil {
		t.Fatalf("Extensions = %v, want nil", got.Extensions)
	}
}

func TestEnvelopeStructuredRoundTrip(t *testing.T) {
	t.Run("binary data", func(t *testing.T) {
		e := fullEnvelope()
		b, err := mb.MarshalStructured(e)
		noErr(t, err)
		if !json.Valid(b) {
			t.Fatalf("not JSON: %s", b)
		}
		if !bytes.Contains(b, []byte(`"data_base64":"AAECAwQF`)) || bytes.Contains(b, []byte(`"data":`)) {
			t.Fatalf("binary data not written as data_base64: %s", b)
		}
		if !bytes.Contains(b, []byte(`"subject":"commande 42 – ✓ 日本語 🚀"`)) {
			t.Fatalf("unicode not written verbatim: %s", b)
		}
		got, err := mb.UnmarshalStructured(b)
		noErr(t, err)
		wantSameEnvelope(t, got, e)
	})
	t.Run("JSON data", func(t *testing.T) {
		e := fullEnvelope()
		e.DataContentType = "application/json; charset=utf-8"
		e.Data = []byte(`{"text":"héllo <wörld> & 🚀","n":[1,2.5,null]}`)
		b, err := mb.MarshalStructured(e)
		noErr(t, err)
		if !bytes.Contains(b, []byte(`"data":{"text":"héllo <wörld> & 🚀"`)) {
			t.Fatalf("JSON data not embedded verbatim: %s", b)
		}
		got, err := mb.UnmarshalStructured(b)
		noErr(t, err)
		wantSameEnvelope(t, got, e)
	})
	t.Run("JSON content type, data not JSON", func(t *testing.T) {
		for _, data := range []string{"{not json", " {} ", "null", "\xff\"", `"\xff"`} {
			e := &mb.Envelope{ID: "1", Source: "/s", SpecVersion: "1.0", Type: "t", DataContentType: "application/json", Data: []byte(data)}
			b, err := mb.MarshalStructured(e)
			noErr(t, err)
			if !bytes.Contains(b, []byte(`"data_base64":`)) {
				t.Fatalf("data %q: not written as data_base64: %s", data, b)
			}
			got, err := mb.UnmarshalStructured(b)
			noErr(t, err)
			wantSameEnvelope(t, got, e)
		}
	})
	t.Run("attribute order is fixed", func(t *testing.T) {
		e := fullEnvelope()
		e.DataContentType = ""
		e.Data = []byte(`[1]`)
		b, err := mb.MarshalStructured(e)
		noErr(t, err)
		want := `{"specversion":"1.0","id":"0190a0b1-7c3d-7e4f-8a5b-6c7d8e9f0a1b","source":"urn:example:commandes/Zürich","type":"shop.order-placed.v1","subject":"commande 42 – ✓ 日本語 🚀","time":"2025-03-04T05:06:07.123456789+02:00","dataschema":"https://example.com/schemas/order-placed.json","correlationid":"corr-1","causationid":"cause-1","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","tracestate":"congo=t61rcWkgMzE","partitionkey":"order/42","priority7":"high","tenant":"ácme","data":[1]}`
		if string(b) != want {
			t.Fatalf("MarshalStructured:\n got %s\nwant %s", b, want)
		}
	})
}

func TestUnmarshalStructuredSpecExample(t *testing.T) {
	// The example of the CloudEvents JSON format, with extensions of
	// other JSON types and a null attribute.
	in := `{
		"specversion" : "1.0",
		"type" : "com.example.someevent",
		"source" : "/mycontext",
		"id" : "A234-1234-1234",
		"time" : "2018-04-05T17:31:00Z",
		"comexampleextension1" : "value",
		"comexampleothervalue" : 5,
		"flag" : true,
		"subject": null,
		"datacontenttype" : "text/xml",
		"data" : "<much wow=\"xml\"/>"
	}`
	e, err := mb.UnmarshalStructured([]byte(in))
	noErr(t, err)
	want := &mb.Envelope{
		ID: "A234-1234-1234", Source: "/mycontext", SpecVersion: "1.0", Type: "com.example.someevent",
		Time:            time.Date(2018, 4, 5, 17, 31, 0, 0, time.UTC),
		DataContentType: "text/xml",
		Extensions:      map[string]string{"comexampleextension1": "value", "comexampleothervalue": "5", "flag": "true"},
		Data:            []byte(`<much wow="xml"/>`),
	}
	wantSameEnvelope(t, e, want)
}

func TestEnvelopeValidate(t *testing.T) {
	err := (&mb.Envelope{}).Validate()
	wantErr(t, err, mb.ErrInvalidEnvelope)
	for _, attr := range []string{`"id"`, `"source"`, `"type"`, `"specversion"`} {
		if !strings.Contains(err.Error(), attr) {
			t.Errorf("Validate of an empty envelope: %q does not name %s", err, attr)
		}
	}
	if n := len(err.(interface{ Unwrap() []error }).Unwrap()); n != 4 {
		t.Errorf("Validate of an empty envelope joined %d errors, want 4: %v", n, err)
	}

	valid := func() *mb.Envelope {
		return &mb.Envelope{ID: "1", Source: "/s", SpecVersion: "1.0", Type: "t"}
	}
	noErr(t, valid().Validate())
	var nilEnv *mb.Envelope
	wantErr(t, nilEnv.Validate(), mb.ErrInvalidEnvelope)

	cases := []struct {
		name   string
		modify func(e *mb.Envelope)
		want   string
	}{
		{"specversion 0.3", func(e *mb.Envelope) { e.SpecVersion = "0.3" }, `only "1.0"`},
		{"uppercase extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"Tenant": "x"} }, `lowercase ASCII letters and digits`},
		{"underscore extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"my_ext": "x"} }, `"my_ext"`},
		{"dash extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"my-ext": "x"} }, `"my-ext"`},
		{"non-ASCII extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"zürich": "x"} }, `"zürich"`},
		{"empty extension name", func(e *mb.Envelope) { e.Extensions = map[string]string{"": "x"} }, `empty`},
		{"reserved data", func(e *mb.Envelope) { e.Extensions = map[string]string{"data": "x"} }, `reserved`},
		{"known attribute as extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"correlationid": "x"} }, `Envelope.CorrelationID`},
		{"context attribute as extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"subject": "x"} }, `Envelope.Subject`},
		{"control character", func(e *mb.Envelope) { e.Subject = "a\nb" }, `U+000A`},
		{"invalid UTF-8", func(e *mb.Envelope) { e.Type = "t\xff" }, `UTF-8`},
		{"noncharacter in extension", func(e *mb.Envelope) { e.Extensions = map[string]string{"x": "\uFFFE"} }, `U+FFFE`},
		{"bad content type", func(e *mb.Envelope) { e.DataContentType = "not a media type" }, `datacontenttype`},
		{"bad source", func(e *mb.Envelope) { e.Source = "%zz" }, `source`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := valid()
			c.modify(e)
			err := e.Validate()
			wantErr(t, err, mb.ErrInvalidEnvelope)
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
			if _, err := mb.MarshalStructured(e); !errors.Is(err, mb.ErrInvalidEnvelope) {
				t.Fatalf("MarshalStructured of an invalid envelope: %v", err)
			}
		})
	}
}

func TestEnvelopeFromHeadersErrors(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{"ce-id": "1", "ce-source": "/s", "ce-specversion": "1.0", "ce-type": "t"}
	}
	cases := []struct {
		name   string
		modify func(h map[string]string)
		want   []string
	}{
		{"missing all", func(h map[string]string) { clear(h) }, []string{`"id"`, `"source"`, `"type"`, `"specversion"`}},
		{"missing type", func(h map[string]string) { delete(h, "ce-type") }, []string{`"type" is missing`}},
		{"empty id", func(h map[string]string) { h["ce-id"] = "" }, []string{`"id" is missing`}},
		{"wrong specversion", func(h map[string]string) { h["ce-specversion"] = "0.3" }, []string{`"0.3"`}},
		{"bad time", func(h map[string]string) { h["ce-time"] = "yesterday" }, []string{`RFC 3339`}},
		{"invalid extension name", func(h map[string]string) { h["ce-my_ext"] = "x" }, []string{`"my_ext"`}},
		{"reserved extension name", func(h map[string]string) { h["ce-data"] = "x" }, []string{`reserved`}},
		{"empty extension name", func(h map[string]string) { h["ce-"] = "x" }, []string{`empty`}},
		{"datacontenttype header", func(h map[string]string) { h["ce-datacontenttype"] = "text/plain" }, []string{`content-type`}},
		{"case conflict", func(h map[string]string) { h["CE-ID"] = "2" }, []string{`differ only in case`}},
		{"several problems", func(h map[string]string) { delete(h, "ce-source"); h["ce-time"] = "x" }, []string{`"source"`, `RFC 3339`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := base()
			c.modify(h)
			e, err := mb.EnvelopeFromHeaders(h, nil)
			wantErr(t, err, mb.ErrInvalidEnvelope)
			if e != nil {
				t.Fatalf("got an envelope with the error: %+v", e)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	// The same value under two cases is not a conflict.
	h := base()
	h["Ce-Id"] = "1"
	_, err := mb.EnvelopeFromHeaders(h, nil)
	noErr(t, err)
}

func TestUnmarshalStructuredErrors(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"empty input", ``, `not a JSON object`},
		{"array", `[1]`, `not a JSON object`},
		{"null", `null`, `null`},
		{"truncated", `{"id":"1"`, `not a JSON object`},
		{"trailing garbage", `{"id":"1","source":"/s","specversion":"1.0","type":"t"} x`, `not a JSON object`},
		{"number id", `{"id":1,"source":"/s","specversion":"1.0","type":"t"}`, `"id" must be a JSON string`},
		{"missing type", `{"id":"1","source":"/s","specversion":"1.0"}`, `"type" is missing`},
		{"uppercase member", `{"ID":"1","id":"1","source":"/s","specversion":"1.0","type":"t"}`, `"ID"`},
		{"object extension", `{"id":"1","source":"/s","specversion":"1.0","type":"t","ext":{}}`, `extension "ext"`},
		{"both data members", `{"id":"1","source":"/s","specversion":"1.0","type":"t","data":1,"data_base64":"AA=="}`, `both`},
		{"bad base64", `{"id":"1","source":"/s","specversion":"1.0","type":"t","data_base64":"!!"}`, `base64`},
		{"base64 not a string", `{"id":"1","source":"/s","specversion":"1.0","type":"t","data_base64":5}`, `data_base64`},
		{"bad time", `{"id":"1","source":"/s","specversion":"1.0","type":"t","time":"2020-13-01T00:00:00Z"}`, `RFC 3339`},
		{"wrong specversion", `{"id":"1","source":"/s","specversion":"0.3","type":"t"}`, `only "1.0"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, err := mb.UnmarshalStructured([]byte(c.in))
			wantErr(t, err, mb.ErrInvalidEnvelope)
			if e != nil {
				t.Fatalf("got an envelope with the error: %+v", e)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestEnvelopeModesAgree(t *testing.T) {
	// An envelope read in one mode and written in the other is the same.
	e := fullEnvelope()
	b, err := mb.MarshalStructured(e)
	noErr(t, err)
	s, err := mb.UnmarshalStructured(b)
	noErr(t, err)
	got, err := mb.EnvelopeFromHeaders(s.ToHeaders(), s.Data)
	noErr(t, err)
	wantSameEnvelope(t, got, e)
}
