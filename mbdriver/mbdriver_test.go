package mbdriver_test

import (
	"errors"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/mb-go/mb/mbdriver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Drivers wrap ErrClosed with their own context; callers test with errors.Is.
func TestErrClosedWraps(t *testing.T) {
	err := fmt.Errorf("mbredis: receive on stream %q: %w", "orders", mbdriver.ErrClosed)
	if !errors.Is(err, mbdriver.ErrClosed) {
		t.Fatalf("errors.Is(%v, ErrClosed) = false", err)
	}
	if errors.Is(errors.New("mbdriver: closed"), mbdriver.ErrClosed) {
		t.Fatal("a different error with the same text matched ErrClosed")
	}
}

func TestStartPositionString(t *testing.T) {
	for p, want := range map[mbdriver.StartPosition]string{
		mbdriver.StartNew:          "StartNew",
		mbdriver.StartOldest:       "StartOldest",
		mbdriver.StartPosition(7):  "StartPosition(7)",
		mbdriver.StartPosition(-1): "StartPosition(-1)",
	} {
		if got := p.String(); got != want {
			t.Errorf("StartPosition(%d).String() = %q, want %q", int(p), got, want)
		}
	}
	var zero mbdriver.Subscription
	if zero.Start != mbdriver.StartNew {
		t.Errorf("the zero Subscription starts at %v, want StartNew", zero.Start)
	}
}
