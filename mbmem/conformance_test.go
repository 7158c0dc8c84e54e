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

// With an ack timeout nothing changes for messages acked in time.
func TestConformanceAckTimeout(t *testing.T) {
	broker := mbmem.New(&mbmem.Options{AckTimeout: time.Minute})
	mbdrivertest.Run(t, mbdrivertest.Harness{
		Open: func(*testing.T) mbdriver.Driver { return broker.Connect() },
	})
}
