package mbredis_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbredis"
	"github.com/redis/go-redis/v9"
)

// ownRedis is a redis-server of the test's own, on a free port, with its
// data (AOF, fsync always) in a temporary directory, so that the test can
// kill and restart it without touching the shared Redis.
type ownRedis struct {
	t    *testing.T
	port int
	dir  string
	cmd  *exec.Cmd
}

func startOwnRedis(t *testing.T) *ownRedis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		unavailable(t, "redis-server is not installed (%v); the restart test starts its own server (apt-get install redis-server)", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	_ = l.Close()
	s := &ownRedis{t: t, port: port, dir: t.TempDir()}
	s.start()
	t.Cleanup(s.kill)
	return s
}

func (s *ownRedis) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *ownRedis) start() {
	s.t.Helper()
	log, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		s.t.Fatal(err)
	}
	defer log.Close()
	s.cmd = exec.Command("redis-server",
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "yes", "--appendfsync", "always", "--dir", s.dir)
	s.cmd.Stdout, s.cmd.Stderr = log, log
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("own redis-server on %s not ready: %v\n%s", s.addr(), err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill stops the server with SIGKILL: what the AOF (fsync always) holds
// survives.
func (s *ownRedis) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// freeze stops the server with SIGSTOP, and returns once it is stopped:
// connections stay open, commands get no reply, until thaw. The server is
// killed at the end of the test in any case.
func (s *ownRedis) freeze() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
	// The signal takes effect a moment later: until the kernel says the
	// process is stopped ("T" in /proc/<pid>/stat), it may still answer.
	stat := fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); ; {
		b, err := os.ReadFile(stat)
		if err != nil {
			s.t.Fatal(err)
		}
		// "<pid> (<comm>) <state> ...": the state follows the last ')'.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && bytes.HasPrefix(b[i+1:], []byte(" T")) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server not stopped 10s after SIGSTOP: %s", b)
		}
		time.Sleep(time.Millisecond)
	}
}

// thaw resumes a frozen server (SIGCONT).
func (s *ownRedis) thaw() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
}

func (s *ownRedis) client(t *testing.T) *redis.Client {
	c := redis.NewClient(&redis.Options{
		Addr:            s.addr(),
		DialTimeout:     500 * time.Millisecond,
		ReadTimeout:     time.Second,
		MaxRetries:      1,
		MinRetryBackoff: 10 * time.Millisecond,
		MaxRetryBackoff: 50 * time.Millisecond,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestStreamsRedisRestart: a producer and a consumer run while Redis is
// killed and started again with the same data; both reconnect, and every
// message whose XADD was acknowledged is received.
func TestStreamsRedisRestart(t *testing.T) {
	srv := startOwnRedis(t)
	opts := &mbredis.StreamsOptions{Block: testBlock, ClaimMinIdle: testClaimMinIdle}
	pub, err := mbredis.NewStreams(srv.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := mbredis.NewStreams(srv.client(t), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	r, err := sub.Subscribe(ctx, mbdriver.Subscription{Topic: "t", Group: "g", Consumer: "c"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	var (
		mu        sync.Mutex
		published = map[string]bool{} // acknowledged by Redis
		received  = map[string]bool{}
		pubErrs   int
		recvErrs  int
	)
	count := func(m map[string]bool) int { mu.Lock(); defer mu.Unlock(); return len(m) }
	stopPub := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stopPub:
				return
			default:
			}
			id := fmt.Sprintf("m%05d", i)
			for {
				err := pub.Publish(ctx, "t", []*mbdriver.Message{{ID: id, Body: []byte(id)}})
				if err == nil {
					break
				}
				if !pub.IsRetryable(err) {
					if ctx.Err() == nil {
						t.Errorf("Publish: non-retryable %v", err)
					}
					return
				}
				mu.Lock()
				pubErrs++
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			published[id] = true
			mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})
	rctx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	wg.Go(func() {
		for {
			msgs, err := r.Receive(rctx, 50)
			if err != nil {
				if sub.IsRetryable(err) {
					mu.Lock()
					recvErrs++
					mu.Unlock()
					time.Sleep(20 * time.Millisecond)
					continue
				}
				if rctx.Err() == nil {
					t.Errorf("Receive: non-retryable %v", err)
				}
				return
			}
			mu.Lock()
			for _, m := range msgs {
				received[m.ID] = true
			}
			mu.Unlock()
			for r.Ack(ctx, msgs) != nil && ctx.Err() == nil {
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("traffic before the restart", func() bool { return count(received) >= 50 })
	mu.Lock()
	errsBefore := pubErrs
	mu.Unlock()
	srv.kill()
	// Keep the server down until the publisher has noticed, so the test
	// exercises the retry path rather than a restart nobody saw.
	waitFor("the publisher to see the outage", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return pubErrs > errsBefore
	})
	srv.start()
	before := count(published)
	waitFor("publishing after the restart", func() bool { return count(published) >= before+50 })
	close(stopPub)
	waitFor("every acknowledged message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for id := range published {
			if !received[id] {
				return false
			}
		}
		return true
	})
	stopRecv()
	wg.Wait()
	t.Logf("published %d, received %d, %d publish and %d receive errors retried", count(published), count(received), pubErrs, recvErrs)
}

// TestPubSubRedisRestart: a subscriber keeps working after Redis restarts:
// messages published once it has resubscribed are received (those
// published meanwhile are lost: at most once).
func TestPubSubRedisRestart(t *testing.T) {
	srv := startOwnRedis(t)
	d, err := mbredis.NewPubSub(srv.client(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r, err := d.Subscribe(ctx, mbdriver.Subscription{Topic: "news"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	receiveOne := func(id string) {
		t.Helper()
		// Publish until received: the subscriber may still be resubscribing.
		for {
			if err := d.Publish(ctx, "news", []*mbdriver.Message{{ID: id}}); err != nil && !d.IsRetryable(err) {
				t.Fatal(err)
			}
			rctx, rcancel := context.WithTimeout(ctx, 200*time.Millisecond)
			msgs, err := r.Receive(rctx, 10)
			rcancel()
			if ctx.Err() != nil {
				t.Fatalf("%s not received: %v", id, err)
			}
			for _, m := range msgs {
				if m.ID == id {
					return
				}
			}
		}
	}
	receiveOne("before")
	srv.kill()
	time.Sleep(300 * time.Millisecond)
	srv.start()
	receiveOne("after")
}
