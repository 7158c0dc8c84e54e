package mbmem_test

import (
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbdrivertest"
	"github.com/mb-go/mb/mbmem"
)

// Every Open returns a Transport connected to the same broker, as two
// processes connected to one server.
func TestConformance(t *testing.T) {
	broker := mbmem.New(nil)
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open:   func(*testing.T) mbdriver.Driver { return broker.Connect() },
		Prefix: "mbmem-",
	})
}

// With an ack timeout nothing changes for messages acked in time, and
// receivers keep the messages they extend (Capabilities.Extend). The
// timeout is short, for the Extend subtests, which hold a message for
// three of them.
func TestConformanceAckTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	broker := mbmem.New(&mbmem.Options{AckTimeout: timeout})
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open:        func(*testing.T) mbdriver.Driver { return broker.Connect() },
		HoldTimeout: timeout,
	})
}
