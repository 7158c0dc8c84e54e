package mbredis

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// stopsAtDeadline reports whether client stops waiting for a reply at the
// deadline of the command's context: go-redis clients do only with
// ContextTimeoutEnabled, which is off by default; they otherwise wait for
// their ReadTimeout (and, for blocking commands, 10 seconds more). Clients
// of other types are assumed not to.
func stopsAtDeadline(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return false
}

// within returns what call returns, or ctx's error once ctx's deadline has
// passed, whichever comes first. call sends commands with ctx. When the
// client stops at deadlines itself (stops), or ctx has no deadline, call
// runs on the caller's goroutine. Otherwise it runs on a goroutine of its
// own, which is left to finish, within the client's own timeouts, when the
// deadline comes first: its commands may still take effect, as a command
// cut short by a timeout may.
//
// Only the deadline is enforced: a cancellation (without deadline) is
// noticed when call returns, as go-redis does, so that what a command
// already did (entries read or claimed) is not dropped on the floor.
func within[T any](ctx context.Context, stops bool, call func() (T, error)) (T, error) {
	dl, ok := ctx.Deadline()
	if stops || !ok {
		return call()
	}
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call()
		done <- result{v, err}
	}()
	t := time.NewTimer(time.Until(dl))
	defer t.Stop()
	select {
	case r := <-done:
		return r.v, r.err
	case <-t.C:
		if err := ctx.Err(); err != nil {
			return zero, err
		}
		// The timer fired a moment before ctx's own.
		return zero, context.DeadlineExceeded
	}
}

// withinErr is within for a call that returns only an error.
func withinErr(ctx context.Context, stops bool, call func() error) error {
	_, err := within(ctx, stops, func() (struct{}, error) { return struct{}{}, call() })
	return err
}
