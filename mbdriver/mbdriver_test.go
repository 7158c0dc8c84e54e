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
