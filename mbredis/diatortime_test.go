package mbredis_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/mb-go/mb/mbredis"
)

// The payload of Diator's documentation (an event published by its
// RedisMessageBroker) decodes into a Go struct with a DiatorTime.
func TestDiatorTimeInPayload(t *testing.T) {
	var e struct {
		EventID        string             `json:"event_id"`
		EventTimestamp mbredis.DiatorTime `json:"event_timestamp"`
		UserID         int                `json:"user_id"`
	}
	const payload = `{"event_id":"9f62e977-73f7-462b-92cb-8ea658d3bcb5","event_timestamp":"2023-03-07T09:26:02.588855","user_id":123}`
	if err := json.Unmarshal([]byte(payload), &e); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2023, 3, 7, 9, 26, 2, 588855000, time.UTC); !e.EventTimestamp.Equal(want) {
		t.Errorf("event_timestamp = %v, want %v", e.EventTimestamp, want)
	}
	b, err := json.Marshal(e)
	if err != nil || string(b) != payload {
		t.Errorf("Marshal = %s, %v; want %s", b, err, payload)
	}
}

func TestDiatorTimeUnmarshal(t *testing.T) {
	plus2 := time.FixedZone("", 2*3600)
	for in, want := range map[string]time.Time{
		"2024-05-01T12:34:56.123456":       time.Date(2024, 5, 1, 12, 34, 56, 123456000, time.UTC),
		"2024-05-01T12:34:56":              time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		"2023-03-06 12:11:35.103792":       time.Date(2023, 3, 6, 12, 11, 35, 103792000, time.UTC),
		"2024-05-01t12:34:56.1":            time.Date(2024, 5, 1, 12, 34, 56, 100000000, time.UTC),
		"2024-05-01T12:34:56.123456789Z":   time.Date(2024, 5, 1, 12, 34, 56, 123456789, time.UTC),
		"2024-05-01T12:34:56z":             time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		"2024-05-01T14:34:56.123456+02:00": time.Date(2024, 5, 1, 14, 34, 56, 123456000, plus2),
		"2024-05-01T10:34:56-02:00":        time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC),
		"2024-02-29T00:00:00":              time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		"0001-01-01T00:00:00":              {},
		"9999-12-31T23:59:59.999999":       time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
	} {
		var d mbredis.DiatorTime
		if err := json.Unmarshal([]byte(`"`+in+`"`), &d); err != nil {
			t.Errorf("Unmarshal(%q): %v", in, err)
			continue
		}
		if !d.Equal(want) {
			t.Errorf("Unmarshal(%q) = %v, want %v", in, d.Time, want)
		}
	}
	for _, in := range []string{
		`""`, `"2024-05-01"`, `"2024-05-01T12:34"`, `"2024-05-01T12:34:56."`, `"2024-05-01T12:34:56.1234567890"`,
		`"2024-05-01T12:34:56,5"`, `"2024-05-01X12:34:56"`, `"2024-5-01T12:34:56"`, `"2024-02-30T00:00:00"`,
		`"2023-02-29T00:00:00"`, `"2024-05-01T24:00:00"`, `"2024-05-01T12:60:00"`, `"2024-05-01T12:34:60"`,
		`"0000-01-01T00:00:00"`, `"0001-01-01T00:30:00+01:00"`, `"9999-12-31T23:30:00-01:00"`,
		`"2024-05-01T12:34:56+05:30:15"`, `"2024-05-01T12:34:56+0530"`, `"2024-05-01T12:34:56+24:00"`,
		`"2024-05-01T12:34:56 Z"`, `"2024-05-01T12:34:56Zjunk"`, `"+2024-05-01T12:34:56"`, `"-001-05-01T12:34:56"`,
		`1714566896`, `true`, `{}`,
	} {
		var d mbredis.DiatorTime
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, d.Time)
		}
	}
	// null leaves the value alone.
	d := mbredis.DiatorTime{Time: time.Unix(1, 0)}
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || !d.Equal(time.Unix(1, 0)) {
		t.Errorf("Unmarshal(null) = %v, %v; want the value unchanged", d.Time, err)
	}
}

func TestDiatorTimeMarshal(t *testing.T) {
	for _, tc := range []struct {
		in   time.Time
		want string
	}{
		{time.Date(2024, 5, 1, 12, 34, 56, 123456789, time.UTC), "2024-05-01T12:34:56.123456"},
		{time.Date(2024, 5, 1, 12, 34, 56, 999, time.UTC), "2024-05-01T12:34:56"},
		{time.Date(2024, 5, 1, 14, 34, 56, 1000, time.FixedZone("CEST", 2*3600)), "2024-05-01T12:34:56.000001"},
		{time.Time{}, "0001-01-01T00:00:00"},
	} {
		b, err := json.Marshal(mbredis.DiatorTime{Time: tc.in})
		if err != nil || string(b) != `"`+tc.want+`"` {
			t.Errorf("Marshal(%v) = %s, %v; want %q", tc.in, b, err, tc.want)
		}
		if txt, err := (mbredis.DiatorTime{Time: tc.in}).MarshalText(); err != nil || string(txt) != tc.want {
			t.Errorf("MarshalText(%v) = %s, %v; want %s", tc.in, txt, err, tc.want)
		}
	}
	for _, in := range []time.Time{time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(0, 12, 31, 0, 0, 0, 0, time.UTC)} {
		if b, err := json.Marshal(mbredis.DiatorTime{Time: in}); err == nil {
			t.Errorf("Marshal(%v) = %s, want an error: Python's datetime has no such year", in, b)
		}
	}
}

// Whatever UnmarshalText reads, MarshalText writes, and reading that gives
// the same instant, to the microsecond.
func FuzzDiatorTime(f *testing.F) {
	for _, s := range []string{
		"2024-05-01T12:34:56.123456", "2023-03-06 12:11:35.103792", "2024-05-01T14:34:56.123456789+02:00",
		"0001-01-01T00:00:00", "9999-12-31T23:59:59.999999z", "2024-05-01T12:34:56", "2024-02-30T00:00:00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var d mbredis.DiatorTime
		if err := d.UnmarshalText([]byte(s)); err != nil {
			return
		}
		b, err := d.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of %q, read as %v: %v", s, d.Time, err)
		}
		var again mbredis.DiatorTime
		if err := again.UnmarshalText(b); err != nil {
			t.Fatalf("UnmarshalText(%q), written from %q: %v", b, s, err)
		}
		if want := d.Truncate(time.Microsecond); !again.Equal(want) || again.Location() != time.UTC {
			t.Fatalf("%q read as %v, written as %q, read back as %v; want %v in UTC", s, d.Time, b, again.Time, want)
		}
		if b2, err := again.MarshalText(); err != nil || string(b2) != string(b) {
			t.Fatalf("written again as %q, %v; want %q", b2, err, b)
		}
	})
}
