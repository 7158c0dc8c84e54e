package mbredis

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// DiatorTime is a time.Time that reads and writes JSON as Diator does, for
// the event_timestamp of Diator's events (and any other datetime field of
// a payload): Python's isoformat of a datetime without time zone, such as
// "2024-05-01T12:34:56.123456", which encoding/json does not read into a
// time.Time.
//
// Diator's events take their timestamp from datetime.utcnow, so a time
// without zone is read as UTC. UnmarshalJSON and UnmarshalText accept
//
//	YYYY-MM-DD<sep>HH:MM:SS[.fraction][zone]
//
// where <sep> is "T", "t" or a space (Python's str of a datetime), the
// fraction has 1 to 9 digits, and the optional zone is "Z", "z" or
// "±HH:MM": Python's isoformat with or without zone and RFC 3339 both
// read. The time must lie within Python's years 1 to 9999 once in UTC.
// JSON null leaves the value as it is.
//
// MarshalJSON and MarshalText write the time in UTC, without zone, as
// Python's isoformat does: "2024-05-01T12:34:56.123456", or without
// fraction when the microseconds are 0; what is below the microsecond
// (which Python's datetime does not have) is dropped. They return an
// error for a time outside the years 1 to 9999 in UTC. The zero value is
// written as "0001-01-01T00:00:00", which reads back as the zero value.
//
// A DiatorTime is a value; its methods are safe for concurrent use.
type DiatorTime struct {
	time.Time
}

// diatorLayout is Python's isoformat of a naive datetime, without the
// fraction.
const diatorLayout = "2006-01-02T15:04:05"

// MarshalJSON writes t as a JSON string in Diator's format.
func (t DiatorTime) MarshalJSON() ([]byte, error) {
	b, err := t.MarshalText()
	if err != nil {
		return nil, err
	}
	return strconv.AppendQuote(nil, string(b)), nil
}

// MarshalText writes t in Diator's format.
func (t DiatorTime) MarshalText() ([]byte, error) {
	u := t.UTC()
	if y := u.Year(); y < 1 || y > 9999 {
		return nil, fmt.Errorf("mbredis: DiatorTime %v is outside the years 1 to 9999 (UTC) that Python's datetime holds", t.Time)
	}
	b := u.AppendFormat(make([]byte, 0, len(diatorLayout)+7), diatorLayout)
	if us := u.Nanosecond() / 1000; us != 0 {
		b = append(b, '.')
		b = append(b, fmt.Sprintf("%06d", us)...)
	}
	return b, nil
}

// UnmarshalJSON reads a JSON string in Diator's format (or RFC 3339); see
// [DiatorTime]. null leaves t as it is.
func (t *DiatorTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("mbredis: DiatorTime: %s is not a JSON string", b)
	}
	return t.UnmarshalText([]byte(s))
}

// UnmarshalText reads Diator's format (or RFC 3339); see [DiatorTime].
func (t *DiatorTime) UnmarshalText(b []byte) error {
	v, err := parseDiatorTime(string(b))
	if err != nil {
		return fmt.Errorf("mbredis: DiatorTime %q: %w; want Python's isoformat, as 2024-05-01T12:34:56.123456 (UTC) or with a zone", b, err)
	}
	t.Time = v
	return nil
}

var errDiatorTime = errors.New("not a datetime")

// parseDiatorTime parses YYYY-MM-DD<T|t| >HH:MM:SS[.f{1,9}][Z|z|±HH:MM].
func parseDiatorTime(s string) (time.Time, error) {
	// "YYYY-MM-DDTHH:MM:SS" is 19 bytes.
	if len(s) < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':' {
		return time.Time{}, errDiatorTime
	}
	year, month, day := digits(s[0:4]), digits(s[5:7]), digits(s[8:10])
	hour, minute, sec := digits(s[11:13]), digits(s[14:16]), digits(s[17:19])
	if year < 0 || month < 0 || day < 0 || hour < 0 || minute < 0 || sec < 0 {
		return time.Time{}, errDiatorTime
	}
	rest, nsec := s[19:], 0
	if len(rest) > 0 && rest[0] == '.' {
		n := 1 // rest[1:n] are the digits
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 || n > 10 {
			return time.Time{}, errDiatorTime
		}
		nsec = digits(rest[1:n] + "000000000"[n-1:])
		rest = rest[n:]
	}
	loc := time.UTC
	switch {
	case rest == "", rest == "Z", rest == "z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':':
		oh, om := digits(rest[1:3]), digits(rest[4:6])
		if oh < 0 || om < 0 || oh > 23 || om > 59 {
			return time.Time{}, errDiatorTime
		}
		offset := oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
		loc = time.FixedZone("", offset)
	default:
		return time.Time{}, errDiatorTime
	}
	v := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc)
	// time.Date normalises: 2024-02-30 would become March 1st.
	if v.Year() != year || int(v.Month()) != month || v.Day() != day || v.Hour() != hour || v.Minute() != minute || v.Second() != sec {
		return time.Time{}, errors.New("no such date or time")
	}
	if y := v.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, errors.New("outside the years 1 to 9999 (UTC) that Python's datetime holds")
	}
	return v, nil
}

// digits returns the value of the decimal digits s, or -1 when s holds
// anything else.
func digits(s string) int {
	v := 0
	for _, c := range []byte(s) {
		if !isDigit(c) {
			return -1
		}
		v = v*10 + int(c-'0')
	}
	return v
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
