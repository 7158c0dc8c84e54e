package testenv_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/mb-go/mb/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestURL(t *testing.T) {
	t.Setenv("MB_TEST_X_URL", "")
	if got := testenv.URL("MB_TEST_X_URL", "def"); got != "def" {
		t.Errorf("unset: URL = %q, want the default", got)
	}
	t.Setenv("MB_TEST_X_URL", "redis://elsewhere:1/0")
	if got := testenv.URL("MB_TEST_X_URL", "def"); got != "redis://elsewhere:1/0" {
		t.Errorf("set: URL = %q", got)
	}
}

// fakeTB records whether Unavailable skipped or failed.
type fakeTB struct {
	testing.TB
	skipped, failed bool
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Skipf(string, ...any)         { f.skipped = true }
func (f *fakeTB) Fatalf(string, ...any)        { f.failed = true }
func (f *fakeTB) Logf(format string, a ...any) {}

func TestUnavailable(t *testing.T) {
	t.Setenv(testenv.RequireServices, "")
	var tb fakeTB
	testenv.Unavailable(&tb, "down")
	if !tb.skipped || tb.failed {
		t.Errorf("without %s: skipped=%v failed=%v, want a skip", testenv.RequireServices, tb.skipped, tb.failed)
	}
	t.Setenv(testenv.RequireServices, "1")
	tb = fakeTB{}
	testenv.Unavailable(&tb, "down")
	if !tb.failed || tb.skipped {
		t.Errorf("with %s=1: skipped=%v failed=%v, want a failure", testenv.RequireServices, tb.skipped, tb.failed)
	}
}
