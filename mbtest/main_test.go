package mbtest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/mb-go/mb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The domain of the tests and examples: the seed use case.

type User struct {
	Username string
	Email    string
}

type CreateUser struct {
	Username string
	Email    string
}

type UserCreated struct {
	Username string
	Email    string
}

func (e UserCreated) DedupKey() string { return e.Username }

type WelcomeEmailSent struct {
	Username string
}

var errNoUsername = errors.New("username is required")

func createUser(ctx context.Context, cmd CreateUser) (User, error) {
	if err := useDB(ctx); err != nil {
		return User{}, err
	}
	if cmd.Username == "" {
		return User{}, errNoUsername
	}
	if err := mb.Emit(ctx, UserCreated{Username: cmd.Username, Email: cmd.Email}); err != nil {
		return User{}, err
	}
	return User{Username: cmd.Username, Email: cmd.Email}, nil
}

// useDB uses the transaction of ctx's unit of work, when the bus has a
// Transactor, as a handler that writes to a database does: the
// transaction begins on first use.
func useDB(ctx context.Context) error {
	if _, err := mb.TxFrom(ctx); err != nil && !errors.Is(err, mb.ErrNoTransactor) {
		return err
	}
	return nil
}

func sendWelcomeEmail(ctx context.Context, e UserCreated) error {
	return mb.Emit(ctx, WelcomeEmailSent{Username: e.Username})
}

// fakeT stands in for a *testing.T: it collects what the helpers report
// instead of failing the real test, and optionally prints it to out. Any
// testing.TB method it does not override panics (the embedded TB is nil),
// so a helper calling something unexpected is caught.
type fakeT struct {
	testing.TB
	out io.Writer

	mu       sync.Mutex
	msgs     []string
	failed   bool
	fatal    bool
	cleanups []func()
}

// fatalExit is what fakeT panics with on Fatal; catch runs a function and
// stops at it, like the testing package stops a test at t.FailNow.
type fatalExit struct{}

func (f *fakeT) Helper() {}

func (f *fakeT) report(msg string) {
	f.mu.Lock()
	f.msgs = append(f.msgs, msg)
	f.failed = true
	f.mu.Unlock()
	if f.out != nil {
		fmt.Fprintln(f.out, "FAIL:", msg)
	}
}

func (f *fakeT) Errorf(format string, args ...any) { f.report(fmt.Sprintf(format, args...)) }
func (f *fakeT) Error(args ...any)                 { f.report(fmt.Sprint(args...)) }

func (f *fakeT) Fatalf(format string, args ...any) {
	f.report(fmt.Sprintf(format, args...))
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	panic(fatalExit{})
}

func (f *fakeT) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeT) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// finish runs the registered cleanups, last first, like the end of a test.
func (f *fakeT) finish() {
	f.mu.Lock()
	fns := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

func (f *fakeT) messages() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.msgs...)
}

// catch runs fn and stops it at a Fatal of the fakeT.
func catch(fn func()) {
	defer func() {
		if p := recover(); p != nil {
			if _, ok := p.(fatalExit); !ok {
				panic(p)
			}
		}
	}()
	fn()
}

// checkOneMessage fails t unless f reported exactly one message containing
// every one of parts.
func checkOneMessage(t *testing.T, f *fakeT, parts ...string) {
	t.Helper()
	msgs := f.messages()
	if len(msgs) != 1 {
		t.Fatalf("got %d reported messages, want 1: %q", len(msgs), msgs)
	}
	for _, p := range parts {
		if !strings.Contains(msgs[0], p) {
			t.Errorf("message does not contain %q:\n%s", p, msgs[0])
		}
	}
}

func checkNoMessage(t *testing.T, f *fakeT) {
	t.Helper()
	if msgs := f.messages(); len(msgs) != 0 {
		t.Fatalf("got reported messages, want none:\n%s", strings.Join(msgs, "\n"))
	}
}
