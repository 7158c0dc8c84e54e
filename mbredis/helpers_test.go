package mbredis_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/internal/testenv"
	"github.com/mb-go/mb/internal/testenv/redistest"
	"github.com/mb-go/mb/mbredis"
)

// runPrefix isolates this test run's keys and channels.
var runPrefix = "mbtest:" + redistest.RandHex(4) + ":"

// unavailable skips the test, or fails it when MB_REQUIRE_SERVICES=1.
var unavailable = testenv.Unavailable

// newClient returns a client of the test Redis, closed at the end of the
// test, or skips the test when Redis is unreachable.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	return redistest.Client(t)
}

// prefix returns a key prefix unique to t, whose keys are deleted at the
// end of the test.
func prefix(t testing.TB, c *redis.Client) string {
	t.Helper()
	return redistest.Prefix(t, c, runPrefix)
}

// newClientNoPing returns a client that is never used to connect.
func newClientNoPing(t testing.TB) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// The helper processes of the SIGKILL tests: the test binary re-executed
// with these variables set, run by TestMain instead of the tests.
const (
	helperEnv      = "MBREDIS_TEST_HELPER" // the mode, a key of helperModes
	helperPrefix   = "MBREDIS_TEST_HELPER_PREFIX"
	helperTopic    = "MBREDIS_TEST_HELPER_TOPIC"
	helperGroup    = "MBREDIS_TEST_HELPER_GROUP"
	helperN        = "MBREDIS_TEST_HELPER_N" // what n means is the mode's
	helperConsumer = "child"                 // the helper's consumer name
)

// helperModes are what a helper process can do: each runs as consumer
// helperConsumer of the group over d until it is killed, and returns only
// on failure.
var helperModes = map[string]func(d *mbredis.Streams, topic, group string, n int) error{
	"receive-no-ack": helperReceiveNoAck, // sigkill_test.go
	"consume-block":  helperConsumeBlock, // runtime_test.go
}

// startHelper re-runs the test binary as a helper process in mode, on the
// keys of prefix, and returns it with its standard output. The child is
// killed at the end of the test if it is still running.
func startHelper(t *testing.T, mode, prefix, topic, group string, n int) (*exec.Cmd, io.Reader) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		helperEnv+"="+mode, helperPrefix+"="+prefix, helperTopic+"="+topic,
		helperGroup+"="+group, helperN+"="+strconv.Itoa(n), testenv.RedisURLVar+"="+redistest.URL())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, out
}

// runHelper is the main of a helper process: it runs mode and returns the
// exit code.
func runHelper(mode string) int {
	run := helperModes[mode]
	if run == nil {
		fmt.Fprintf(os.Stderr, "unknown helper mode %q\n", mode)
		return 2
	}
	n, _ := strconv.Atoi(os.Getenv(helperN))
	opts, err := redis.ParseURL(redistest.URL())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// ClaimMinIdle of an hour: the helper never takes entries over.
	d, err := mbredis.NewStreams(redis.NewClient(opts), &mbredis.StreamsOptions{
		KeyPrefix: os.Getenv(helperPrefix), Block: testBlock, ClaimMinIdle: time.Hour,
	})
	if err == nil {
		err = run(d, os.Getenv(helperTopic), os.Getenv(helperGroup), n)
	}
	fmt.Fprintf(os.Stderr, "helper %s: %v\n", mode, err)
	return 2
}
