package mbredis_test

import (
	"bytes"
	"encoding/json"
	"maps"
	"testing"

	"github.com/mb-go/mb/mbredis"
)

// diatorFields are the four fields of Diator's Message.
type diatorFields struct {
	typ, name, id string
	payload       string
}

// decodeFields decodes b and returns its fields as DecodeDiator gives them.
func decodeFields(b []byte) (diatorFields, error) {
	m, err := mbredis.DecodeDiator(b, "/src")
	if err != nil {
		return diatorFields{}, err
	}
	return diatorFields{m.Headers[mbredis.HeaderDiatorMessageType], m.Headers["ce-type"], m.ID, string(m.Body)}, nil
}

func compactJSON(t testing.TB, s string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatalf("compact %q: %v", s, err)
	}
	return b.String()
}

const (
	uuid1 = "82a0b10e-1b3d-4c3c-9bdd-3934f8f824c2"
	uuid2 = "0190A3C4-5B6D-7E8F-9A0B-1C2D3E4F5A6B"
)

// The JSON of Diator's Message, as its RedisMessageBroker publishes it
// (orjson: compact, keys in the dataclass's order, UUIDs in their
// canonical form), and what DecodeDiator reads from it.
var diatorAccepted = []struct {
	name   string
	json   string
	fields diatorFields
}{
	{"NotificationEvent",
		`{"message_type":"notification_event","message_name":"UserJoined","message_id":"` + uuid1 + `","payload":{"event_id":"` + uuid1 + `","event_timestamp":"2023-03-06T12:11:35.103792","user_id":987}}`,
		diatorFields{"notification_event", "UserJoined", uuid1, `{"event_id":"` + uuid1 + `","event_timestamp":"2023-03-06T12:11:35.103792","user_id":987}`}},
	// Diator's own test sends an empty type and name.
	{"EmptyTypeAndName",
		`{"message_type":"","message_name":"","message_id":"` + uuid1 + `","payload":{"phrase":"hello"}}`,
		diatorFields{"", "", uuid1, `{"phrase":"hello"}`}},
	{"UpperCaseUUIDSpacesAndMore",
		` { "payload" : { "a" : [ 1 , 2 ] } , "message_id" : "` + uuid2 + `", "message_name":"N:x", "message_type":"t:y", "extra": 1 } `,
		diatorFields{"t:y", "N:x", uuid2, `{ "a" : [ 1 , 2 ] }`}},
	{"Unicode",
		`{"message_type":"ecst_event","message_name":"Événement","message_id":"` + uuid1 + `","payload":{"s":"日本\u2028<&>"}}`,
		diatorFields{"ecst_event", "Événement", uuid1, `{"s":"日本\u2028<&>"}`}},
}

// What Diator cannot have published, or could not read back.
var diatorRefused = []struct{ name, json string }{
	{"NotJSON", `not json`},
	{"Array", `[1]`},
	{"InvalidUTF8", `{"message_type":"t","message_name":"\xff","message_id":"` + uuid1 + `","payload":{}}`},
	{"NoMessageID", `{"message_type":"t","message_name":"n","payload":{}}`},
	{"NullMessageID", `{"message_type":"t","message_name":"n","message_id":null,"payload":{}}`},
	{"NumberMessageID", `{"message_type":"t","message_name":"n","message_id":1,"payload":{}}`},
	{"MessageIDNotUUID", `{"message_type":"t","message_name":"n","message_id":"x","payload":{}}`},
	{"MessageIDWithoutHyphens", `{"message_type":"t","message_name":"n","message_id":"82a0b10e1b3d4c3c9bdd3934f8f824c2","payload":{}}`},
	{"MessageIDInBraces", `{"message_type":"t","message_name":"n","message_id":"{` + uuid1 + `}","payload":{}}`},
	{"NoMessageType", `{"message_name":"n","message_id":"` + uuid1 + `","payload":{}}`},
	{"NumberMessageType", `{"message_type":1,"message_name":"n","message_id":"` + uuid1 + `","payload":{}}`},
	{"NoMessageName", `{"message_type":"t","message_id":"` + uuid1 + `","payload":{}}`},
	{"NullMessageName", `{"message_type":"t","message_name":null,"message_id":"` + uuid1 + `","payload":{}}`},
	{"NoPayload", `{"message_type":"t","message_name":"n","message_id":"` + uuid1 + `"}`},
	{"NullPayload", `{"message_type":"t","message_name":"n","message_id":"` + uuid1 + `","payload":null}`},
	{"ArrayPayload", `{"message_type":"t","message_name":"n","message_id":"` + uuid1 + `","payload":[1]}`},
	{"StringPayload", `{"message_type":"t","message_name":"n","message_id":"` + uuid1 + `","payload":"{}"}`},
}

// DecodeDiator accepts what Diator publishes and refuses what it cannot;
// EncodeDiator writes back exactly what Diator would have published.
func TestDecodeDiator(t *testing.T) {
	for _, tc := range diatorAccepted {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeFields([]byte(tc.json))
			if err != nil {
				t.Fatalf("DecodeDiator: %v", err)
			}
			if got != tc.fields {
				t.Fatalf("DecodeDiator = %+v, want %+v", got, tc.fields)
			}
			b, err := mbredis.EncodeDiator(got.typ, got.name, got.id, []byte(got.payload))
			if err != nil {
				t.Fatalf("EncodeDiator of what DecodeDiator accepted: %v", err)
			}
			if tc.json == compactJSON(t, tc.json) && string(b) != tc.json {
				t.Errorf("EncodeDiator = %s\nDiator wrote  %s", b, tc.json)
			}
		})
	}
	for _, tc := range diatorRefused {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := decodeFields([]byte(tc.json)); err == nil {
				t.Errorf("DecodeDiator(%s) = %+v, want an error", tc.json, got)
			}
		})
	}
}

// EncodeDiator accepts what Diator's Message holds and refuses what it
// cannot; DecodeDiator reads back what it wrote.
func TestEncodeDiator(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields diatorFields
		want   string
	}{
		{"EmptyTypeAndName", diatorFields{"", "", uuid1, `{}`},
			`{"message_type":"","message_name":"","message_id":"` + uuid1 + `","payload":{}}`},
		{"Compacted", diatorFields{"notification_event", "N", uuid2, " {\n \"a\": [1, 2], \"h\": \"<&>\" }\n"},
			`{"message_type":"notification_event","message_name":"N","message_id":"` + uuid2 + `","payload":{"a":[1,2],"h":"<&>"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fields
			b, err := mbredis.EncodeDiator(f.typ, f.name, f.id, []byte(f.payload))
			if err != nil {
				t.Fatalf("EncodeDiator: %v", err)
			}
			if string(b) != tc.want {
				t.Errorf("EncodeDiator = %s\nwant          %s", b, tc.want)
			}
			got, err := decodeFields(b)
			f.payload = compactJSON(t, f.payload)
			if err != nil || got != f {
				t.Errorf("DecodeDiator(EncodeDiator(%+v)) = %+v, %v", f, got, err)
			}
		})
	}
	for _, tc := range []struct {
		name   string
		fields diatorFields
	}{
		{"EmptyID", diatorFields{"t", "n", "", `{}`}},
		{"IDNotUUID", diatorFields{"t", "n", "not-a-uuid", `{}`}},
		{"IDWithColon", diatorFields{"t", "n", "a:b", `{}`}},
		{"ArrayPayload", diatorFields{"t", "n", uuid1, `[1]`}},
		{"StringPayload", diatorFields{"t", "n", uuid1, `"s"`}},
		{"NullPayload", diatorFields{"t", "n", uuid1, `null`}},
		{"EmptyPayload", diatorFields{"t", "n", uuid1, ``}},
		{"InvalidPayload", diatorFields{"t", "n", uuid1, `{"a":}`}},
		{"InvalidUTF8Payload", diatorFields{"t", "n", uuid1, "{\"a\":\"\xff\"}"}},
		{"InvalidUTF8Name", diatorFields{"t", "\xff", uuid1, `{}`}},
		{"InvalidUTF8Type", diatorFields{"\xff", "n", uuid1, `{}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fields
			if b, err := mbredis.EncodeDiator(f.typ, f.name, f.id, []byte(f.payload)); err == nil {
				t.Errorf("EncodeDiator(%+v) = %s, want an error", f, b)
			}
		})
	}
}

// Whatever DecodeDiator accepts, EncodeDiator writes, and DecodeDiator
// reads back the same; writing that again gives the same bytes.
func FuzzDiatorRoundTrip(f *testing.F) {
	for _, tc := range diatorAccepted {
		f.Add([]byte(tc.json))
	}
	for _, tc := range diatorRefused {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := mbredis.DecodeDiator(b, "/src")
		if err != nil {
			return
		}
		first, err := decodeFields(b)
		if err != nil {
			t.Fatal(err)
		}
		enc, err := mbredis.EncodeDiator(first.typ, first.name, first.id, m.Body)
		if err != nil {
			t.Fatalf("EncodeDiator of %+v, which DecodeDiator accepted: %v", first, err)
		}
		again, err := decodeFields(enc)
		if err != nil {
			t.Fatalf("DecodeDiator of %s, written by EncodeDiator: %v", enc, err)
		}
		first.payload = compactJSON(t, first.payload)
		if again != first {
			t.Fatalf("decoded %+v, encoded %s, decoded again %+v", first, enc, again)
		}
		if enc2, err := mbredis.EncodeDiator(again.typ, again.name, again.id, []byte(again.payload)); err != nil || !bytes.Equal(enc2, enc) {
			t.Fatalf("encoding again = %s, %v; want %s", enc2, err, enc)
		}
		if want := map[string]string{
			"ce-id": first.id, "ce-type": first.name, "ce-specversion": "1.0", "ce-source": "/src",
			"content-type": "application/json", mbredis.HeaderDiatorMessageType: first.typ,
		}; !maps.Equal(m.Headers, want) {
			t.Fatalf("headers %v, want %v", m.Headers, want)
		}
	})
}
