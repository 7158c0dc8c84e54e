package mbtest_test

import (
	"context"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// sendUser runs CreateUser{Username: name} on a new bus with createUser and
// sendWelcomeEmail; with name "" the command fails.
func sendUser(t *testing.T, name string) *mbtest.Recorder {
	t.Helper()
	bus := mb.New()
	rec := mbtest.Record(bus)
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)
	_, _ = mb.Send[User](t.Context(), bus, CreateUser{Username: name, Email: name + "@x"})
	return rec
}

func TestAssertEventsPass(t *testing.T) {
	rec := sendUser(t, "me")
	ft := &fakeT{}
	if !mbtest.AssertEvents(ft, rec, UserCreated{Username: "me", Email: "me@x"}, WelcomeEmailSent{Username: "me"}) {
		t.Error("AssertEvents returned false")
	}
	checkNoMessage(t, ft)

	rec = sendUser(t, "")
	if !mbtest.AssertEvents(ft, rec) || !mbtest.AssertNoEvents(ft, rec) {
		t.Error("AssertEvents/AssertNoEvents with no events returned false")
	}
	checkNoMessage(t, ft)
}

func TestAssertEventsFail(t *testing.T) {
	rec := sendUser(t, "me")
	tests := []struct {
		name string
		want []any
		msg  string
	}{
		{
			name: "missing",
			want: []any{UserCreated{Username: "me", Email: "me@x"}, WelcomeEmailSent{Username: "me"}, WelcomeEmailSent{Username: "you"}},
			msg: `mbtest.AssertEvents: got 2 events, want 3 (-want +got):
      mbtest_test.UserCreated{Username:me Email:me@x}
      mbtest_test.WelcomeEmailSent{Username:me}
    - mbtest_test.WelcomeEmailSent{Username:you}`,
		},
		{
			name: "unexpected",
			want: []any{WelcomeEmailSent{Username: "me"}},
			msg: `mbtest.AssertEvents: got 2 events, want 1 (-want +got):
    + mbtest_test.UserCreated{Username:me Email:me@x}
      mbtest_test.WelcomeEmailSent{Username:me}`,
		},
		{
			name: "different",
			want: []any{UserCreated{Username: "me", Email: "other@x"}, WelcomeEmailSent{Username: "me"}},
			msg: `mbtest.AssertEvents: got 2 events, want 2 (-want +got):
    - mbtest_test.UserCreated{Username:me Email:other@x}
    + mbtest_test.UserCreated{Username:me Email:me@x}
      mbtest_test.WelcomeEmailSent{Username:me}`,
		},
		{
			name: "order",
			want: []any{WelcomeEmailSent{Username: "me"}, UserCreated{Username: "me", Email: "me@x"}},
			msg: `mbtest.AssertEvents: got 2 events, want 2 (-want +got):
    - mbtest_test.WelcomeEmailSent{Username:me}
      mbtest_test.UserCreated{Username:me Email:me@x}
    + mbtest_test.WelcomeEmailSent{Username:me}`,
		},
		{
			name: "a pointer is not the value",
			want: []any{&UserCreated{Username: "me", Email: "me@x"}, WelcomeEmailSent{Username: "me"}},
			msg: `mbtest.AssertEvents: got 2 events, want 2 (-want +got):
    - *mbtest_test.UserCreated&{Username:me Email:me@x}
    + mbtest_test.UserCreated{Username:me Email:me@x}
      mbtest_test.WelcomeEmailSent{Username:me}`,
		},
		{
			name: "none wanted",
			want: nil,
			msg: `mbtest.AssertEvents: got 2 events, want 0 (-want +got):
    + mbtest_test.UserCreated{Username:me Email:me@x}
    + mbtest_test.WelcomeEmailSent{Username:me}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ft := &fakeT{}
			if mbtest.AssertEvents(ft, rec, tt.want...) {
				t.Error("AssertEvents returned true")
			}
			if got := ft.messages(); len(got) != 1 || got[0] != tt.msg {
				t.Errorf("reported:\n%s\nwant:\n%s", got, tt.msg)
			}
		})
	}
}

// Opaque prints the same whatever its value.
type Opaque struct{ n int }

func (Opaque) String() string { return "opaque" }

func TestAssertEventsSamePrintUsesGoSyntax(t *testing.T) {
	bus := mb.New()
	rec := mbtest.Record(bus)
	if err := mb.Publish(t.Context(), bus, Opaque{1}); err != nil {
		t.Fatal(err)
	}
	ft := &fakeT{}
	mbtest.AssertEvents(ft, rec, Opaque{2})
	want := `mbtest.AssertEvents: got 1 event, want 1 (-want +got):
    - mbtest_test.Opaque{n:2}
    + mbtest_test.Opaque{n:1}`
	if got := ft.messages(); len(got) != 1 || got[0] != want {
		t.Errorf("reported:\n%s\nwant:\n%s", got, want)
	}
}

func TestAssertEventEmitted(t *testing.T) {
	rec := sendUser(t, "me")
	t.Run("one", func(t *testing.T) {
		ft := &fakeT{}
		if got := mbtest.AssertEventEmitted[WelcomeEmailSent](ft, rec); got != (WelcomeEmailSent{Username: "me"}) {
			t.Errorf("got %+v", got)
		}
		checkNoMessage(t, ft)
	})
	t.Run("interface", func(t *testing.T) {
		ft := &fakeT{}
		type deduped interface{ DedupKey() string }
		if got := mbtest.AssertEventEmitted[deduped](ft, rec); got != (UserCreated{Username: "me", Email: "me@x"}) {
			t.Errorf("got %+v", got)
		}
		checkNoMessage(t, ft)
	})
	t.Run("none", func(t *testing.T) {
		ft := &fakeT{}
		if got := mbtest.AssertEventEmitted[Unhandled](ft, rec); got != (Unhandled{}) {
			t.Errorf("got %+v, want the zero value", got)
		}
		want := `mbtest.AssertEventEmitted: no mbtest_test.Unhandled event was dispatched; dispatched events:
    mbtest_test.UserCreated{Username:me Email:me@x}
    mbtest_test.WelcomeEmailSent{Username:me}`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("none at all", func(t *testing.T) {
		ft := &fakeT{}
		mbtest.AssertEventEmitted[Unhandled](ft, sendUser(t, ""))
		checkOneMessage(t, ft, "no mbtest_test.Unhandled event was dispatched; dispatched events:\n    (none)")
	})
	t.Run("several", func(t *testing.T) {
		ft := &fakeT{}
		if got := mbtest.AssertEventEmitted[any](ft, rec); got != (UserCreated{Username: "me", Email: "me@x"}) {
			t.Errorf("got %+v, want the first", got)
		}
		want := `mbtest.AssertEventEmitted: 2 interface {} events were dispatched, want exactly one:
    mbtest_test.UserCreated{Username:me Email:me@x}
    mbtest_test.WelcomeEmailSent{Username:me}`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestAssertNoEvents(t *testing.T) {
	ft := &fakeT{}
	if mbtest.AssertNoEvents(ft, sendUser(t, "me")) {
		t.Error("AssertNoEvents returned true")
	}
	want := `mbtest.AssertNoEvents: 2 events were dispatched, want none:
    mbtest_test.UserCreated{Username:me Email:me@x}
    mbtest_test.WelcomeEmailSent{Username:me}`
	if got := ft.messages(); len(got) != 1 || got[0] != want {
		t.Errorf("reported:\n%s\nwant:\n%s", got, want)
	}
}

func TestAssertNoErrors(t *testing.T) {
	t.Run("pass", func(t *testing.T) {
		ft := &fakeT{}
		if !mbtest.AssertNoErrors(ft, sendUser(t, "me")) {
			t.Error("returned false")
		}
		checkNoMessage(t, ft)
	})
	t.Run("command", func(t *testing.T) {
		ft := &fakeT{}
		if mbtest.AssertNoErrors(ft, sendUser(t, "")) {
			t.Error("returned true")
		}
		want := `mbtest.AssertNoErrors: got 1 error, want none:
    command mbtest_test.CreateUser: handler mbtest_test.createUser: username is required`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("event handler and reported", func(t *testing.T) {
		ft := &fakeT{}
		bus, rec := mbtest.NewBus(ft, &mb.Options{MaxCascadeDepth: 1})
		mb.HandleCommand(bus, createUser)
		mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error { return errSMTP }, mb.WithName("email"))
		mb.Subscribe(bus, func(ctx context.Context, e Loop) error { return mb.Emit(ctx, Loop{e.N + 1}) }, mb.WithName("loop"))
		if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
			t.Fatal(err)
		}
		if err := mb.Publish(t.Context(), bus, Loop{}); err != nil {
			t.Fatal(err)
		}
		if mbtest.AssertNoErrors(ft, rec) {
			t.Error("returned true")
		}
		ft.finish() // the errors were read: no second report
		// The email failure is listed once although it was both returned by
		// the handler and reported to the ErrorHandler.
		want := `mbtest.AssertNoErrors: got 2 errors, want none:
    event mbtest_test.UserCreated: handler email: smtp down
    reported to ErrorHandler: mb: event mbtest_test.Loop: mb: event cascade depth limit exceeded: depth 2, limit 1`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("panic", func(t *testing.T) {
		ft := &fakeT{}
		bus, rec := mbtest.NewBus(ft)
		mb.Subscribe(bus, func(ctx context.Context, e Unhandled) error { panic("boom") }, mb.WithName("p"))
		_ = mb.Publish(t.Context(), bus, Unhandled{})
		mbtest.AssertNoErrors(ft, rec)
		ft.finish()
		checkOneMessage(t, ft, "got 1 error, want none:\n    event mbtest_test.Unhandled: handler p: mb: handler panicked: boom")
	})
}

func TestAssertHandled(t *testing.T) {
	rec := sendUser(t, "me")
	for _, name := range []string{"sendWelcomeEmail", "mbtest_test.sendWelcomeEmail", "createUser"} {
		ft := &fakeT{}
		if !mbtest.AssertHandled(ft, rec, name) {
			t.Errorf("AssertHandled(%q) returned false", name)
		}
		checkNoMessage(t, ft)
	}

	t.Run("did not run", func(t *testing.T) {
		ft := &fakeT{}
		if mbtest.AssertHandled(ft, rec, "chargeCard") {
			t.Error("returned true")
		}
		want := `mbtest.AssertHandled: handler chargeCard did not run; handlers that ran:
    command mbtest_test.CreateUser: handler mbtest_test.createUser
    event mbtest_test.UserCreated: handler mbtest_test.sendWelcomeEmail`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("nothing ran", func(t *testing.T) {
		ft := &fakeT{}
		mbtest.AssertHandled(ft, mbtest.Record(mb.New()), "chargeCard")
		checkOneMessage(t, ft, "handler chargeCard did not run; handlers that ran:\n    (none)")
	})
	t.Run("only failed", func(t *testing.T) {
		ft := &fakeT{}
		if mbtest.AssertHandled(ft, sendUser(t, ""), "createUser") {
			t.Error("returned true")
		}
		want := `mbtest.AssertHandled: handler createUser ran 1 time and failed each time:
    command mbtest_test.CreateUser: username is required`
		if got := ft.messages(); len(got) != 1 || got[0] != want {
			t.Errorf("reported:\n%s\nwant:\n%s", got, want)
		}
	})
	t.Run("failed then succeeded", func(t *testing.T) {
		bus := mb.New()
		rec := mbtest.Record(bus)
		mb.HandleCommand(bus, createUser, mb.WithName("users.create"))
		_, _ = mb.Send[User](t.Context(), bus, CreateUser{})
		_, _ = mb.Send[User](t.Context(), bus, CreateUser{Username: "me"})
		ft := &fakeT{}
		if !mbtest.AssertHandled(ft, rec, "users.create") {
			t.Error("returned false")
		}
		checkNoMessage(t, ft)
	})
}

// TestAssertionsUseHelper checks that the assertions mark themselves as
// helpers, so that failures point at the test's line.
func TestAssertionsUseHelper(t *testing.T) {
	rec := sendUser(t, "")
	calls := map[string]func(tb testing.TB){
		"AssertEvents":       func(tb testing.TB) { mbtest.AssertEvents(tb, rec) },
		"AssertEventEmitted": func(tb testing.TB) { mbtest.AssertEventEmitted[UserCreated](tb, rec) },
		"AssertNoEvents":     func(tb testing.TB) { mbtest.AssertNoEvents(tb, rec) },
		"AssertNoErrors":     func(tb testing.TB) { mbtest.AssertNoErrors(tb, rec) },
		"AssertHandled":      func(tb testing.TB) { mbtest.AssertHandled(tb, rec, "x") },
	}
	for name, call := range calls {
		ht := &helperT{}
		call(ht)
		if ht.helpers == 0 {
			t.Errorf("%s does not call t.Helper", name)
		}
	}
}

type helperT struct {
	fakeT
	helpers int
}

func (h *helperT) Helper() { h.helpers++ }
