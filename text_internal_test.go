package mb

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 3, ""},
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"aé", 2, "a"},   // é is 2 bytes
		{"a€b", 3, "a"},  // € is 3 bytes
		{"a€b", 4, "a€"}, // whole
		{"𝄞𝄞", 7, "𝄞"},
		{"𝄞", 0, ""},
		{"a\xff\xfe", 2, "a\xff"}, // invalid bytes are cut anywhere
	} {
		if got := truncate(tc.s, tc.n); got != tc.want {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.want)
		}
	}
}

func FuzzTruncate(f *testing.F) {
	f.Add("héllo wörld €𝄞", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 {
			n = -n
		}
		got := truncate(s, n)
		if len(got) > n || !strings.HasPrefix(s, got) {
			t.Fatalf("truncate(%q, %d) = %q", s, n, got)
		}
		if utf8.ValidString(s) && (!utf8.ValidString(got) || len(s) > n && len(got) < n-utf8.UTFMax+1) {
			t.Fatalf("truncate(%q, %d) = %q: not a cut on the last boundary", s, n, got)
		}
	})
}
