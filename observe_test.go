package mb_test

import (
	"context"
	"errors"
	"iter"
	"strings"
	"testing"

	"github.com/mb-go/mb"
)

// logObserver writes what it sees to a recorder.
type logObserver struct {
	log *recorder
	key any // a value it puts in the handlers' contexts
}

func (o *logObserver) HandlerStarted(ctx context.Context, h *mb.Handling) (context.Context, func(*mb.HandlingEnd)) {
	nested := ""
	if h.Nested {
		nested = " nested"
	}
	o.log.addf("start %s %s%s try %d", h.Kind, h.Handler, nested, h.Try)
	return context.WithValue(ctx, o.key, h.Handler), func(end *mb.HandlingEnd) {
		errText := ""
		if end.Err != nil {
			errText = " err"
		}
		o.log.addf("end %s %s %v%s", h.Handler, end.Unit, end.Result, errText)
	}
}

func (o *logObserver) EventDispatched(ctx context.Context, e *mb.EventDispatch) func() {
	o.log.addf("dispatch %s to %d", e.Name, e.Handlers)
	return func() { o.log.addf("dispatched %s", e.Name) }
}

type obsKey struct{}

// An observer sees every handling, with the unit's outcome, and every
// event dispatch; the context it returns is the handler's.
func TestObserver(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{Observer: &logObserver{&log, obsKey{}}, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		if v, _ := ctx.Value(obsKey{}).(string); v != "create" {
			t.Errorf("the handler's context lacks the observer's value: %q", v)
		}
		_ = mb.Exec(ctx, bus, DoIt{"fail"})
		noErr(t, mb.Exec(ctx, bus, DoIt{"ok"}))
		return Account(c), mb.Emit(ctx, AccountCreated(c), Ping{1})
	}, mb.WithName("create"))
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if c.What == "fail" {
			return errors.New("inner fails")
		}
		return nil
	}, mb.WithName("do"))
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { return nil }, mb.WithName("welcome"))
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) { return Account(q), nil }, mb.WithName("get"))
	mb.HandleStream(bus, func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) { yield(1, nil) }
	}, mb.WithName("count"))

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"a"})
	noErr(t, err)
	_, err = mb.Query[Account](context.Background(), bus, GetAccount{"q"})
	noErr(t, err)
	for range mb.Stream[int](context.Background(), bus, CountTo{1}) {
	}
	wantSeq(t, log.get(), []string{
		"start command create try 1",
		"start command do nested try 1", "end do rolled back <nil> err",
		"start command do nested try 1", "end do joined {}",
		"end create committed {a}",
		"dispatch mb_test.AccountCreated to 1",
		"start event welcome try 1", "end welcome committed <nil>",
		"dispatched mb_test.AccountCreated",
		"dispatch mb_test.Ping to 0", "dispatched mb_test.Ping",
		"start query get try 1", "end get none {q}",
		"start stream count try 1", "end count none <nil>",
	})
}

// The tries of a unit that ConflictRetry runs again are observed one by
// one; a panicking observer is reported and does not stop dispatch.
func TestObserverTriesAndPanics(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &conflicting{}
	tr.failures.Store(1)
	var sink errSink
	bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: fastConflictRetry, Observer: &logObserver{&log, obsKey{}}, ErrorHandler: sink.handle})
	bus.Observe(panicky{})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		touch(t, ctx)
		return mb.Emit(ctx, Ping{})
	}, mb.WithName("do"))
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), []string{
		"start command do try 1", "end do rolled back <nil> err",
		"start command do try 2", "end do committed {}",
		"dispatch mb_test.Ping to 0", "dispatched mb_test.Ping",
	})
	// Two starts and one end of a dispatch panicked.
	if n := len(sink.get()); n != 3 {
		t.Fatalf("%d panics reported, want 3: %v", n, sink.get())
	}
	for _, err := range sink.get() {
		if !errors.Is(err, mb.ErrPanic) || !strings.Contains(err.Error(), "Observer") {
			t.Errorf("reported %v", err)
		}
	}
}

type panicky struct{}

func (panicky) HandlerStarted(ctx context.Context, h *mb.Handling) (context.Context, func(*mb.HandlingEnd)) {
	panic("observer start")
}

func (panicky) EventDispatched(ctx context.Context, e *mb.EventDispatch) func() {
	return func() { panic("observer done") }
}

// Without observers nothing changes; with one, the pooled path steps aside.
func TestObserverInvalid(t *testing.T) {
	t.Parallel()
	panicErr(t, mustPanic(t, func() { mb.New().Observe(nil) }), mb.ErrInvalidArgument)
	var nilBus *mb.Bus
	panicErr(t, mustPanic(t, func() { nilBus.Observe(&logObserver{}) }), mb.ErrInvalidArgument)
}
