package mbtest_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

func newUserBus(t *testing.T) (*mb.Bus, *mbtest.Recorder) {
	t.Helper()
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)
	return bus, rec
}

func TestRecorderRecordsCommandAndEvents(t *testing.T) {
	bus, rec := newUserBus(t)
	user, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me", Email: "me@message.bus"})
	if err != nil {
		t.Fatal(err)
	}

	cmds := rec.Commands()
	if len(cmds) != 1 {
		t.Fatalf("got %d commands, want 1: %+v", len(cmds), cmds)
	}
	c := cmds[0]
	if c.Kind != mb.KindCommand || c.Name != "mbtest_test.CreateUser" || c.Handler != "mbtest_test.createUser" {
		t.Errorf("command metadata = %+v", c.Metadata)
	}
	if c.Body != (CreateUser{Username: "me", Email: "me@message.bus"}) || c.Result != user || c.Err != nil || !c.Committed {
		t.Errorf("command = %+v, want body, result %+v, no error, committed", c, user)
	}
	if c.ID == "" || c.CorrelationID != c.ID || c.CausationID != "" {
		t.Errorf("command ids: id %q correlation %q causation %q; want an id that is its own correlation and no causation", c.ID, c.CorrelationID, c.CausationID)
	}

	evs := rec.Events()
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2: %+v", len(evs), evs)
	}
	created, sent := evs[0], evs[1]
	if created.Body != (UserCreated{Username: "me", Email: "me@message.bus"}) || sent.Body != (WelcomeEmailSent{Username: "me"}) {
		t.Errorf("event bodies = %+v, %+v", created.Body, sent.Body)
	}
	for _, e := range evs {
		if e.Kind != mb.KindEvent || e.Handler != "" || e.ID == "" || e.CorrelationID != c.ID {
			t.Errorf("event metadata = %+v; want kind event, no handler, an id, correlation %q", e.Metadata, c.ID)
		}
	}
	if created.Name != "mbtest_test.UserCreated" || created.CausationID != c.ID {
		t.Errorf("UserCreated: name %q causation %q, want mbtest_test.UserCreated caused by the command %q", created.Name, created.CausationID, c.ID)
	}
	if sent.CausationID != created.ID || sent.ID == created.ID {
		t.Errorf("WelcomeEmailSent: id %q causation %q, want its own id caused by UserCreated %q", sent.ID, sent.CausationID, created.ID)
	}

	handled := rec.Handled()
	var names []string
	for _, h := range handled {
		names = append(names, fmt.Sprintf("%s %s %s", h.Kind, h.Handler, h.ID))
		if h.Err != nil || !h.Committed {
			t.Errorf("handling %+v: want success, committed", h)
		}
	}
	want := []string{
		"command mbtest_test.createUser " + c.ID,
		"event mbtest_test.sendWelcomeEmail " + created.ID,
	}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("handled = %q, want %q (the recorder's own subscription must not appear)", names, want)
	}
	if h := handled[1]; h.Body != created.Body || h.CausationID != c.ID {
		t.Errorf("event handling = %+v, want the UserCreated body and metadata", h)
	}

	if got := mbtest.EventsOf[WelcomeEmailSent](rec); !reflect.DeepEqual(got, []WelcomeEmailSent{{Username: "me"}}) {
		t.Errorf("EventsOf[WelcomeEmailSent] = %+v", got)
	}
	if got := mbtest.EventsOf[any](rec); len(got) != 2 {
		t.Errorf("EventsOf[any] = %+v, want both events", got)
	}
	if got := mbtest.EventsOf[User](rec); got != nil {
		t.Errorf("EventsOf[User] = %+v, want nil", got)
	}
	if got := mbtest.CommandsOf[CreateUser](rec); !reflect.DeepEqual(got, []CreateUser{{Username: "me", Email: "me@message.bus"}}) {
		t.Errorf("CommandsOf[CreateUser] = %+v", got)
	}
	if got := rec.Queries(); len(got) != 0 {
		t.Errorf("Queries = %+v, want none", got)
	}
}

func TestRecordBeforeAndAfterRegistration(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprintf("early=%v", early), func(t *testing.T) {
			bus := mb.New()
			var rec *mbtest.Recorder
			if early {
				rec = mbtest.Record(bus)
			}
			mb.HandleCommand(bus, createUser)
			mb.Subscribe(bus, sendWelcomeEmail)
			if !early {
				rec = mbtest.Record(bus)
			}
			if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
				t.Fatal(err)
			}
			mbtest.AssertEvents(t, rec, UserCreated{Username: "me"}, WelcomeEmailSent{Username: "me"})
			if n := len(rec.Handled()); n != 2 {
				t.Errorf("got %d handlings, want 2", n)
			}
		})
	}
}

func TestRecorderFailingCommand(t *testing.T) {
	bus, rec := newUserBus(t)
	_, err := mb.Send[User](t.Context(), bus, CreateUser{})
	if !errors.Is(err, errNoUsername) {
		t.Fatalf("Send error = %v, want %v", err, errNoUsername)
	}
	cmds := rec.Commands()
	if len(cmds) != 1 || !errors.Is(cmds[0].Err, errNoUsername) || cmds[0].Result != nil || cmds[0].Committed {
		t.Fatalf("commands = %+v, want one failed, uncommitted, without result", cmds)
	}
	mbtest.AssertNoEvents(t, rec)
	if errs := rec.Errors(); len(errs) != 0 {
		t.Errorf("errors reported to ErrorHandler: %v; a command's error goes to its caller", errs)
	}
}

type Outer struct{ FailInner, FailOuter bool }
type Inner struct{ Fail bool }
type OuterDone struct{}
type InnerDone struct{}

var errInner = errors.New("inner failed")
var errOuter = errors.New("outer failed")

func registerNested(bus *mb.Bus) {
	mb.HandleCommand(bus, func(ctx context.Context, c Outer) (string, error) {
		if err := useDB(ctx); err != nil {
			return "", err
		}
		if err := mb.Emit(ctx, OuterDone{}); err != nil {
			return "", err
		}
		_, err := mb.Send[string](ctx, bus, Inner{Fail: c.FailInner})
		if c.FailOuter {
			return "", errOuter
		}
		if err != nil {
			return "inner failed", nil // the outer handler decides
		}
		return "ok", nil
	}, mb.WithName("outer"))
	mb.HandleCommand(bus, func(ctx context.Context, c Inner) (string, error) {
		if err := useDB(ctx); err != nil {
			return "", err
		}
		if err := mb.Emit(ctx, InnerDone{}); err != nil {
			return "", err
		}
		if c.Fail {
			return "", errInner
		}
		return "inner ok", nil
	}, mb.WithName("inner"))
}

func TestRecorderNestedCommitted(t *testing.T) {
	tests := []struct {
		name                    string
		cmd                     Outer
		outerDone, innerDone    bool
		outerErr, innerErr      error
		outerCommit, innerCommi bool
		events                  []any
	}{
		{"both succeed", Outer{}, true, true, nil, nil, true, true, []any{OuterDone{}, InnerDone{}}},
		{"inner fails", Outer{FailInner: true}, true, false, nil, errInner, true, false, []any{OuterDone{}}},
		{"outer fails", Outer{FailOuter: true}, false, false, errOuter, nil, false, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus, rec := mbtest.NewBus(t)
			registerNested(bus)
			_, err := mb.Send[string](t.Context(), bus, tt.cmd)
			if !errors.Is(err, tt.outerErr) || (err == nil) != (tt.outerErr == nil) {
				t.Fatalf("Send error = %v, want %v", err, tt.outerErr)
			}
			cmds := rec.Commands()
			if len(cmds) != 2 || cmds[0].Handler != "outer" || cmds[1].Handler != "inner" {
				t.Fatalf("commands = %+v, want outer then inner", cmds)
			}
			outer, inner := cmds[0], cmds[1]
			if !errors.Is(outer.Err, tt.outerErr) || !errors.Is(inner.Err, tt.innerErr) ||
				(outer.Err == nil) != (tt.outerErr == nil) || (inner.Err == nil) != (tt.innerErr == nil) {
				t.Errorf("errors: outer %v, inner %v; want %v, %v", outer.Err, inner.Err, tt.outerErr, tt.innerErr)
			}
			if outer.Committed != tt.outerCommit || inner.Committed != tt.innerCommi {
				t.Errorf("committed: outer %v, inner %v; want %v, %v", outer.Committed, inner.Committed, tt.outerCommit, tt.innerCommi)
			}
			if inner.CausationID != outer.ID || inner.CorrelationID != outer.ID {
				t.Errorf("inner command caused by %q in flow %q, want the outer command %q", inner.CausationID, inner.CorrelationID, outer.ID)
			}
			mbtest.AssertEvents(t, rec, tt.events...)
		})
	}
}

func TestRecorderPanic(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		panicHere()
		return User{}, nil
	})
	_, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"})
	var pe *mb.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" {
		t.Fatalf("Send error = %v, want a *mb.PanicError of boom", err)
	}
	// The recorder re-panics: the bus still sees the original panic site.
	if !strings.Contains(string(pe.Stack), "panicHere") {
		t.Errorf("the stack of the panic the bus reports lost the panicking function:\n%s", pe.Stack)
	}
	cmds := rec.Commands()
	if len(cmds) != 1 || !errors.Is(cmds[0].Err, mb.ErrPanic) || cmds[0].Committed {
		t.Fatalf("commands = %+v, want one that panicked", cmds)
	}
	if !errors.As(cmds[0].Err, &pe) || pe.Value != "boom" || !strings.Contains(string(pe.Stack), "panicHere") {
		t.Errorf("recorded error = %#v, want a *mb.PanicError of boom with the stack", cmds[0].Err)
	}
}

//go:noinline
func panicHere() { panic("boom") }

func TestRecorderGoexitPassesThrough(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		runtime.Goexit() // what t.FailNow does in a handler
		return User{}, nil
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = mb.Send[User](context.Background(), bus, CreateUser{Username: "me"})
		t.Error("Send returned after runtime.Goexit in the handler")
	}()
	<-done
	if cmds := rec.Commands(); len(cmds) != 1 || cmds[0].Err != nil {
		t.Errorf("commands = %+v, want one without result or error", cmds)
	}
}

type FindUser struct{ Username string }
type ListUsers struct{}

func TestRecorderQueries(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	mb.HandleQuery(bus, func(ctx context.Context, q FindUser) (User, error) {
		return User{Username: q.Username}, nil
	}, mb.WithName("findUser"))
	mb.HandleStream(bus, func(ctx context.Context, q ListUsers) iter.Seq2[User, error] {
		return func(yield func(User, error) bool) {
			yield(User{Username: "a"}, nil)
		}
	}, mb.WithName("listUsers"))
	if _, err := mb.Query[User](t.Context(), bus, FindUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	for _, err := range mb.Stream[User](t.Context(), bus, ListUsers{}) {
		if err != nil {
			t.Fatal(err)
		}
	}
	qs := rec.Queries()
	if len(qs) != 2 {
		t.Fatalf("queries = %+v, want 2", qs)
	}
	if q := qs[0]; q.Kind != mb.KindQuery || q.Handler != "findUser" || q.Body != (FindUser{Username: "me"}) || q.Result != (User{Username: "me"}) || q.Committed {
		t.Errorf("query = %+v", q)
	}
	if q := qs[1]; q.Kind != mb.KindStream || q.Handler != "listUsers" || q.Body != (ListUsers{}) || q.Result != nil || q.Err != nil {
		t.Errorf("stream query = %+v", q)
	}
	if len(rec.Commands()) != 0 || len(rec.Handled()) != 2 {
		t.Errorf("commands = %+v, handled = %+v", rec.Commands(), rec.Handled())
	}
}

type Ping struct{}

func TestRecorderExecNoResult(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommandNoResult(bus, func(ctx context.Context, p Ping) error { return nil })
	if err := mb.Exec(t.Context(), bus, Ping{}); err != nil {
		t.Fatal(err)
	}
	if cmds := rec.Commands(); len(cmds) != 1 || cmds[0].Result != (struct{}{}) || !cmds[0].Committed {
		t.Errorf("commands = %+v, want one with result struct{}{}", cmds)
	}
}

var errSMTP = errors.New("smtp down")

func TestRecorderEventHandlerError(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error { return errSMTP }, mb.WithName("email"))
	mb.Subscribe(bus, sendWelcomeEmail) // still runs
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatalf("Send error = %v; an event handler's error must not fail Send", err)
	}
	mbtest.AssertEvents(t, rec, UserCreated{Username: "me"}, WelcomeEmailSent{Username: "me"})
	errs := rec.Errors()
	var he *mb.HandlerError
	if len(errs) != 1 || !errors.As(errs[0], &he) || he.Handler != "email" || !errors.Is(errs[0], errSMTP) {
		t.Fatalf("reported errors = %v, want the email handler's", errs)
	}
	var email mbtest.Handling
	for _, h := range rec.Handled() {
		if h.Handler == "email" {
			email = h
		}
	}
	if !errors.Is(email.Err, errSMTP) || email.Committed || email.ID != he.ID {
		t.Errorf("email handling = %+v, want failed, uncommitted, for message %s", email, he.ID)
	}
}

type Loop struct{ N int }

func TestRecorderCapturesCascadeLimit(t *testing.T) {
	bus, rec := mbtest.NewBus(t, &mb.Options{MaxCascadeDepth: 2})
	mb.Subscribe(bus, func(ctx context.Context, e Loop) error {
		return mb.Emit(ctx, Loop{N: e.N + 1})
	})
	if err := mb.Publish(t.Context(), bus, Loop{}); err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, rec, Loop{0}, Loop{1}, Loop{2})
	errs := rec.Errors()
	if len(errs) != 1 || !errors.Is(errs[0], mb.ErrCascadeLimit) {
		t.Errorf("reported errors = %v, want one ErrCascadeLimit", errs)
	}
}

type Unhandled struct{ N int }

func TestRecorderPublishAndDedup(t *testing.T) {
	bus, rec := mbtest.NewBus(t)
	ctx := mb.WithCorrelationID(t.Context(), "request-1")
	// No handler for Unhandled: the recorder still sees it dispatched.
	if err := mb.Publish(ctx, bus, Unhandled{1}, UserCreated{Username: "a"}); err != nil {
		t.Fatal(err)
	}
	// Emitted twice with one DedupKey: dispatched once.
	mb.HandleCommandNoResult(bus, func(ctx context.Context, p Ping) error {
		return mb.Emit(ctx, UserCreated{Username: "b"}, UserCreated{Username: "b", Email: "again"})
	})
	if err := mb.Exec(ctx, bus, Ping{}); err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, rec, Unhandled{1}, UserCreated{Username: "a"}, UserCreated{Username: "b"})
	for _, e := range rec.Events() {
		if e.CorrelationID != "request-1" {
			t.Errorf("event %+v: correlation %q, want request-1", e.Body, e.CorrelationID)
		}
	}
}

func TestRecorderReset(t *testing.T) {
	bus, rec := newUserBus(t)
	mb.Subscribe(bus, func(ctx context.Context, e WelcomeEmailSent) error { return errSMTP })
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	rec.Reset() // drops the reported error too: NewBus's check passes
	if len(rec.Handled()) != 0 || len(rec.Events()) != 0 || len(rec.Commands()) != 0 || len(rec.Errors()) != 0 {
		t.Fatalf("after Reset: handled %v, events %v, errors %v", rec.Handled(), rec.Events(), rec.Errors())
	}
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "you"}); err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, rec, UserCreated{Username: "you"}, WelcomeEmailSent{Username: "you"})
	if errs := rec.Errors(); len(errs) != 1 {
		t.Errorf("errors = %v, want the one of the second Send", errs)
	}
}

func TestRecorderAttachTwiceAndTwoRecorders(t *testing.T) {
	bus := mb.New()
	mb.HandleCommand(bus, createUser)
	a := mbtest.Record(bus)
	a.Attach(bus) // no effect
	b := mbtest.Record(bus)
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	for name, rec := range map[string]*mbtest.Recorder{"a": a, "b": b} {
		if h := rec.Handled(); len(h) != 1 || h[0].Handler != "mbtest_test.createUser" {
			t.Errorf("recorder %s handled = %+v, want createUser once", name, h)
		}
		if e := rec.Events(); len(e) != 1 {
			t.Errorf("recorder %s events = %+v, want one", name, e)
		}
	}
}

func TestRecorderOnTwoBuses(t *testing.T) {
	var rec mbtest.Recorder // the zero value is ready to use
	bus1 := mb.New(&mb.Options{ErrorHandler: rec.ErrorHandler})
	bus2 := mb.New()
	rec.Attach(bus1)
	rec.Attach(bus2)
	mb.Subscribe(bus1, func(ctx context.Context, e Unhandled) error { return errSMTP })
	if err := mb.Publish(t.Context(), bus1, Unhandled{1}); err != nil {
		t.Fatal(err)
	}
	if err := mb.Publish(t.Context(), bus2, Unhandled{2}); err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, &rec, Unhandled{1}, Unhandled{2})
	if errs := rec.Errors(); len(errs) != 1 || !errors.Is(errs[0], errSMTP) {
		t.Errorf("errors = %v", errs)
	}
}

func TestRecordNilBusPanics(t *testing.T) {
	defer func() {
		if p := recover(); p == nil || !strings.Contains(fmt.Sprint(p), "nil *mb.Bus") {
			t.Errorf("recovered %v, want a panic naming the nil bus", p)
		}
	}()
	mbtest.Record(nil)
}

func TestRecorderWithBusWideRetry(t *testing.T) {
	bus, rec := mbtest.NewBus(t, &mb.Options{Middleware: []mb.Middleware{
		mb.Retry(&mb.RetryOptions{Backoff: mb.Backoff{Min: time.Millisecond}}),
	}})
	tries := 0
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		tries++
		if err := mb.Emit(ctx, UserCreated{Username: fmt.Sprint(tries)}); err != nil {
			return User{}, err
		}
		if tries == 1 {
			return User{}, mb.Retryable(errors.New("flaky"))
		}
		return User{Username: c.Username}, nil
	})
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	// One handling, however many tries its middleware makes, with the
	// last try's outcome.
	cmds := rec.Commands()
	if len(cmds) != 1 || cmds[0].Err != nil || !cmds[0].Committed || tries != 2 {
		t.Errorf("commands = %+v after %d tries, want one committed handling", cmds, tries)
	}
	mbtest.AssertEvents(t, rec, UserCreated{Username: "2"})
}

func TestNewBusUnreadErrors(t *testing.T) {
	run := func(t *testing.T, read func(ft *fakeT, rec *mbtest.Recorder)) *fakeT {
		t.Helper()
		ft := &fakeT{}
		bus, rec := mbtest.NewBus(ft)
		mb.Subscribe(bus, func(ctx context.Context, e Unhandled) error { return errSMTP }, mb.WithName("fails"))
		if err := mb.Publish(t.Context(), bus, Unhandled{1}); err != nil {
			t.Fatal(err)
		}
		read(ft, rec)
		ft.finish()
		return ft
	}
	t.Run("unread", func(t *testing.T) {
		ft := run(t, func(*fakeT, *mbtest.Recorder) {})
		checkOneMessage(t, ft, "mbtest.NewBus: 1 unexpected error reported to the bus's ErrorHandler",
			"rec.Errors()", "handler fails: smtp down")
	})
	t.Run("read", func(t *testing.T) {
		ft := run(t, func(_ *fakeT, rec *mbtest.Recorder) { rec.Errors() })
		checkNoMessage(t, ft)
	})
	t.Run("reset", func(t *testing.T) {
		ft := run(t, func(_ *fakeT, rec *mbtest.Recorder) { rec.Reset() })
		checkNoMessage(t, ft)
	})
	t.Run("AssertNoErrors", func(t *testing.T) {
		// AssertNoErrors reports the error; the check at the end does not
		// report it again.
		ft := run(t, func(ft *fakeT, rec *mbtest.Recorder) { mbtest.AssertNoErrors(ft, rec) })
		checkOneMessage(t, ft, "mbtest.AssertNoErrors", "smtp down")
	})
	t.Run("read then more", func(t *testing.T) {
		ft := &fakeT{}
		bus, rec := mbtest.NewBus(ft)
		mb.Subscribe(bus, func(ctx context.Context, e Unhandled) error { return fmt.Errorf("fail %d", e.N) })
		_ = mb.Publish(t.Context(), bus, Unhandled{1})
		rec.Errors()
		_ = mb.Publish(t.Context(), bus, Unhandled{2})
		ft.finish()
		checkOneMessage(t, ft, "1 unexpected error", "fail 2")
		if strings.Contains(ft.messages()[0], "fail 1") {
			t.Errorf("the error read before is reported: %s", ft.messages()[0])
		}
	})
}

func TestNewBusForwardsToErrorHandler(t *testing.T) {
	var mu sync.Mutex
	var got []error
	bus, rec := mbtest.NewBus(t, &mb.Options{ErrorHandler: func(ctx context.Context, err error) {
		mu.Lock()
		got = append(got, err)
		mu.Unlock()
	}})
	mb.Subscribe(bus, func(ctx context.Context, e Unhandled) error { return errSMTP })
	if err := mb.Publish(t.Context(), bus, Unhandled{1}); err != nil {
		t.Fatal(err)
	}
	if errs := rec.Errors(); len(errs) != 1 || !errors.Is(errs[0], errSMTP) {
		t.Errorf("recorded errors = %v", errs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || !errors.Is(got[0], errSMTP) {
		t.Errorf("the ErrorHandler given in the options got %v", got)
	}
}

func TestNewBusBadOptions(t *testing.T) {
	t.Run("two", func(t *testing.T) {
		ft := &fakeT{}
		catch(func() { mbtest.NewBus(ft, &mb.Options{}, &mb.Options{}) })
		checkOneMessage(t, ft, "mbtest.NewBus: got 2 *mb.Options, want at most one")
		if !ft.fatal {
			t.Error("NewBus did not stop the test")
		}
	})
	t.Run("invalid", func(t *testing.T) {
		ft := &fakeT{}
		catch(func() { mbtest.NewBus(ft, &mb.Options{MaxCascadeDepth: -1, EventConcurrency: -1}) })
		checkOneMessage(t, ft, "mbtest.NewBus: ", "MaxCascadeDepth is -1", "EventConcurrency is -1")
		if !ft.fatal {
			t.Error("NewBus did not stop the test")
		}
	})
}

// TestRecorderConcurrent runs many Sends at once, with concurrent event
// handlers, while reading the recorder; run with -race.
func TestRecorderConcurrent(t *testing.T) {
	bus, rec := mbtest.NewBus(t, &mb.Options{EventConcurrency: 4})
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error { return nil })
	mb.Subscribe(bus, func(ctx context.Context, e any) error { return nil })
	const n = 50
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				_ = rec.Handled()
				_ = rec.Events()
				_ = mbtest.EventsOf[UserCreated](rec)
			}
		}
	})
	for i := range n {
		wg.Go(func() {
			if _, err := mb.Send[User](context.Background(), bus, CreateUser{Username: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if got := len(mbtest.EventsOf[UserCreated](rec)); got != n {
		t.Errorf("got %d UserCreated, want %d", got, n)
	}
	if got := len(mbtest.EventsOf[WelcomeEmailSent](rec)); got != n {
		t.Errorf("got %d WelcomeEmailSent, want %d", got, n)
	}
	// Per command: createUser, 3 handlers of UserCreated, 1 of WelcomeEmailSent.
	if got := len(rec.Handled()); got != 5*n {
		t.Errorf("got %d handlings, want %d", got, 5*n)
	}
	mbtest.AssertNoErrors(t, rec)
}

func TestRecorderWithTransactor(t *testing.T) {
	tr := &mbtest.Transactor{}
	bus, rec := mbtest.NewBus(t, &mb.Options{Transactor: tr})
	mb.HandleCommand(bus, createUser)
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	// The recorder observes; it adds no handler, so no unit of work and
	// no transaction of its own.
	want := []string{"tx1 begin", "tx1 commit"}
	if got := tr.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
	mbtest.AssertEvents(t, rec, UserCreated{Username: "me"})
}
