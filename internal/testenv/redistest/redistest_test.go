package redistest_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/mb-go/mb/internal/testenv/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A prefix's keys are gone once its test has ended, and only they.
func TestPrefixDeletesItsKeys(t *testing.T) {
	c := redistest.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	base := "mbtest:redistest:" + redistest.RandHex(4) + ":"
	var p string
	t.Run("test", func(t *testing.T) {
		p = redistest.Prefix(t, c, base)
		if !strings.HasPrefix(p, base) {
			t.Fatalf("Prefix = %q, want it under %q", p, base)
		}
		if err := c.Set(ctx, p+"k", "v", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
	})
	// A key under the base but not under the prefix, with glob characters
	// the prefix's cleanup must not read as a pattern.
	other := base + "other*[x]"
	if err := c.Set(ctx, other, "v", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	defer c.Del(context.Background(), other)
	if keys, err := redistest.Keys(ctx, c, p); err != nil || len(keys) != 0 {
		t.Errorf("keys under %s after its test: %q, %v; want none", p, keys, err)
	}
	if keys, err := redistest.Keys(ctx, c, base+"other*"); err != nil || len(keys) != 1 || keys[0] != other {
		t.Errorf("Keys(%q) = %q, %v; want only %q", base+"other*", keys, err, other)
	}
}

func TestGlobEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain:":   "plain:",
		`a*b?[c]\`: `a\*b\?\[c\]\\`,
	} {
		if got := redistest.GlobEscape(in); got != want {
			t.Errorf("GlobEscape(%q) = %q, want %q", in, got, want)
		}
	}
}
