package redisevents_test

import (
	"bufio"
	"context"
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

	"github.com/mb-go/mb/internal/testenv/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
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
// with SIGINT and checks that it drains and exits with status 0. Then it
// runs the consumer with a new group, which ships the same orders, placed
// before that group existed.
func TestProducerConsumer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example with the go command")
	}
	client := redistest.Client(t)
	prefix := redistest.Prefix(t, client, "mbtest:example:")

	dir := t.TempDir()
	producer := build(t, dir, "producer")
	consumer := build(t, dir, "consumer")
	env := append(os.Environ(), "REDIS_URL="+redistest.URL(), "REDIS_KEY_PREFIX="+prefix)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cons := startConsumer(t, ctx, consumer, env)

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
	cons.shipsAll(t, "order-1", "order-2", "order-3")
	cons.stop(t)
	checkNothingPending(t, ctx, client, prefix, "shipping")

	// A group that did not exist when the orders were placed starts at the
	// oldest entry of the stream: it ships them all.
	late := startConsumer(t, ctx, consumer, env, "-group", "returns")
	late.shipsAll(t, "order-1", "order-2", "order-3")
	late.stop(t)
	checkNothingPending(t, ctx, client, prefix, "returns")
}

// consumerProc is a running consumer program.
type consumerProc struct {
	ctx    context.Context
	cmd    *exec.Cmd
	lines  chan string
	exited bool
}

// startConsumer starts the consumer program with args and waits for it to
// say that it consumes. It is killed at the end of the test if it still
// runs.
func startConsumer(t *testing.T, ctx context.Context, consumer string, env []string, args ...string) *consumerProc {
	t.Helper()
	c := &consumerProc{ctx: ctx, cmd: exec.Command(consumer, args...), lines: make(chan string)}
	c.cmd.Env = env
	c.cmd.Stderr = os.Stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !c.exited {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	if l := c.next(t, "the consumer to start"); !strings.HasPrefix(l, "consuming ") {
		t.Fatalf("consumer printed %q first, want \"consuming ...\"", l)
	}
	return c
}

// next returns the next line the consumer prints.
func (c *consumerProc) next(t *testing.T, what string) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatalf("consumer closed its output, waiting for %s", what)
		}
		t.Logf("consumer: %s", l)
		return l
	case <-c.ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
	return ""
}

// shipsAll reads the consumer's output until it shipped every one of
// orders, and fails on anything else or on an order shipped twice.
func (c *consumerProc) shipsAll(t *testing.T, orders ...string) {
	t.Helper()
	shipped := map[string]bool{}
	for len(shipped) < len(orders) {
		l := c.next(t, "the orders to be shipped")
		var order, customer string
		if _, err := fmt.Sscanf(l, "shipping %s for %s", &order, &customer); err != nil {
			t.Fatalf("unexpected consumer line %q", l)
		}
		if shipped[order] {
			t.Errorf("%s shipped twice", order)
		}
		shipped[order] = true
	}
	for _, o := range orders {
		if !shipped[o] {
			t.Errorf("%s not shipped; shipped %v", o, shipped)
		}
	}
}

// stop sends SIGINT to the consumer and checks that it says "stopped" and
// exits with status 0.
func (c *consumerProc) stop(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if l := c.next(t, "the consumer to stop"); l != "stopped" {
		t.Errorf("consumer printed %q after SIGINT, want \"stopped\"", l)
	}
	for range c.lines { // drain to EOF
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- c.cmd.Wait() }()
	select {
	case err := <-waitErr:
		c.exited = true
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("consumer exited with %v after SIGINT, want status 0", err)
		} else if err != nil {
			t.Fatal(err)
		}
	case <-c.ctx.Done():
		t.Fatal("consumer did not exit after SIGINT")
	}
}

// checkNothingPending checks that group has acknowledged everything it
// received from the orders stream.
func checkNothingPending(t *testing.T, ctx context.Context, client *redis.Client, prefix, group string) {
	t.Helper()
	pending, err := client.XPending(ctx, prefix+"orders.placed", group).Result()
	if err != nil {
		t.Fatal(err)
	}
	if pending.Count != 0 {
		t.Errorf("group %s has %d pending entries after the drain, want 0", group, pending.Count)
	}
}
