package mbredis

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/mb-go/mb/mbdriver"
)

// ErrInvalidFrame is wrapped by the errors of [DecodeFrame]: the bytes are
// not a frame of the format [EncodeFrame] writes.
var ErrInvalidFrame = errors.New("mbredis: invalid frame")

// frameMagic starts every frame: "mb" and the format version 1.
var frameMagic = [3]byte{'m', 'b', 1}

// EncodeFrame returns m's ID, PartitionKey, Headers and Body as one
// binary-safe frame, the payload [PubSub] publishes in [FormatFrame].
//
// The format is, in order:
//
//	3 bytes    "m", "b", 0x01 (magic and version)
//	uvarint    length of ID, then the ID bytes
//	uvarint    length of PartitionKey, then its bytes
//	uvarint    number of headers, then for each, sorted by name:
//	             uvarint length of the name, the name bytes,
//	             uvarint length of the value, the value bytes
//	the rest   Body
//
// Lengths are unsigned LEB128 varints (encoding/binary's Uvarint). Names
// and values may hold any bytes. The receiver-side fields of m (Topic,
// Attempt, PublishedAt, AckID) are not encoded. EncodeFrame does not modify
// m and is safe for concurrent use.
func EncodeFrame(m *mbdriver.Message) []byte {
	n := len(frameMagic) + 3*binary.MaxVarintLen64 + len(m.ID) + len(m.PartitionKey) + len(m.Body)
	for k, v := range m.Headers {
		n += 2*binary.MaxVarintLen64 + len(k) + len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, frameMagic[:]...)
	b = appendString(b, m.ID)
	b = appendString(b, m.PartitionKey)
	b = binary.AppendUvarint(b, uint64(len(m.Headers)))
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		b = appendString(b, k)
		b = appendString(b, m.Headers[k])
	}
	return append(b, m.Body...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeFrame parses a frame written by [EncodeFrame] into a new Message
// with ID, PartitionKey, Headers (nil when there are none) and Body (which
// shares b's memory). It returns an error wrapping [ErrInvalidFrame] when b
// is not a frame: wrong magic or version, a length past the end, a
// duplicate header name. It never panics, whatever b holds, and allocates
// at most in proportion to len(b).
func DecodeFrame(b []byte) (*mbdriver.Message, error) {
	if len(b) < len(frameMagic) || [3]byte(b[:3]) != frameMagic {
		return nil, fmt.Errorf("%w: missing the \"mb\\x01\" magic", ErrInvalidFrame)
	}
	d := frameDecoder{b: b[len(frameMagic):]}
	m := &mbdriver.Message{}
	m.ID = d.string("id")
	m.PartitionKey = d.string("partition key")
	n := d.uvarint("header count")
	if d.err == nil && n > uint64(len(d.b))/2 {
		// Each header takes at least two bytes (two zero lengths).
		d.fail("header count %d exceeds the frame size", n)
	}
	if d.err == nil && n > 0 {
		m.Headers = make(map[string]string, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			k := d.string("header name")
			v := d.string("header value")
			if d.err != nil {
				break
			}
			if _, dup := m.Headers[k]; dup {
				d.fail("duplicate header %q", k)
				break
			}
			m.Headers[k] = v
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	m.Body = d.b
	return m, nil
}

type frameDecoder struct {
	b   []byte
	err error
}

func (d *frameDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalidFrame}, args...)...)
	}
}

func (d *frameDecoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("malformed %s length", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameDecoder) string(what string) string {
	n := d.uvarint(what)
	if d.err != nil {
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("%s of %d bytes runs past the end of the frame", what, n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
