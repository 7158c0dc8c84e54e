// Package redistest gives the tests of mb's Redis modules (mbredis, the
// examples, the benchmarks) their Redis: the server named by
// MB_TEST_REDIS_URL (default redis://127.0.0.1:6379/0), clients of it, and
// key prefixes that keep tests apart. When the server cannot be reached, a
// test skips, or fails when MB_REQUIRE_SERVICES=1, as every service test of
// the repository does (package testenv).
package redistest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mb-go/mb/internal/testenv"
)

// URL returns the URL of the test Redis: MB_TEST_REDIS_URL, or
// redis://127.0.0.1:6379/0 when it is unset.
func URL() string { return testenv.RedisURL() }

// Options returns new client options for the test Redis, parsed from
// [URL]. A malformed URL fails tb. It does not connect: use it for clients
// that a test configures or closes itself; [Client] checks the server.
func Options(tb testing.TB) *redis.Options {
	tb.Helper()
	u := URL()
	opts, err := redis.ParseURL(u)
	if err != nil {
		tb.Fatalf("%s=%q: %v", testenv.RedisURLVar, u, err)
	}
	return opts
}

// Client returns a new client of the test Redis with the options of
// [Options], closed when tb ends. When the server does not answer a PING
// it skips tb, or fails it when MB_REQUIRE_SERVICES=1; the PING is sent
// once per process (without retries, so that skipping is quick), and its
// outcome holds for every later call. Safe for concurrent use.
func Client(tb testing.TB) *redis.Client {
	tb.Helper()
	opts := Options(tb)
	if err := ping(opts); err != nil {
		testenv.Unavailable(tb, "Redis at %s is unreachable (%v); set %s to a reachable Redis, e.g. %s",
			URL(), err, testenv.RedisURLVar, testenv.DefaultRedisURL)
	}
	c := redis.NewClient(opts)
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

var (
	pingOnce sync.Once
	pingErr  error
)

// ping reports whether the server of opts answers, asking once per
// process.
func ping(opts *redis.Options) error {
	pingOnce.Do(func() {
		o := *opts
		o.MaxRetries = -1
		c := redis.NewClient(&o)
		defer func() { _ = c.Close() }()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		pingErr = c.Ping(ctx).Err()
	})
	return pingErr
}

// Prefix returns a key prefix unique to tb, base followed by random hex
// digits and ':', and deletes the keys that start with it, through c, when
// tb ends. Use it before every key, stream and channel name of the test,
// so that tests can run in parallel and twice in a row.
func Prefix(tb testing.TB, c *redis.Client, base string) string {
	tb.Helper()
	p := base + RandHex(4) + ":"
	tb.Cleanup(func() {
		if err := DeleteKeys(c, p); err != nil {
			tb.Logf("redistest: deleting the keys %s*: %v", p, err)
		}
	})
	return p
}

// DeleteKeys deletes, through c, the keys that start with prefix (found
// with SCAN), within 5 seconds.
func DeleteKeys(c *redis.Client, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := Keys(ctx, c, prefix)
	if err != nil || len(keys) == 0 {
		return err
	}
	return c.Del(ctx, keys...).Err()
}

// Keys returns, through c, the keys that start with prefix (found with
// SCAN; glob characters in prefix are matched literally).
func Keys(ctx context.Context, c *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := c.Scan(ctx, 0, GlobEscape(prefix)+"*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// GlobEscape escapes the glob characters of s (for SCAN MATCH, KEYS and
// PSUBSCRIBE), so that s matches only itself.
func GlobEscape(s string) string { return globEscaper.Replace(s) }

var globEscaper = strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`, `]`, `\]`)

// RandHex returns 2n random hex digits.
func RandHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}
