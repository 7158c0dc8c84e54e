package mbmem_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mb-go/mb/mbmem"
)

func TestClaims(t *testing.T) {
	var in mbmem.Claims
	release, ok := in.Claim("g\x00id1")
	if !ok || release == nil {
		t.Fatal("first Claim failed")
	}
	if _, ok := in.Claim("g\x00id1"); ok {
		t.Error("Claim of a claimed key succeeded")
	}
	if in.Seen("g\x00id1") || in.Len() != 0 {
		t.Error("a claimed key is seen")
	}
	release(false)
	release(true) // ignored: only the first call counts
	if in.Seen("g\x00id1") || in.Len() != 0 {
		t.Error("a released key is seen")
	}

	release, ok = in.Claim("g\x00id1")
	if !ok {
		t.Fatal("Claim after release(false) failed")
	}
	release(true)
	if !in.Seen("g\x00id1") || in.Len() != 1 {
		t.Errorf("Seen = %v, Len = %d after commit", in.Seen("g\x00id1"), in.Len())
	}
	if r, ok := in.Claim("g\x00id1"); ok || r != nil {
		t.Error("Claim of a committed key succeeded")
	}
	if _, ok := in.Claim("g\x00id2"); !ok {
		t.Error("Claim of another key failed")
	}
}

// Concurrent claims of one key: exactly one wins at a time, and once
// committed, none.
func TestClaimsConcurrent(t *testing.T) {
	var in mbmem.Claims
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for k := range 20 {
				key := fmt.Sprint("key", k)
				if release, ok := in.Claim(key); ok {
					wins.Add(1)
					release(i%2 == 0)
				}
			}
		})
	}
	wg.Wait()
	for k := range 20 {
		key := fmt.Sprint("key", k)
		if in.Seen(key) {
			continue
		}
		release, ok := in.Claim(key)
		if !ok {
			t.Fatalf("%s is neither committed nor claimable: a claim leaked", key)
		}
		release(true)
	}
	if in.Len() != 20 {
		t.Errorf("Len = %d, want 20", in.Len())
	}
	if w := wins.Load(); w < 20 {
		t.Errorf("%d wins, want at least 20", w)
	}
}

func ExampleInbox() {
	var in mbmem.Claims
	handle := func(group, id string) {
		release, ok := in.Claim(group + "\x00" + id)
		if !ok {
			fmt.Println("skip", id)
			return
		}
		fmt.Println("handle", id)
		release(true) // commit with the handler's effects
	}
	handle("billing", "m1")
	handle("billing", "m1") // redelivered
	fmt.Println(in.Seen("billing\x00m1"), in.Len())
	// Output:
	// handle m1
	// skip m1
	// true 1
}
