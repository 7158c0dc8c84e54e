package mbredis_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if helperMain() {
		return
	}
	goleak.VerifyTestMain(m)
}

// helperMain runs the helper-process mode selected by the environment (see
// sigkill_test.go) and reports whether it did.
func helperMain() bool {
	if os.Getenv(helperEnv) == "" {
		return false
	}
	os.Exit(runHelper())
	return true
}
