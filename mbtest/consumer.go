package mbtest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// RunConsumer runs c.Run in a goroutine with a context derived from ctx
// and returns a function that stops it: it cancels that context (Run then
// drains), waits for Run to return and returns Run's error. stop may be
// called more than once and from several goroutines; it returns the same
// error each time. If the test never calls it, stop runs at cleanup and a
// Run error fails the test.
//
// stop waits at most a minute beyond the consumer's drain: a Run that has
// not returned by then (a handler that ignores its context) fails the test
// with t.Errorf and stop returns an error saying so.
func RunConsumer(t testing.TB, ctx context.Context, c *mb.Consumer) (stop func() error) {
	t.Helper()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(rctx) }()
	var once sync.Once
	var err error
	var called atomic.Bool
	halt := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(time.Minute + mb.DefaultDrainTimeout):
				err = fmt.Errorf("mbtest: Consumer.Run did not return within %v of its context being cancelled", time.Minute+mb.DefaultDrainTimeout)
				t.Errorf("%v", err)
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := halt(); err != nil && !called.Load() {
			t.Errorf("mbtest: Consumer.Run: %v", err)
		}
	})
	return func() error {
		called.Store(true)
		return halt()
	}
}
