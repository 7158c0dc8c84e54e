package mbfx_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

// The tests' domain: the seed use case under other names (the example
// has the seed's own).
type (
	OpenAccount struct{ Username, Email string }
	Account     struct{ Username, Email string }
	GetAccount  struct{ Username string }
)

type AccountOpened struct{ Username, Email string }

func (AccountOpened) MessageName() string { return "accounts.opened" }

// repo is the accounts module's store, a dependency of its handlers.
type repo struct {
	mu       sync.Mutex
	accounts map[string]Account
}

func newRepo() *repo { return &repo{accounts: map[string]Account{}} }

func (r *repo) create(ctx context.Context, cmd OpenAccount) (Account, error) {
	u := Account(cmd)
	r.mu.Lock()
	r.accounts[u.Username] = u
	r.mu.Unlock()
	return u, mb.Emit(ctx, AccountOpened(cmd))
}

func (r *repo) get(ctx context.Context, q GetAccount) (Account, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accounts[q.Username], nil
}

// journal is a list of lines that handlers append to from any goroutine.
type journal struct {
	mu    sync.Mutex
	lines []string
}

func (l *journal) add(s string) {
	l.mu.Lock()
	l.lines = append(l.lines, s)
	l.mu.Unlock()
}

func (l *journal) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

// registry returns a registry of the domain's events.
func registry(t testing.TB) *mb.Registry {
	t.Helper()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/accounts"})
	if err := mb.RegisterMessageSafely[AccountOpened](reg); err != nil {
		t.Fatal(err)
	}
	return reg
}

// wait is how long a test waits for something to happen before it
// fails: a bound on a hung test, not a timing assertion.
const wait = 30 * time.Second

// recv returns the next value of ch, or fails the test after wait.
func recv[T any](t testing.TB, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(wait):
		t.Fatalf("nothing received within %v", wait)
		panic("unreachable")
	}
}

// ctx returns a context for a step of a test, bounded by wait.
func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}
