package mbredis

import (
	"encoding/json"
	"maps"
	"testing"
)

// diatorEvent gives a JSON object without event_id the message's id as its
// event_id, and leaves the other fields as they were; an object with a
// UUID event_id keeps it and makes it the message_id.
func FuzzDiatorEvent(f *testing.F) {
	for _, s := range []string{`{}`, ` { "a" : 1 } `, `{"event_id":"82a0b10e-1b3d-4c3c-9bdd-3934f8f824c2","b":[{}]}`, `{"event_id":1}`, `[1]`, `null`, `{"a":{"event_id":2}}`} {
		f.Add([]byte(s))
	}
	const id = "0190a3c4-5b6d-7e8f-9a0b-1c2d3e4f5a6b"
	f.Fuzz(func(t *testing.T, body []byte) {
		var before map[string]json.RawMessage
		isObject := json.Unmarshal(body, &before) == nil && before != nil
		gotID, payload, err := diatorEvent(id, body)
		if err != nil {
			if _, has := before["event_id"]; !isObject || !has {
				t.Fatalf("diatorEvent(%q): %v; only an event_id that is not a UUID is an error", body, err)
			}
			return
		}
		if !isObject {
			if gotID != id || string(payload) != string(body) {
				t.Fatalf("diatorEvent(%q) = %q, %q; want what is not an object as it is", body, gotID, payload)
			}
			return
		}
		var after map[string]json.RawMessage
		if err := json.Unmarshal(payload, &after); err != nil {
			t.Fatalf("diatorEvent(%q) = %q, not a JSON object: %v", body, payload, err)
		}
		var eventID string
		if err := json.Unmarshal(after["event_id"], &eventID); err != nil || eventID != gotID || !isUUID(gotID) {
			t.Fatalf("diatorEvent(%q) = %q, %q: message_id and event_id differ", body, gotID, payload)
		}
		if _, had := before["event_id"]; !had {
			delete(after, "event_id")
			if gotID != id || !maps.EqualFunc(before, after, func(a, b json.RawMessage) bool { return string(a) == string(b) }) {
				t.Fatalf("diatorEvent(%q) = %q, %q: want the other fields unchanged and the message's id", body, gotID, payload)
			}
		}
	})
}
