package mbredis

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb"
)

// retryablePrefixes are the Redis error replies that describe a transient
// server state: a replica still loading its data set, a cluster or a
// master being unavailable or failing over, a busy script, the client
// limit, or a key being migrated.
var retryablePrefixes = []string{
	"LOADING",
	"CLUSTERDOWN",
	"TRYAGAIN",
	"READONLY",
	"MASTERDOWN",
	"MOVED",
	"ASK",
	"BUSY ",
	"NOREPLICAS",
	"UNBLOCKED",
	"max number of clients reached",
}

// isRetryable reports whether err, returned by go-redis, is transient: a
// lost or refused connection, an I/O timeout, a pool timeout, or one of the
// server replies in retryablePrefixes. Context errors, a closed client,
// [redis.Nil] and command errors (wrong type, syntax, NOGROUP, NOPERM, OOM)
// are not.
func isRetryable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.Nil) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := strings.TrimPrefix(rerr.Error(), "ERR ")
		for _, p := range retryablePrefixes {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, redis.ErrPoolTimeout) || errors.Is(err, redis.ErrPoolExhausted) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ETIMEDOUT) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var nerr net.Error
	if errors.As(err, &nerr) {
		// Every net.Error from a client connection (dial failures, DNS
		// lookups, resets, timeouts) is a network condition.
		return true
	}
	var operr *net.OpError
	return errors.As(err, &operr)
}

// isNoGroup reports whether err says the stream or its consumer group does
// not exist (any more).
func isNoGroup(err error) bool {
	return redis.HasErrorPrefix(err, "NOGROUP")
}

// asClient implements Driver.As for both drivers.
func asClient(client redis.UniversalClient, i any) bool {
	switch p := i.(type) {
	case *redis.UniversalClient:
		*p = client
		return true
	case **redis.Client:
		c, ok := client.(*redis.Client)
		if ok {
			*p = c
		}
		return ok
	case **redis.ClusterClient:
		c, ok := client.(*redis.ClusterClient)
		if ok {
			*p = c
		}
		return ok
	case **redis.Ring:
		c, ok := client.(*redis.Ring)
		if ok {
			*p = c
		}
		return ok
	}
	return false
}

// invalid returns a configuration error wrapping [mb.ErrInvalidArgument].
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: mbredis: "+format, append([]any{mb.ErrInvalidArgument}, args...)...)
}
