package mbredis_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
	"github.com/redis/go-redis/v9"
)

// replyError is a Redis error reply, as go-redis returns them.
type replyError string

func (e replyError) Error() string { return string(e) }
func (replyError) RedisError()     {}

func TestIsRetryable(t *testing.T) {
	c := newClientNoPing(t)
	d, err := mbredis.NewStreams(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{io.EOF, true},
		{fmt.Errorf("wrapped: %w", io.ErrUnexpectedEOF), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{syscall.ECONNRESET, true},
		{redis.ErrPoolTimeout, true},
		{replyError("LOADING Redis is loading the dataset in memory"), true},
		{replyError("CLUSTERDOWN The cluster is down"), true},
		{replyError("READONLY You can't write against a read only replica."), true},
		{replyError("MASTERDOWN Link with MASTER is down"), true},
		{replyError("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{replyError("ERR max number of clients reached"), true},
		{replyError("NOGROUP No such key 'x' or consumer group 'g'"), false},
		{replyError("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{redis.Nil, false},
		{redis.ErrClosed, false},
		{mbdriver.ErrClosed, false},
		{context.Canceled, false},
		{context.DeadlineExceeded, false},
		{errors.New("something else"), false},
	} {
		if got := d.IsRetryable(tc.err); got != tc.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestAs(t *testing.T) {
	c := newClientNoPing(t)
	d, err := mbredis.NewStreams(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	var uc redis.UniversalClient
	if !d.As(&uc) || uc != c {
		t.Error("As(*redis.UniversalClient) failed")
	}
	var rc *redis.Client
	if !d.As(&rc) || rc != c {
		t.Error("As(**redis.Client) failed")
	}
	var cc *redis.ClusterClient
	if d.As(&cc) {
		t.Error("As(**redis.ClusterClient) = true for a *redis.Client")
	}
	p, err := mbredis.NewPubSub(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !p.As(&rc) {
		t.Error("PubSub.As(**redis.Client) failed")
	}
}
