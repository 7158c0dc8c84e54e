package mbhttp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbhttp"
	"github.com/mb-go/mb/mbtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type CreateUser struct{ Name string }
type UserCreated struct{ Name string }

// app is a bus with a recording transactor, a CreateUser handler that
// writes (uses the transaction) and emits, and a log of dispatched events.
type app struct {
	bus *mb.Bus
	tr  *mbtest.Transactor
	mu  sync.Mutex
	log []string
}

func newApp(t *testing.T, tr *mbtest.Transactor) *app {
	a := &app{tr: tr, bus: mb.New(&mb.Options{Transactor: tr})}
	mb.HandleCommandNoResult(a.bus, func(ctx context.Context, c CreateUser) error {
		if _, err := mb.TxFrom(ctx); err != nil {
			return err
		}
		return mb.Emit(ctx, UserCreated(c))
	})
	mb.Subscribe(a.bus, func(ctx context.Context, e UserCreated) error {
		a.mu.Lock()
		a.log = append(a.log, "created "+e.Name)
		a.mu.Unlock()
		return nil
	})
	return a
}

func (a *app) events() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.log...)
}

func serve(h http.Handler, method, path string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, path, nil))
	return w
}

// A request commits when its handler succeeds, and its events are
// dispatched; a 5xx response or an error rolls it back and drops them.
func TestCommitAndRollback(t *testing.T) {
	a := newApp(t, &mbtest.Transactor{})
	h := mbhttp.Middleware(a.bus, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		if err := mb.Exec(r.Context(), a.bus, CreateUser{name}); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if name == "bad" {
			http.Error(w, "no", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-User", name)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created "+name)
	}))
	w := serve(h, "POST", "/users?name=me")
	if w.Code != http.StatusCreated || w.Body.String() != "created me" || w.Header().Get("X-User") != "me" {
		t.Fatalf("response %d %q %v", w.Code, w.Body, w.Header())
	}
	w = serve(h, "POST", "/users?name=bad")
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("response %d", w.Code)
	}
	if got := a.events(); len(got) != 1 || got[0] != "created me" {
		t.Fatalf("events %q", got)
	}
	want := []string{"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 commit",
		"tx2 begin", "tx2 savepoint mb_sp_1", "tx2 release mb_sp_1", "tx2 rollback"}
	if got := a.tr.Calls(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("calls %q", got)
	}
}

// A commit that fails turns the held response into a 500: the client
// never sees a success that did not commit.
func TestFailedCommitIs500(t *testing.T) {
	errCommit := errors.New("could not serialize")
	a := newApp(t, &mbtest.Transactor{CommitErr: errCommit})
	var reported []error
	h := mbhttp.Middleware(a.bus, &mbhttp.Options{ErrorHandler: func(_ context.Context, err error) { reported = append(reported, err) }})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if err := mb.Exec(r.Context(), a.bus, CreateUser{"me"}); err != nil {
				t.Error(err)
			}
			w.Header().Set("X-User", "me")
			_, _ = io.WriteString(w, "created")
		}))
	w := serve(h, "POST", "/users")
	if w.Code != http.StatusInternalServerError || w.Header().Get("X-User") != "" || strings.Contains(w.Body.String(), "created") {
		t.Fatalf("response %d %q %v", w.Code, w.Body, w.Header())
	}
	if len(reported) != 1 || !errors.Is(reported[0], errCommit) {
		t.Fatalf("reported %v", reported)
	}
	if len(a.events()) != 0 {
		t.Fatal("events of a failed commit dispatched")
	}
}

// A panicking handler rolls back and the panic goes on to the server.
func TestPanic(t *testing.T) {
	a := newApp(t, &mbtest.Transactor{})
	h := mbhttp.Middleware(a.bus, nil)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = mb.Exec(r.Context(), a.bus, CreateUser{"me"})
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if p := recover(); p != http.ErrAbortHandler {
				t.Fatalf("recovered %v, want http.ErrAbortHandler", p)
			}
		}()
		serve(h, "GET", "/")
	}()
	if len(a.events()) != 0 {
		t.Fatal("events of a panicking request dispatched")
	}
	if calls := a.tr.Calls(); calls[len(calls)-1] != "tx1 rollback" {
		t.Fatalf("calls %q", calls)
	}
}

// A large response streams once it outgrows MaxBuffer; Flush streams at
// once.
func TestStreaming(t *testing.T) {
	a := newApp(t, &mbtest.Transactor{})
	h := mbhttp.Middleware(a.bus, &mbhttp.Options{MaxBuffer: 4})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "0123456789")
		if rw, ok := w.(http.Flusher); ok {
			rw.Flush()
		}
	}))
	w := serve(h, "GET", "/")
	if w.Code != 200 || w.Body.String() != "0123456789" || !w.Flushed {
		t.Fatalf("response %d %q flushed=%v", w.Code, w.Body, w.Flushed)
	}
}

func TestInvalid(t *testing.T) {
	for _, f := range []func(){
		func() { mbhttp.Middleware(nil, nil) },
		func() { mbhttp.Middleware(mb.New(), &mbhttp.Options{MaxBuffer: -1}) },
	} {
		func() {
			defer func() {
				if err, _ := recover().(error); !errors.Is(err, mb.ErrInvalidArgument) {
					t.Errorf("panicked with %v, want an error wrapping mb.ErrInvalidArgument", err)
				}
			}()
			f()
		}()
	}
}
