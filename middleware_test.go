package mb_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// Bus-wide Options.Middleware is outermost, then Bus.Use, then the
// handler's own WithMiddleware; within each list the first is outermost.
func TestMiddlewareOrder(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{
		Middleware:   []mb.Middleware{tag(&log, "opt1"), tag(&log, "opt2")},
		ErrorHandler: noErrors(t),
	})
	// Registered before Use: Use still applies to it.
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		log.add("command")
		return Account(c), mb.Emit(ctx, Note{"n"})
	}, mb.WithMiddleware(tag(&log, "own1"), tag(&log, "own2")))
	bus.Use(tag(&log, "use1"))
	bus.Use(tag(&log, "use2"))
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		log.add("query")
		return Account(q), nil
	}, mb.WithMiddleware(tag(&log, "own1")), mb.WithMiddleware(tag(&log, "own2")))
	mb.HandleStream(bus, func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
		log.add("stream")
		return func(yield func(int, error) bool) { log.add("stream yields"); yield(1, nil) }
	}, mb.WithMiddleware(tag(&log, "own")))
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add("event handler 1")
		return nil
	}, mb.WithMiddleware(tag(&log, "e1")))
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add("event handler 2")
		return nil
	}, mb.WithMiddleware(tag(&log, "e2a"), tag(&log, "e2b")))

	wrap := func(inner ...string) []string {
		out := []string{"opt1>", "opt2>", "use1>", "use2>"}
		out = append(out, inner...)
		return append(out, "<use2", "<use1", "<opt2", "<opt1")
	}
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"c"})
	noErr(t, err)
	want := wrap("own1>", "own2>", "command", "<own2", "<own1")
	want = append(want, wrap("e1>", "event handler 1", "<e1")...)
	want = append(want, wrap("e2a>", "e2b>", "event handler 2", "<e2b", "<e2a")...)
	wantSeq(t, log.get(), want)

	log.reset()
	_, err = mb.Query[Account](context.Background(), bus, GetAccount{"q"})
	noErr(t, err)
	wantSeq(t, log.get(), wrap("own1>", "own2>", "query", "<own2", "<own1"))

	// Middleware wraps the creation of the stream, not its iteration.
	log.reset()
	_, errs := collect(mb.Stream[int](context.Background(), bus, CountTo{}))
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	wantSeq(t, log.get(), append(wrap("own>", "stream", "<own"), "stream yields"))
}

func TestMiddlewareSeesMessage(t *testing.T) {
	t.Parallel()
	type seen struct {
		kind              mb.Kind
		name, handler, id string
		corr, cause       string
		md                mb.Metadata
		bodyType          string
	}
	var mu sync.Mutex
	var msgs []seen
	handlerIDs := map[string]string{}
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t), Middleware: []mb.Middleware{
		func(next mb.Handler) mb.Handler {
			return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
				mu.Lock()
				msgs = append(msgs, seen{msg.Kind, msg.Name, msg.Handler, msg.ID(), msg.CorrelationID(), msg.CausationID(), msg.Metadata(), fmt.Sprintf("%T", msg.Body)})
				mu.Unlock()
				return next.Handle(ctx, msg)
			})
		},
	}})
	record := func(ctx context.Context, key string) {
		md, _ := mb.MetadataFrom(ctx)
		mu.Lock()
		handlerIDs[key] = md.ID
		mu.Unlock()
	}
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		record(ctx, "command")
		return Account(c), mb.Emit(ctx, Renamed{c.Name})
	}, mb.WithName("create"))
	mb.Subscribe(bus, func(ctx context.Context, e Renamed) error { record(ctx, "e1"); return nil }, mb.WithName("first"))
	mb.Subscribe(bus, func(ctx context.Context, e any) error { record(ctx, "e2"); return nil }, mb.WithName("second"))
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) { record(ctx, "query"); return Account{}, nil }, mb.WithName("get"))

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"x"})
	noErr(t, err)
	_, err = mb.Query[Account](context.Background(), bus, GetAccount{})
	noErr(t, err)
	if len(msgs) != 4 {
		t.Fatalf("middleware saw %d messages: %+v", len(msgs), msgs)
	}
	cmd, e1, e2, q := msgs[0], msgs[1], msgs[2], msgs[3]
	check := func(s seen, kind mb.Kind, name, handler, body, id string) {
		t.Helper()
		if s.kind != kind || s.name != name || s.handler != handler || s.bodyType != body || s.id != id {
			t.Errorf("middleware saw %+v, want %v %s %s %s id %s", s, kind, name, handler, body, id)
		}
		wantUUIDv7(t, s.id)
		if s.md.ID != s.id || s.md.Kind != kind || s.md.Name != name || s.md.Handler != handler || s.md.CorrelationID != s.corr || s.md.CausationID != s.cause {
			t.Errorf("Metadata() %+v disagrees with %+v", s.md, s)
		}
	}
	check(cmd, mb.KindCommand, "mb_test.CreateAccount", "create", "mb_test.CreateAccount", handlerIDs["command"])
	check(e1, mb.KindEvent, "accounts.renamed", "first", "mb_test.Renamed", handlerIDs["e1"])
	check(e2, mb.KindEvent, "accounts.renamed", "second", "mb_test.Renamed", handlerIDs["e2"])
	check(q, mb.KindQuery, "mb_test.GetAccount", "get", "mb_test.GetAccount", handlerIDs["query"])
	if e1.id != e2.id || e1.cause != cmd.id || e1.corr != cmd.id || cmd.cause != "" || cmd.corr != cmd.id {
		t.Errorf("ids: command %+v, events %+v %+v", cmd, e1, e2)
	}
}

// Middleware may replace the body with a value of the same type, return its
// own error without calling the handler, or return a wrong result.
func TestMiddlewareControlsHandling(t *testing.T) {
	t.Parallel()
	errDenied := errors.New("denied")
	var ran atomic.Int32
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t), Middleware: []mb.Middleware{
		func(next mb.Handler) mb.Handler {
			return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
				c, ok := msg.Body.(CreateAccount)
				if !ok {
					return next.Handle(ctx, msg)
				}
				switch c.Name {
				case "deny":
					return nil, errDenied
				case "wrong":
					return "not an account", nil
				}
				msg.Body = CreateAccount{strings.ToUpper(c.Name)}
				return next.Handle(ctx, msg)
			})
		},
	}})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		ran.Add(1)
		return Account(c), nil
	})
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"low"})
	noErr(t, err)
	if acc.Name != "LOW" {
		t.Fatalf("handler did not get the replaced body: %+v", acc)
	}
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"deny"})
	wantErr(t, err, errDenied)
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"wrong"})
	wantErr(t, err, mb.ErrResultType)
	if ran.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", ran.Load())
	}
}

func TestRecoverMiddleware(t *testing.T) {
	t.Parallel()
	var observed error
	observer := func(next mb.Handler) mb.Handler {
		return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
			out, err := next.Handle(ctx, msg)
			observed = err
			return out, err
		})
	}
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{observer, mb.Recover()}})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) { panic("recover me") })
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	wantErr(t, err, mb.ErrPanic)
	var pe *mb.PanicError
	if !errors.Is(observed, mb.ErrPanic) || !errors.As(observed, &pe) || pe.Value != "recover me" || len(pe.Stack) == 0 {
		t.Fatalf("outer middleware observed %v", observed)
	}
}

func TestTimeoutMiddleware(t *testing.T) {
	t.Parallel()
	panicIs := func(d time.Duration) {
		v := mustPanic(t, func() { mb.Timeout(d) })
		if !strings.Contains(fmt.Sprint(v), "Timeout") {
			t.Errorf("Timeout(%v) panicked with %v", d, v)
		}
	}
	panicIs(0)
	panicIs(-time.Second)

	t.Run("deadline set", func(t *testing.T) {
		t.Parallel()
		var log recorder
		bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Timeout(time.Hour)}, ErrorHandler: noErrors(t)})
		hasDeadline := func(ctx context.Context) bool {
			d, ok := ctx.Deadline()
			return ok && d.After(time.Now())
		}
		mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
			log.addf("command deadline %v", hasDeadline(ctx))
			// The unit of work is still reachable through the derived context.
			return Account(c), mb.Emit(ctx, Note{})
		})
		mb.Subscribe(bus, func(ctx context.Context, e Note) error {
			log.addf("event deadline %v", hasDeadline(ctx))
			return nil
		})
		mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
			log.addf("query deadline %v", hasDeadline(ctx))
			return Account{}, nil
		})
		mb.HandleStream(bus, func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
			log.addf("stream deadline %v", hasDeadline(ctx))
			return func(yield func(int, error) bool) {}
		})
		_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
		noErr(t, err)
		_, err = mb.Query[Account](context.Background(), bus, GetAccount{})
		noErr(t, err)
		collect(mb.Stream[int](context.Background(), bus, CountTo{}))
		wantSeq(t, log.get(), []string{"command deadline true", "event deadline true", "query deadline true", "stream deadline false"})
	})
	t.Run("handler observes Done", func(t *testing.T) {
		t.Parallel()
		var sink errSink
		bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
		waitDone := func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}
		mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
			if c.What == "slow" {
				return waitDone(ctx)
			}
			return mb.Emit(ctx, Note{})
		}, mb.WithMiddleware(mb.Timeout(time.Millisecond)))
		mb.Subscribe(bus, func(ctx context.Context, e Note) error { return waitDone(ctx) }, mb.WithMiddleware(mb.Timeout(time.Millisecond)))
		wantErr(t, mb.Exec(context.Background(), bus, DoIt{"slow"}), context.DeadlineExceeded)
		noErr(t, mb.Exec(context.Background(), bus, DoIt{"emit"}))
		hes := handlerErrors(t, sink.get())
		if len(hes) != 1 || !errors.Is(hes[0], context.DeadlineExceeded) {
			t.Fatalf("reported %v", sink.get())
		}
	})
}

// ValidatedCmd and ValidatedEvent have a Validate method.
type ValidatedCmd struct{ Name string }

var errNameRequired = errors.New("name required")

func (c ValidatedCmd) Validate() error {
	if c.Name == "" {
		return errNameRequired
	}
	return nil
}

type ValidatedEvent struct{ N int }

func (e ValidatedEvent) Validate() error {
	if e.N < 0 {
		return errors.New("negative")
	}
	return nil
}

func TestValidateMiddleware(t *testing.T) {
	t.Parallel()
	var sink errSink
	var log recorder
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Validate()}, ErrorHandler: sink.handle})
	mb.HandleCommand(bus, func(ctx context.Context, c ValidatedCmd) (Account, error) {
		log.add("command " + c.Name)
		return Account(c), nil
	})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		log.add("unvalidated " + c.Name)
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e ValidatedEvent) error { log.addf("event %d", e.N); return nil })

	_, err := mb.Send[Account](context.Background(), bus, ValidatedCmd{})
	wantErr(t, err, mb.ErrValidation, errNameRequired)
	if !strings.Contains(err.Error(), "ValidatedCmd") {
		t.Errorf("error %q does not name the message", err)
	}
	_, err = mb.Send[Account](context.Background(), bus, ValidatedCmd{"ok"})
	noErr(t, err)
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{""})
	noErr(t, err)
	noErr(t, mb.Publish(context.Background(), bus, ValidatedEvent{-1}, ValidatedEvent{1}))
	wantSeq(t, log.get(), []string{"command ok", "unvalidated ", "event 1"})
	hes := handlerErrors(t, sink.get())
	if len(hes) != 1 || !errors.Is(hes[0], mb.ErrValidation) {
		t.Fatalf("reported %v", sink.get())
	}
}

func TestLoggingMiddleware(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	errFail := errors.New("it failed")
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Logging(newJSONLogger(&buf))}, ErrorHandler: func(context.Context, error) {}})
	var cmdID, evID string
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		md, _ := mb.MetadataFrom(ctx)
		cmdID = md.ID
		if c.Name == "fail" {
			return Account{}, errFail
		}
		return Account(c), mb.Emit(ctx, Note{})
	}, mb.WithName("create"))
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		md, _ := mb.MetadataFrom(ctx)
		evID = md.ID
		return nil
	}, mb.WithName("note-handler"))

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"ok"})
	noErr(t, err)
	okID := cmdID
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"fail"})
	wantErr(t, err, errFail)

	recs := buf.records(t)
	if len(recs) != 3 {
		t.Fatalf("got %d records:\n%s", len(recs), buf.String())
	}
	want := []map[string]any{
		{"level": "DEBUG", "msg": "mb: handled", "kind": "command", "name": "mb_test.CreateAccount", "handler": "create", "id": okID, "correlation_id": okID},
		{"level": "DEBUG", "msg": "mb: handled", "kind": "event", "name": "mb_test.Note", "handler": "note-handler", "id": evID, "correlation_id": okID},
		{"level": "ERROR", "msg": "mb: handler failed", "kind": "command", "name": "mb_test.CreateAccount", "handler": "create", "id": cmdID, "correlation_id": cmdID, "error": "it failed"},
	}
	for i, w := range want {
		for k, v := range w {
			if recs[i][k] != v {
				t.Errorf("record %d: %s = %v, want %v (record %v)", i, k, recs[i][k], v, recs[i])
			}
		}
		if _, ok := recs[i]["duration"].(float64); !ok {
			t.Errorf("record %d has no numeric duration: %v", i, recs[i])
		}
		if _, has := recs[i]["error"]; has != (i == 2) {
			t.Errorf("record %d: error field presence wrong: %v", i, recs[i])
		}
	}

	// At info level, successes are not logged.
	var buf2 syncBuffer
	logger := slog.New(slog.NewJSONHandler(&buf2, &slog.HandlerOptions{Level: slog.LevelInfo}))
	bus2 := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Logging(logger)}})
	mb.HandleCommandNoResult(bus2, func(ctx context.Context, c DoIt) error {
		if c.What == "fail" {
			return errFail
		}
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus2, DoIt{}))
	wantErr(t, mb.Exec(context.Background(), bus2, DoIt{"fail"}), errFail)
	recs = buf2.records(t)
	if len(recs) != 1 || recs[0]["level"] != "ERROR" {
		t.Fatalf("info-level records: %v", recs)
	}
}

// Attempt is emitted by each try of a retried handler.
type Attempt struct{ N int }

func fastRetry(max int) *mb.RetryOptions {
	return &mb.RetryOptions{MaxAttempts: max, Backoff: mb.Backoff{Min: time.Nanosecond, Max: time.Nanosecond}}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	errFlaky := errors.New("flaky")
	var log recorder
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	var attempts atomic.Int32
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		n := int(attempts.Add(1))
		noErr(t, mb.Emit(ctx, Attempt{n}))
		noErr(t, mb.BeforeCommit(ctx, func(context.Context) error { log.addf("before-commit of attempt %d", n); return nil }))
		if n < 3 {
			return Account{}, mb.Retryable(fmt.Errorf("attempt %d: %w", n, errFlaky))
		}
		return Account(c), nil
	}, mb.WithMiddleware(mb.Retry(fastRetry(3))))
	mb.Subscribe(bus, func(ctx context.Context, e Attempt) error { log.addf("event of attempt %d", e.N); return nil })

	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"r"})
	noErr(t, err)
	if acc.Name != "r" || attempts.Load() != 3 {
		t.Fatalf("got %+v after %d attempts", acc, attempts.Load())
	}
	// Only the successful attempt's events and hooks survive.
	wantSeq(t, log.get(), []string{"before-commit of attempt 3", "event of attempt 3"})
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin",
		"tx1 savepoint mb_sp_1", "tx1 rollback to mb_sp_1",
		"tx1 savepoint mb_sp_2", "tx1 rollback to mb_sp_2",
		"tx1 savepoint mb_sp_3", "tx1 release mb_sp_3",
		"tx1 commit",
	})
}

func TestRetryGivesUp(t *testing.T) {
	t.Parallel()
	errFlaky := errors.New("flaky")
	errFatal := errors.New("fatal")
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t), Middleware: []mb.Middleware{mb.Retry(fastRetry(4))}})
	var attempts atomic.Int32
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		touch(t, ctx)
		attempts.Add(1)
		noErr(t, mb.Emit(ctx, Attempt{}))
		if c.What == "fatal" {
			return errFatal
		}
		return mb.Retryable(errFlaky)
	})
	mb.Subscribe(bus, func(ctx context.Context, e Attempt) error {
		t.Error("event of a failed attempt dispatched")
		return nil
	})

	err := mb.Exec(context.Background(), bus, DoIt{"flaky"})
	wantErr(t, err, errFlaky)
	if !mb.IsRetryable(err) {
		t.Error("the last error lost its retryable mark")
	}
	if attempts.Load() != 4 {
		t.Fatalf("%d attempts, want MaxAttempts = 4", attempts.Load())
	}
	calls := tr.Calls()
	if calls[0] != "tx1 begin" || calls[len(calls)-1] != "tx1 rollback" || len(calls) != 2+2*4 {
		t.Fatalf("calls %q", calls)
	}

	attempts.Store(0)
	wantErr(t, mb.Exec(context.Background(), bus, DoIt{"fatal"}), errFatal)
	if attempts.Load() != 1 {
		t.Fatalf("a non-retryable error was tried %d times", attempts.Load())
	}
}

func TestRetryDefaults(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Retry(&mb.RetryOptions{Backoff: mb.Backoff{Min: time.Nanosecond}})}})
	var attempts atomic.Int32
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		attempts.Add(1)
		return mb.Retryable(errors.New("again"))
	})
	if err := mb.Exec(context.Background(), bus, DoIt{}); err == nil || attempts.Load() != 3 {
		t.Fatalf("err %v after %d attempts; the default MaxAttempts is 3", err, attempts.Load())
	}
}

func TestRetryCustomRetryable(t *testing.T) {
	t.Parallel()
	opts := fastRetry(5)
	opts.IsRetryable = func(err error) bool { return errors.Is(err, mb.ErrPanic) }
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Retry(opts)}})
	var attempts atomic.Int32
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		if attempts.Add(1) < 3 {
			panic("transient panic")
		}
		return Account(c), nil
	})
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"p"})
	noErr(t, err)
	if acc.Name != "p" || attempts.Load() != 3 {
		t.Fatalf("got %+v after %d attempts", acc, attempts.Load())
	}
}

func TestRetryStopsWhenContextDone(t *testing.T) {
	t.Parallel()
	errFlaky := errors.New("flaky")
	opts := &mb.RetryOptions{MaxAttempts: 10, Backoff: mb.Backoff{Min: time.Hour}}
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Retry(opts)}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var attempts atomic.Int32
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		attempts.Add(1)
		cancel()
		return mb.Retryable(errFlaky)
	})
	err := mb.Exec(ctx, bus, DoIt{})
	wantErr(t, err, errFlaky, context.Canceled)
	if attempts.Load() != 1 {
		t.Fatalf("%d attempts after the context was cancelled", attempts.Load())
	}
}

func TestRetryEventHandler(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	var attempts atomic.Int32
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		touch(t, ctx)
		n := int(attempts.Add(1))
		noErr(t, mb.Emit(ctx, Attempt{n}))
		if n == 1 {
			return mb.Retryable(errors.New("first try fails"))
		}
		return nil
	}, mb.WithMiddleware(mb.Retry(fastRetry(2))))
	mb.Subscribe(bus, func(ctx context.Context, e Attempt) error { log.addf("attempt %d", e.N); return nil })
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	wantSeq(t, log.get(), []string{"attempt 2"})
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin",
		"tx1 savepoint mb_sp_1", "tx1 rollback to mb_sp_1",
		"tx1 savepoint mb_sp_2", "tx1 release mb_sp_2",
		"tx1 commit",
	})
}

func TestRetryQuery(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{mb.Retry(fastRetry(3))}})
	var attempts atomic.Int32
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		if attempts.Add(1) < 2 {
			return Account{}, mb.Retryable(errors.New("replica lag"))
		}
		return Account(q), nil
	})
	acc, err := mb.Query[Account](context.Background(), bus, GetAccount{"q"})
	noErr(t, err)
	if acc.Name != "q" || attempts.Load() != 2 {
		t.Fatalf("got %+v after %d attempts", acc, attempts.Load())
	}
}

func TestRetryInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		opts mb.RetryOptions
		want string
	}{
		{mb.RetryOptions{MaxAttempts: -1}, "RetryOptions.MaxAttempts"},
		{mb.RetryOptions{Backoff: mb.Backoff{Multiplier: 0.5}}, "RetryOptions.Backoff.Multiplier"},
		{mb.RetryOptions{Backoff: mb.Backoff{Min: -time.Second}}, "RetryOptions.Backoff.Min"},
		{mb.RetryOptions{Backoff: mb.Backoff{Max: -time.Second}}, "RetryOptions.Backoff.Max"},
		{mb.RetryOptions{Backoff: mb.Backoff{Min: time.Second, Max: time.Millisecond}}, "RetryOptions.Backoff.Max"},
	} {
		err := panicErr(t, mustPanic(t, func() { mb.Retry(&c.opts) }), mb.ErrInvalidArgument)
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Retry(%+v) panicked with %v, want it to name %s", c.opts, err, c.want)
		}
		if verr := c.opts.Validate(); verr == nil || verr.Error() != err.Error() {
			t.Errorf("Validate = %v, want the error Retry panics with", verr)
		}
	}
	// Several problems are named together.
	v := fmt.Sprint(mustPanic(t, func() { mb.Retry(&mb.RetryOptions{MaxAttempts: -1, Backoff: mb.Backoff{Multiplier: 0.5}}) }))
	if !strings.Contains(v, "MaxAttempts") || !strings.Contains(v, "Multiplier") {
		t.Errorf("panic %q does not name both fields", v)
	}
	mb.Retry(nil) // nil means the defaults
}

type tempErr struct{ temp bool }

func (e tempErr) Error() string   { return "temp" }
func (e tempErr) Retryable() bool { return e.temp }

func TestRetryable(t *testing.T) {
	t.Parallel()
	base := errors.New("base")
	if mb.Retryable(nil) != nil {
		t.Error("Retryable(nil) is not nil")
	}
	r := mb.Retryable(base)
	if !errors.Is(r, base) || r.Error() != "base" || !mb.IsRetryable(r) {
		t.Errorf("Retryable(base) = %v", r)
	}
	if !mb.IsRetryable(fmt.Errorf("wrapped: %w", r)) {
		t.Error("a wrapped retryable error is not retryable")
	}
	if mb.IsRetryable(base) || mb.IsRetryable(nil) {
		t.Error("a plain error is retryable")
	}
	if !mb.IsRetryable(tempErr{true}) || mb.IsRetryable(tempErr{false}) {
		t.Error("the Retryable() bool method is not honoured")
	}
}

// Middleware that hands the handler a body of another type gets an error
// wrapping ErrInvalidMessage, naming both types, for every kind of
// handler; the handler does not run.
func TestMiddlewareReplacingBodyWithWrongType(t *testing.T) {
	t.Parallel()
	swap := func(next mb.Handler) mb.Handler {
		return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
			msg.Body = Note{"not the message"}
			return next.Handle(ctx, msg)
		})
	}
	var errs []error
	var mu sync.Mutex
	bus := mb.New(&mb.Options{Middleware: []mb.Middleware{swap}, ErrorHandler: func(_ context.Context, err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}})
	ran := false
	mb.HandleCommand(bus, func(context.Context, CreateAccount) (Account, error) { ran = true; return Account{}, nil })
	mb.HandleCommandNoResult(bus, func(context.Context, DoIt) error { ran = true; return nil })
	mb.HandleQuery(bus, func(context.Context, Ping) (int, error) { ran = true; return 0, nil })
	mb.HandleStream(bus, func(context.Context, Keyed) iter.Seq2[string, error] {
		ran = true
		return func(func(string, error) bool) {}
	})
	mb.Subscribe(bus, func(context.Context, AccountCreated) error { ran = true; return nil })

	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, mb.ErrInvalidMessage) || !strings.Contains(err.Error(), "mb_test.Note") {
			t.Errorf("%s: %v, want ErrInvalidMessage naming mb_test.Note", what, err)
		}
	}
	ctx := context.Background()
	_, err := mb.Send[Account](ctx, bus, CreateAccount{"a"})
	check("Send", err)
	check("Exec", mb.Exec(ctx, bus, DoIt{"x"}))
	_, err = mb.Query[int](ctx, bus, Ping{1})
	check("Query", err)
	for _, err := range mb.Stream[string](ctx, bus, Keyed{"k", "v"}) {
		check("Stream", err)
	}
	if err := mb.Publish(ctx, bus, AccountCreated{"a"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(errs) != 1 {
		t.Fatalf("event handler errors %v, want one", errs)
	}
	check("event handler", errs[0])
	if ran {
		t.Error("a handler ran with a body of the wrong type")
	}
}
