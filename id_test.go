package mb_test

import (
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// idBytes decodes a canonical UUID string.
func idBytes(t *testing.T, id string) [16]byte {
	t.Helper()
	var u [16]byte
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		t.Fatalf("%q is not in the 8-4-4-4-12 form", id)
	}
	if _, err := hex.Decode(u[:], []byte(strings.ReplaceAll(id, "-", ""))); err != nil {
		t.Fatalf("%q: %v", id, err)
	}
	return u
}

func idMillis(u [16]byte) int64 {
	var ms int64
	for _, b := range u[:6] {
		ms = ms<<8 | int64(b)
	}
	return ms
}

func TestNewIDFormat(t *testing.T) {
	t.Parallel()
	for range 1000 {
		id := mb.NewID()
		wantUUIDv7(t, id)
		if id != strings.ToLower(id) {
			t.Fatalf("%q is not lowercase", id)
		}
		u := idBytes(t, id)
		if v := u[6] >> 4; v != 7 {
			t.Fatalf("%q: version %d, want 7", id, v)
		}
		if v := u[8] >> 6; v != 0b10 {
			t.Fatalf("%q: variant bits %02b, want 10 (RFC 9562)", id, v)
		}
	}
}

// The first 48 bits are the Unix time in milliseconds.
func TestNewIDTimestamp(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	id := mb.NewID()
	after := time.Now().UnixMilli()
	if ms := idMillis(idBytes(t, id)); ms < before || ms > after {
		t.Fatalf("%q carries %d ms, want between %d and %d", id, ms, before, after)
	}
}

// An ID made in a later millisecond sorts after one made earlier.
func TestNewIDOrderAcrossMilliseconds(t *testing.T) {
	t.Parallel()
	for range 5 {
		a := mb.NewID()
		msA := idMillis(idBytes(t, a))
		b := a
		for idMillis(idBytes(t, b)) == msA {
			b = mb.NewID()
		}
		if idMillis(idBytes(t, b)) < msA {
			t.Fatalf("clock went backwards between %q and %q", a, b)
		}
		if b <= a {
			t.Fatalf("%q, made in a later millisecond, does not sort after %q", b, a)
		}
	}
}

func TestNewIDUnique(t *testing.T) {
	t.Parallel()
	const goroutines, each = 4, 25_000
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			ids[g] = make([]string, each)
			for i := range ids[g] {
				ids[g][i] = mb.NewID()
			}
		})
	}
	wg.Wait()
	seen := make(map[string]struct{}, goroutines*each)
	for _, list := range ids {
		for _, id := range list {
			if _, dup := seen[id]; dup {
				t.Fatalf("duplicate id %q", id)
			}
			seen[id] = struct{}{}
		}
	}
	if len(seen) != 100_000 {
		t.Fatalf("%d ids, want 100000", len(seen))
	}
}
