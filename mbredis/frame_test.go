package mbredis_test

import (
	"bytes"
	"errors"
	"maps"
	"testing"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, m := range []*mbdriver.Message{
		{},
		{ID: "id-1", Body: []byte("body")},
		{ID: "\x00\xff", PartitionKey: "k", Headers: map[string]string{"ce-type": "x", "": "", "bin": "\x00\x01\xfe"}, Body: []byte{0, 1, 2}},
	} {
		b := mbredis.EncodeFrame(m)
		got, err := mbredis.DecodeFrame(b)
		if err != nil {
			t.Fatalf("DecodeFrame(EncodeFrame(%+v)): %v", m, err)
		}
		if got.ID != m.ID || got.PartitionKey != m.PartitionKey || !bytes.Equal(got.Body, m.Body) || !maps.Equal(got.Headers, m.Headers) {
			t.Errorf("round trip of %+v = %+v", m, got)
		}
	}
}

func TestFrameLayout(t *testing.T) {
	b := mbredis.EncodeFrame(&mbdriver.Message{ID: "ab", PartitionKey: "", Headers: map[string]string{"k": "v"}, Body: []byte("xyz")})
	want := []byte("mb\x01\x02ab\x00\x01\x01k\x01vxyz")
	if !bytes.Equal(b, want) {
		t.Errorf("EncodeFrame = %q, want %q", b, want)
	}
}

func TestDecodeFrameErrors(t *testing.T) {
	for _, b := range [][]byte{
		nil,
		[]byte("mb"),
		[]byte("mb\x02"),
		[]byte("mb\x01"),
		[]byte("mb\x01\x05ab"),
		[]byte("mb\x01\x00\x00\xff\xff\xff\xff\x0f"),
		[]byte("mb\x01\x00\x00\x02\x01k\x01v\x01k\x01w"),
		[]byte("mb\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
	} {
		if m, err := mbredis.DecodeFrame(b); !errors.Is(err, mbredis.ErrInvalidFrame) {
			t.Errorf("DecodeFrame(%q) = %+v, %v; want ErrInvalidFrame", b, m, err)
		}
	}
}

func FuzzDecodeFrame(f *testing.F) {
	f.Add([]byte("mb\x01\x02ab\x00\x01\x01k\x01vxyz"))
	f.Add(mbredis.EncodeFrame(&mbdriver.Message{ID: "id", PartitionKey: "pk", Headers: map[string]string{"a": "1", "b": "2"}, Body: []byte("{}")}))
	f.Add([]byte("mb\x01\x00\x00\xff\xff\xff\xff\x0f"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := mbredis.DecodeFrame(b)
		if err != nil {
			if !errors.Is(err, mbredis.ErrInvalidFrame) {
				t.Fatalf("error %v does not wrap ErrInvalidFrame", err)
			}
			return
		}
		// A decoded frame encodes back to the same bytes when its headers
		// were in order, and always decodes to the same message.
		again, err := mbredis.DecodeFrame(mbredis.EncodeFrame(m))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if again.ID != m.ID || again.PartitionKey != m.PartitionKey || !bytes.Equal(again.Body, m.Body) || !maps.Equal(again.Headers, m.Headers) {
			t.Fatalf("re-decoded %+v, want %+v", again, m)
		}
	})
}
