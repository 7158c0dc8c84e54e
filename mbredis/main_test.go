package mbredis_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		// This process is a helper a test started (see startHelper).
		os.Exit(runHelper(mode))
	}
	goleak.VerifyTestMain(m)
}
