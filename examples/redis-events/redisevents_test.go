package redisevents_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/mb-go/mb/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const envRedisURL = testenv.RedisURLVar

func redisURL() string { return testenv.RedisURL() }

// newClient returns a client of the test Redis, or skips the test (fails
// it when MB_REQUIRE_SERVICES=1) when Redis is unreachable.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	u := redisURL()
	opts, err := redis.ParseURL(u)
	if err != nil {
		t.Fatalf("%s=%q: %v", envRedisURL, u, err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		testenv.Unavailable(t, "Redis at %s is unreachable (%v); set %s to a reachable Redis", u, err, envRedisURL)
	}
	return c
}

// build compiles the example's package pkg into dir.
func build(t *testing.T, dir, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, pkg)
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./%s: %v\n%s", pkg, err, b)
	}
	return out
}

// TestProducerConsumer builds the two programs, runs the consumer, runs
// the producer, checks that the consumer ships every order, then stops it
// with SIGINT and checks that it drains and exits with status 0.
func TestProducerConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example with the go command")
	}
	client := newClient(t)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "mbtest:example:" + hex.EncodeToString(b) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err == nil && len(keys) > 0 {
			err = client.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Logf("cleanup: %v", err)
		}
	})

	dir := t.TempDir()
	producer := build(t, dir, "producer")
	consumer := build(t, dir, "consumer")
	env := append(os.Environ(), "REDIS_URL="+redisURL(), "REDIS_KEY_PREFIX="+prefix)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons := exec.Command(consumer)
	cons.Env = env
	cons.Stderr = os.Stderr
	stdout, err := cons.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cons.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	defer func() {
		if !exited {
			_ = cons.Process.Kill()
			_ = cons.Wait()
		}
	}()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("consumer closed its output, waiting for %s", what)
			}
			t.Logf("consumer: %s", l)
			return l
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		}
		return ""
	}
	if l := next("the consumer to start"); !strings.HasPrefix(l, "consuming ") {
		t.Fatalf("consumer printed %q first, want \"consuming ...\"", l)
	}

	prod := exec.CommandContext(ctx, producer, "-n", "3")
	prod.Env = env
	prod.Stderr = os.Stderr
	out, err := prod.Output()
	if err != nil {
		t.Fatalf("producer: %v\n%s", err, out)
	}
	want := "placed order-1 for alice\nplaced order-2 for bob\nplaced order-3 for carol\n"
	if string(out) != want {
		t.Fatalf("producer printed\n%s\nwant\n%s", out, want)
	}

	shipped := map[string]bool{}
	for len(shipped) < 3 {
		l := next("the orders to be shipped")
		var order, customer string
		if _, err := fmt.Sscanf(l, "shipping %s for %s", &order, &customer); err != nil {
			t.Fatalf("unexpected consumer line %q", l)
		}
		if shipped[order] {
			t.Errorf("%s shipped twice", order)
		}
		shipped[order] = true
	}
	for _, o := range []string{"order-1", "order-2", "order-3"} {
		if !shipped[o] {
			t.Errorf("%s not shipped; shipped %v", o, shipped)
		}
	}

	if err := cons.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if l := next("the consumer to stop"); l != "stopped" {
		t.Errorf("consumer printed %q after SIGINT, want \"stopped\"", l)
	}
	for range lines { // drain to EOF
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cons.Wait() }()
	select {
	case err := <-waitErr:
		exited = true
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("consumer exited with %v after SIGINT, want status 0", err)
		} else if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("consumer did not exit after SIGINT")
	}
	pending, err := client.XPending(ctx, prefix+"orders.placed", "shipping").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("group shipping has %d pending entries after the drain, want 0", pending.Count)
	}
}
