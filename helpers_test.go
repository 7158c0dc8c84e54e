package mb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
)

// Message types shared by the tests. The examples declare their own.

// CreateAccount is a command whose handler returns an Account.
type CreateAccount struct{ Name string }

// Account is the result of CreateAccount.
type Account struct{ Name string }

// AccountCreated is an event without a DedupKey.
type AccountCreated struct{ Name string }

func (e AccountCreated) Label() string { return "account " + e.Name }

// Note is a general purpose event without a DedupKey.
type Note struct{ Text string }

func (e Note) Label() string { return "note " + e.Text }

// Keyed and KeyedToo are events with a DedupKey.
type Keyed struct{ Key, Val string }

func (e Keyed) DedupKey() string { return e.Key }

type KeyedToo struct{ Key, Val string }

func (e KeyedToo) DedupKey() string { return e.Key }

// Ping is an event used for cascades.
type Ping struct{ N int }

// Renamed has a stable wire name.
type Renamed struct{ To string }

func (Renamed) MessageName() string { return "accounts.renamed" }

// Labeled is implemented by AccountCreated and Note, not by Ping.
type Labeled interface{ Label() string }

// DoIt is a command without a result.
type DoIt struct{ What string }

// GetAccount is a query.
type GetAccount struct{ Name string }

// CountTo is a streaming query yielding 1..N.
type CountTo struct{ N int }

// recorder is a goroutine-safe ordered log.
type recorder struct {
	mu    sync.Mutex
	items []string
}

func (r *recorder) add(s string) {
	r.mu.Lock()
	r.items = append(r.items, s)
	r.mu.Unlock()
}

func (r *recorder) addf(format string, args ...any) { r.add(fmt.Sprintf(format, args...)) }

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

// errSink collects the errors given to Options.ErrorHandler.
type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) handle(_ context.Context, err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *errSink) get() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.errs)
}

// noErrors returns an ErrorHandler that fails the test on any report.
func noErrors(t *testing.T) func(context.Context, error) {
	return func(_ context.Context, err error) {
		t.Errorf("unexpected error reported to ErrorHandler: %v", err)
	}
}

func wantSeq(t *testing.T, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("got\n\t%s\nwant\n\t%s", strings.Join(quoteAll(got), "\n\t"), strings.Join(quoteAll(want), "\n\t"))
	}
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// mustPanic runs fn and returns what it panicked with; it fails the test if
// fn returns normally.
func mustPanic(t *testing.T, fn func()) (v any) {
	t.Helper()
	defer func() { v = recover() }()
	fn()
	t.Fatal("did not panic")
	return nil
}

// panicErr asserts that v, a recovered panic value, is an error wrapping
// target and returns it.
func panicErr(t *testing.T, v any, target error) error {
	t.Helper()
	err, ok := v.(error)
	if !ok {
		t.Fatalf("panicked with %T %v, want an error", v, v)
	}
	if !errors.Is(err, target) {
		t.Fatalf("panicked with %v, want an error wrapping %v", err, target)
	}
	return err
}

func wantErr(t *testing.T, err error, targets ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("got nil error, want one wrapping %v", targets)
	}
	for _, target := range targets {
		if !errors.Is(err, target) {
			t.Fatalf("got error %q, want one wrapping %q", err, target)
		}
	}
}

func noErr(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func wantUUIDv7(t *testing.T, id string) {
	t.Helper()
	if !uuidV7.MatchString(id) {
		t.Fatalf("id %q is not a canonical lowercase UUIDv7", id)
	}
}

// handlerErrors returns the *mb.HandlerError values among errs, failing the
// test for any other error.
func handlerErrors(t *testing.T, errs []error) []*mb.HandlerError {
	t.Helper()
	var out []*mb.HandlerError
	for _, err := range errs {
		var he *mb.HandlerError
		if !errors.As(err, &he) {
			t.Fatalf("reported error %v (%T) is not a *mb.HandlerError", err, err)
		}
		out = append(out, he)
	}
	return out
}

// createAccount is a plain top-level command handler that emits
// AccountCreated.
func createAccount(ctx context.Context, cmd CreateAccount) (Account, error) {
	if err := mb.Emit(ctx, AccountCreated(cmd)); err != nil {
		return Account{}, err
	}
	return Account(cmd), nil
}

// syncBuffer is a goroutine-safe bytes.Buffer for slog handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// records decodes the JSON lines written so far.
func (b *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(b.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("bad log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func newJSONLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.items = nil
	r.mu.Unlock()
}

// tag returns middleware that logs "name>" before and "<name" after the
// handler.
func tag(log *recorder, name string) mb.Middleware {
	return func(next mb.Handler) mb.Handler {
		return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
			log.add(name + ">")
			out, err := next.Handle(ctx, msg)
			log.add("<" + name)
			return out, err
		})
	}
}

// touch uses the transaction of ctx's unit of work, as a handler that
// writes to the database does; the transaction begins on first use.
func touch(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := mb.TxFrom(ctx); err != nil {
		t.Errorf("TxFrom: %v", err)
	}
}
