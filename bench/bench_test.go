package bench

// Honesty tests: every variant of every benchmark runs a few ops and must
// leave exactly the same state behind (the same users stored, the same event
// handlers run with the same events) and return the same results. Run with
// `go test -race ./...`; TestMain fails the run if a goroutine outlives the
// tests, which also checks that each Watermill router is closed.

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Watermill v1.5.1 stops all of its goroutines once its Router and its
// GoChannel are closed, so no goroutine needs to be ignored here.
// The shared PostgreSQL pool is closed before the leak check.
func TestMain(m *testing.M) {
	code := m.Run()
	closePostgres()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: Errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// opsPerVariant ops per variant: more than one, so that state carried from
// one op to the next (de-duplication, reuse of buffers) would show.
const opsPerVariant = 3

// opTimeout bounds the wait for Watermill's asynchronous handlers.
const opTimeout = 10 * time.Second

type state struct {
	shards [numShards]shard
	events [3]eventCounter
}

func snapshot() state { return state{shards: shards, events: eventCounts} }

func (s state) String() string {
	str := ""
	for i, sh := range s.shards {
		if sh.n != 0 || sh.users != [2]User{} {
			str += fmt.Sprintf("shard %d: n=%d users=%v; ", i, sh.n, sh.users)
		}
	}
	for i, e := range s.events {
		str += fmt.Sprintf("event handler %d: n=%d last=%q; ", i, e.n, e.last)
	}
	return str
}

// wantState is what opsPerVariant ops leave behind: users stored in shard 0
// (or the given shards, n ops each) and the first eventHandlers run.
func wantState(eventHandlersRun int, ops int, shardsUsed ...int) state {
	var s state
	u := User{Username: "me", Email: "me@message.bus"}
	for _, i := range shardsUsed {
		sh := &s.shards[i]
		for range ops {
			sh.users[sh.n&1] = u
			sh.n++
		}
	}
	for i := range eventHandlersRun {
		s.events[i] = eventCounter{n: uint64(ops), last: u.Username}
	}
	return s
}

func checkState(t *testing.T, want state) {
	t.Helper()
	if got := snapshot(); got != want {
		t.Errorf("state after the ops:\n got %v\nwant %v", got, want)
	}
	if n := mbErrors.Load(); n != 0 {
		t.Errorf("mb reported %d handler errors", n)
	}
}

func reset() {
	resetState()
	mbErrors.Store(0)
}

func testSendVariants(t *testing.T, variants []sendVariant, eventHandlersRun int) {
	want := wantState(eventHandlersRun, opsPerVariant, 0)
	wantUser := User{Username: "me", Email: "me@message.bus"}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			reset()
			send := v.new(t)
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			for range opsPerVariant {
				u, err := send(ctx, testCommand(0))
				if err != nil {
					t.Fatal(err)
				}
				if u != wantUser {
					t.Fatalf("result %+v, want %+v", u, wantUser)
				}
			}
			checkState(t, want)
		})
	}
}

func TestSend(t *testing.T) {
	testSendVariants(t, sendVariants, 0)
}

func TestSendMiddleware(t *testing.T) {
	for _, g := range sendMiddlewareGroups {
		t.Run(g.name, func(t *testing.T) {
			testSendVariants(t, g.variants, 0)
		})
	}
}

// TestSendMiddlewareValidates checks that the validating variants really
// validate: an invalid command fails in both and runs no handler.
func TestSendMiddlewareValidates(t *testing.T) {
	for _, g := range sendMiddlewareGroups {
		if g.name != "recover-validate-timeout" {
			continue
		}
		for _, v := range g.variants {
			t.Run(v.name, func(t *testing.T) {
				reset()
				send := v.new(t)
				_, err := send(context.Background(), CreateUser{Email: "x@y"})
				if err == nil {
					t.Fatal("an invalid command was accepted")
				}
				checkState(t, state{})
			})
		}
	}
}

func TestSendEmit(t *testing.T) {
	testSendVariants(t, sendEmitVariants, len(eventHandlers))
}

func TestPublish(t *testing.T) {
	for _, subs := range publishSubscribers {
		t.Run(fmt.Sprintf("subs=%d", subs), func(t *testing.T) {
			want := wantState(subs, opsPerVariant)
			for _, v := range publishVariants(subs) {
				t.Run(v.name, func(t *testing.T) {
					reset()
					publish := v.new(t)
					for range opsPerVariant {
						if err := publish(context.Background(), testEvent()); err != nil {
							t.Fatal(err)
						}
					}
					checkState(t, want)
				})
			}
		})
	}
}

// TestSendParallel runs the parallel variants from two goroutines at once,
// each on its own shard as in the benchmark, so that -race checks the
// benchmark's sharing.
func TestSendParallel(t *testing.T) {
	const goroutines, ops = 2, 50
	want := wantState(0, ops, 1, 2)
	for _, v := range sendParallelVariants {
		t.Run(v.name, func(t *testing.T) {
			reset()
			send := v.new(t)
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					cmd := testCommand(1 + g)
					for range ops {
						if _, err := send(context.Background(), cmd); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			checkState(t, want)
		})
	}
}
