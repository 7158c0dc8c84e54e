package mb_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// The seed use case: the handler's result comes back from Send and the
// subscribers run in registration order once the unit committed.
func TestSendReturnsResultAndDispatches(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		log.add("welcome " + e.Name)
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		log.add("sync " + e.Name)
		return nil
	})

	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"me"})
	noErr(t, err)
	if acc != (Account{"me"}) {
		t.Fatalf("Send returned %+v, want {me}", acc)
	}
	wantSeq(t, log.get(), []string{"welcome me", "sync me"})
}

func TestSendUnregisteredCommand(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"x"})
	wantErr(t, err, mb.ErrNoHandler)
	if !strings.Contains(err.Error(), "CreateAccount") {
		t.Errorf("error %q does not name the command", err)
	}
	wantErr(t, mb.Exec(context.Background(), bus, DoIt{}), mb.ErrNoHandler)
	_, err = mb.Query[Account](context.Background(), bus, GetAccount{})
	wantErr(t, err, mb.ErrNoHandler)
}

func TestSendInvalidArguments(t *testing.T) {
	t.Parallel()
	var nilBus *mb.Bus
	var nilCtx context.Context
	bus := mb.New()
	ran := false
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		ran = true
		return Account{}, nil
	})
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		ran = true
		return Account{}, nil
	})

	_, err := mb.Send[Account](context.Background(), nilBus, CreateAccount{})
	wantErr(t, err, mb.ErrInvalidArgument)
	_, err = mb.Send[Account](nilCtx, bus, CreateAccount{})
	wantErr(t, err, mb.ErrInvalidArgument)
	wantErr(t, mb.Exec(nilCtx, bus, CreateAccount{}), mb.ErrInvalidArgument)
	wantErr(t, mb.Exec(context.Background(), nilBus, CreateAccount{}), mb.ErrInvalidArgument)
	_, err = mb.Query[Account](nilCtx, bus, GetAccount{})
	wantErr(t, err, mb.ErrInvalidArgument)
	_, err = mb.Query[Account](context.Background(), nilBus, GetAccount{})
	wantErr(t, err, mb.ErrInvalidArgument)

	// A nil interface value has no type to dispatch by.
	var nilCmd any
	_, err = mb.Send[Account](context.Background(), bus, nilCmd)
	wantErr(t, err, mb.ErrInvalidMessage)
	// A pointer is not a message.
	_, err = mb.Send[Account](context.Background(), bus, &CreateAccount{})
	wantErr(t, err, mb.ErrInvalidMessage)
	if ran {
		t.Fatal("a handler ran for an invalid dispatch")
	}
}

func TestSendResultTypeMismatch(t *testing.T) {
	t.Parallel()
	for _, withMW := range []bool{false, true} {
		t.Run(fmt.Sprintf("middleware=%v", withMW), func(t *testing.T) {
			t.Parallel()
			var opts mb.Options
			if withMW {
				opts.Middleware = []mb.Middleware{mb.Recover()}
			}
			bus := mb.New(&opts)
			var runs atomic.Int32
			mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
				runs.Add(1)
				return Account(c), nil
			})
			mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
				runs.Add(1)
				return Account(q), nil
			})
			s, err := mb.Send[string](context.Background(), bus, CreateAccount{"x"})
			wantErr(t, err, mb.ErrResultType)
			if s != "" {
				t.Errorf("Send returned %q with an error", s)
			}
			if !strings.Contains(err.Error(), "string") || !strings.Contains(err.Error(), "Account") {
				t.Errorf("error %q does not name both types", err)
			}
			_, err = mb.Query[int](context.Background(), bus, GetAccount{"x"})
			wantErr(t, err, mb.ErrResultType)
			if n := runs.Load(); n != 0 {
				t.Fatalf("handler ran %d times despite the result type mismatch", n)
			}
		})
	}
}

func TestSendAnyResult(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	mb.HandleCommand(bus, createAccount)
	var got []string
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		got = append(got, e.Name)
		return nil
	})
	res, err := mb.Send[any](context.Background(), bus, CreateAccount{"any"})
	noErr(t, err)
	if acc, ok := res.(Account); !ok || acc.Name != "any" {
		t.Fatalf("Send[any] returned %#v, want Account{any}", res)
	}
	wantSeq(t, got, []string{"any"})
}

// A command held in an interface value is dispatched by its dynamic type.
func TestSendInterfaceValueCommand(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	mb.HandleCommand(bus, createAccount)
	var events []string
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		events = append(events, e.Name)
		return nil
	})
	var cmd any = CreateAccount{"dyn"}
	acc, err := mb.Send[Account](context.Background(), bus, cmd)
	noErr(t, err)
	if acc.Name != "dyn" {
		t.Fatalf("got %+v", acc)
	}
	noErr(t, mb.Exec(context.Background(), bus, cmd))
	wantSeq(t, events, []string{"dyn", "dyn"})

	var unknown any = DoIt{}
	wantErr(t, mb.Exec(context.Background(), bus, unknown), mb.ErrNoHandler)
}

func TestExec(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var log recorder
	errBad := errors.New("bad")
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		log.add("do " + c.What)
		if c.What == "fail" {
			return errBad
		}
		return mb.Emit(ctx, Note{c.What})
	})
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add("note " + e.Text)
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		log.add("created " + e.Name)
		return nil
	})

	noErr(t, mb.Exec(context.Background(), bus, DoIt{"a"}))
	wantErr(t, mb.Exec(context.Background(), bus, DoIt{"fail"}), errBad)
	// Exec works for a command with a result, discarding it.
	noErr(t, mb.Exec(context.Background(), bus, CreateAccount{"b"}))
	wantSeq(t, log.get(), []string{"do a", "note a", "do fail", "created b"})

	// A no-result command's result type is not Account.
	_, err := mb.Send[Account](context.Background(), bus, DoIt{"x"})
	wantErr(t, err, mb.ErrResultType)
}

func TestDuplicateRegistration(t *testing.T) {
	t.Parallel()
	h := func(ctx context.Context, c CreateAccount) (Account, error) { return Account{}, nil }
	other := func(ctx context.Context, c CreateAccount) (Account, error) { return Account{}, nil }

	t.Run("different function panics", func(t *testing.T) {
		t.Parallel()
		bus := mb.New()
		mb.HandleCommand(bus, h)
		err := panicErr(t, mustPanic(t, func() { mb.HandleCommand(bus, other) }), mb.ErrDuplicateHandler)
		if !strings.Contains(err.Error(), "CreateAccount") {
			t.Errorf("error %q does not name the command", err)
		}
	})
	t.Run("same function panics", func(t *testing.T) {
		t.Parallel()
		bus := mb.New()
		mb.HandleCommand(bus, createAccount)
		panicErr(t, mustPanic(t, func() { mb.HandleCommand(bus, createAccount) }), mb.ErrDuplicateHandler)
	})
	t.Run("safely returns the error", func(t *testing.T) {
		t.Parallel()
		bus := mb.New()
		noErr(t, mb.HandleCommandSafely(bus, h))
		wantErr(t, mb.HandleCommandSafely(bus, h), mb.ErrDuplicateHandler)
		wantErr(t, mb.HandleCommandNoResultSafely(bus, func(ctx context.Context, c CreateAccount) error { return nil }), mb.ErrDuplicateHandler)
		// The first registration still serves.
		_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
		noErr(t, err)
	})
	t.Run("queries and streams share one handler per type", func(t *testing.T) {
		t.Parallel()
		bus := mb.New()
		q := func(ctx context.Context, q GetAccount) (Account, error) { return Account{}, nil }
		noErr(t, mb.HandleQuerySafely(bus, q))
		wantErr(t, mb.HandleQuerySafely(bus, q), mb.ErrDuplicateHandler)
		wantErr(t, mb.HandleStreamSafely(bus, func(ctx context.Context, q GetAccount) iter.Seq2[int, error] { return nil }), mb.ErrDuplicateHandler)
		panicErr(t, mustPanic(t, func() { mb.HandleQuery(bus, q) }), mb.ErrDuplicateHandler)
		s := func(ctx context.Context, q CountTo) iter.Seq2[int, error] { return nil }
		mb.HandleStream(bus, s)
		panicErr(t, mustPanic(t, func() { mb.HandleStream(bus, s) }), mb.ErrDuplicateHandler)
		panicErr(t, mustPanic(t, func() {
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { return nil })
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { return nil })
		}), mb.ErrDuplicateHandler)
	})
}

func TestInvalidRegistration(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var nilBus *mb.Bus
	okCmd := func(ctx context.Context, c CreateAccount) (Account, error) { return Account{}, nil }
	okEvt := func(ctx context.Context, e Note) error { return nil }

	cases := map[string]error{
		"nil bus command":        mb.HandleCommandSafely(nilBus, okCmd),
		"nil bus event":          mb.SubscribeSafely(nilBus, okEvt),
		"nil command handler":    mb.HandleCommandSafely[CreateAccount, Account](bus, nil),
		"nil no-result handler":  mb.HandleCommandNoResultSafely[DoIt](bus, nil),
		"nil query handler":      mb.HandleQuerySafely[GetAccount, Account](bus, nil),
		"nil stream handler":     mb.HandleStreamSafely[CountTo, int](bus, nil),
		"nil event handler":      mb.SubscribeSafely[Note](bus, nil),
		"int command":            mb.HandleCommandSafely(bus, func(ctx context.Context, c int) (int, error) { return 0, nil }),
		"pointer command":        mb.HandleCommandSafely(bus, func(ctx context.Context, c *CreateAccount) (int, error) { return 0, nil }),
		"interface command":      mb.HandleCommandSafely(bus, func(ctx context.Context, c any) (int, error) { return 0, nil }),
		"string query":           mb.HandleQuerySafely(bus, func(ctx context.Context, q string) (int, error) { return 0, nil }),
		"slice stream":           mb.HandleStreamSafely(bus, func(ctx context.Context, q []int) iter.Seq2[int, error] { return nil }),
		"pointer event":          mb.SubscribeSafely(bus, func(ctx context.Context, e *Note) error { return nil }),
		"string event":           mb.SubscribeSafely(bus, func(ctx context.Context, e string) error { return nil }),
		"nil option":             mb.HandleCommandSafely(bus, okCmd, nil),
		"nil handler middleware": mb.SubscribeSafely(bus, okEvt, mb.WithMiddleware(nil)),
	}
	for name, err := range cases {
		if !errors.Is(err, mb.ErrInvalidHandler) {
			t.Errorf("%s: got %v, want ErrInvalidHandler", name, err)
		}
	}
	panicErr(t, mustPanic(t, func() { mb.HandleCommand[CreateAccount, Account](bus, nil) }), mb.ErrInvalidHandler)
	panicErr(t, mustPanic(t, func() { mb.Subscribe(nilBus, okEvt) }), mb.ErrInvalidHandler)
	panicErr(t, mustPanic(t, func() { mb.Subscribe(bus, func(ctx context.Context, e int) error { return nil }) }), mb.ErrInvalidHandler)

	// None of the failed registrations took effect.
	noErr(t, mb.HandleCommandSafely(bus, okCmd))
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	noErr(t, err)
}

func TestQuery(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var emitErr, hookErr error
	var md mb.Metadata
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		emitErr = mb.Emit(ctx, Note{"from query"})
		hookErr = mb.BeforeCommit(ctx, func(context.Context) error { return nil })
		md, _ = mb.MetadataFrom(ctx)
		if _, err := mb.TxFrom(ctx); !errors.Is(err, mb.ErrNoUnitOfWork) {
			t.Errorf("TxFrom in a query: %v, want ErrNoUnitOfWork", err)
		}
		return Account(q), nil
	})
	noted := false
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { noted = true; return nil })

	acc, err := mb.Query[Account](context.Background(), bus, GetAccount{"q"})
	noErr(t, err)
	if acc.Name != "q" {
		t.Fatalf("got %+v", acc)
	}
	wantErr(t, emitErr, mb.ErrNoUnitOfWork)
	wantErr(t, hookErr, mb.ErrNoUnitOfWork)
	if noted {
		t.Fatal("an event emitted in a query was dispatched")
	}
	if md.Kind != mb.KindQuery || md.Name != "mb_test.GetAccount" {
		t.Fatalf("metadata in query: %+v", md)
	}
	wantUUIDv7(t, md.ID)

	// Any as result, and a query in an interface value.
	var q any = GetAccount{"i"}
	res, err := mb.Query[any](context.Background(), bus, q)
	noErr(t, err)
	if res != (Account{"i"}) {
		t.Fatalf("got %#v", res)
	}
}

// A query run inside a command handler still has no unit of work.
func TestQueryInsideCommand(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		return Account(q), mb.Emit(ctx, Note{"q"})
	})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		_, err := mb.Query[Account](ctx, bus, GetAccount(c))
		if !errors.Is(err, mb.ErrNoUnitOfWork) {
			return Account{}, fmt.Errorf("query: got %v, want ErrNoUnitOfWork", err)
		}
		return Account(c), mb.Emit(ctx, Note{"cmd"})
	})
	var log recorder
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add(e.Text); return nil })
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"c"})
	noErr(t, err)
	wantSeq(t, log.get(), []string{"cmd"})
}

func TestQueryPanic(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		if q.Name == "boom" {
			panic("query boom")
		}
		return Account(q), nil
	})
	_, err := mb.Query[Account](context.Background(), bus, GetAccount{"boom"})
	wantErr(t, err, mb.ErrPanic)
	acc, err := mb.Query[Account](context.Background(), bus, GetAccount{"fine"})
	noErr(t, err)
	if acc.Name != "fine" {
		t.Fatalf("got %+v", acc)
	}
}

// counter registers a stream handler on bus yielding 1..q.N and recording in
// produced how many values it yielded and whether it saw a stop.
func countStream(produced *atomic.Int32, stopped *atomic.Bool) func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
	return func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
		return func(yield func(int, error) bool) {
			for i := 1; i <= q.N; i++ {
				produced.Add(1)
				if !yield(i, nil) {
					stopped.Store(true)
					return
				}
			}
		}
	}
}

func collect[T any](seq iter.Seq2[T, error]) ([]T, []error) {
	var vs []T
	var errs []error
	for v, err := range seq {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		vs = append(vs, v)
	}
	return vs, errs
}

func TestStream(t *testing.T) {
	t.Parallel()
	for _, withMW := range []bool{false, true} {
		t.Run(fmt.Sprintf("middleware=%v", withMW), func(t *testing.T) {
			t.Parallel()
			var opts mb.Options
			var kinds recorder
			if withMW {
				opts.Middleware = []mb.Middleware{func(next mb.Handler) mb.Handler {
					return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
						kinds.add(msg.Kind.String())
						return next.Handle(ctx, msg)
					})
				}}
			}
			bus := mb.New(&opts)
			var produced atomic.Int32
			var stopped atomic.Bool
			mb.HandleStream(bus, countStream(&produced, &stopped))

			vs, errs := collect(mb.Stream[int](context.Background(), bus, CountTo{5}))
			if len(errs) != 0 || fmt.Sprint(vs) != "[1 2 3 4 5]" {
				t.Fatalf("got %v, errors %v", vs, errs)
			}
			if stopped.Load() {
				t.Fatal("handler saw a stop on a full iteration")
			}

			// Early break stops the handler's sequence.
			produced.Store(0)
			var got []int
			for v, err := range mb.Stream[int](context.Background(), bus, CountTo{100}) {
				noErr(t, err)
				got = append(got, v)
				if v == 2 {
					break
				}
			}
			if fmt.Sprint(got) != "[1 2]" || produced.Load() != 2 || !stopped.Load() {
				t.Fatalf("early break: got %v, produced %d, stopped %v", got, produced.Load(), stopped.Load())
			}

			// A stream query in an interface value.
			var q any = CountTo{2}
			vs, errs = collect(mb.Stream[int](context.Background(), bus, q))
			if len(errs) != 0 || fmt.Sprint(vs) != "[1 2]" {
				t.Fatalf("got %v, errors %v", vs, errs)
			}
			if withMW {
				wantSeq(t, kinds.get(), []string{"stream", "stream", "stream"})
			}
		})
	}
}

func TestStreamErrors(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	errItem := errors.New("item error")
	mb.HandleStream(bus, func(ctx context.Context, q CountTo) iter.Seq2[int, error] {
		if q.N < 0 {
			panic("before the sequence")
		}
		return func(yield func(int, error) bool) {
			for i := 1; i <= q.N; i++ {
				if i == 2 {
					if !yield(0, errItem) {
						return
					}
					continue
				}
				if i == 4 {
					panic(fmt.Errorf("mid-stream %d", i))
				}
				if !yield(i, nil) {
					return
				}
			}
		}
	})

	t.Run("handler errors pass through", func(t *testing.T) {
		vs, errs := collect(mb.Stream[int](context.Background(), bus, CountTo{3}))
		if fmt.Sprint(vs) != "[1 3]" || len(errs) != 1 || !errors.Is(errs[0], errItem) {
			t.Fatalf("got %v, %v", vs, errs)
		}
	})
	t.Run("panic mid-stream becomes a final error", func(t *testing.T) {
		var log []string
		for v, err := range mb.Stream[int](context.Background(), bus, CountTo{10}) {
			if errors.Is(err, errItem) {
				log = append(log, "item error")
				continue
			}
			if err != nil {
				log = append(log, "panic")
				var pe *mb.PanicError
				if !errors.Is(err, mb.ErrPanic) || !errors.As(err, &pe) || len(pe.Stack) == 0 {
					t.Fatalf("got %v, want a *PanicError with a stack", err)
				}
				if !strings.Contains(err.Error(), "mid-stream 4") {
					t.Fatalf("error %q does not carry the panic value", err)
				}
				continue
			}
			log = append(log, fmt.Sprint(v))
		}
		// 1, the item error, 3, then the panic at 4 ends the sequence.
		wantSeq(t, log, []string{"1", "item error", "3", "panic"})
	})
	t.Run("panic in the handler before the sequence", func(t *testing.T) {
		vs, errs := collect(mb.Stream[int](context.Background(), bus, CountTo{-1}))
		if len(vs) != 0 || len(errs) != 1 || !errors.Is(errs[0], mb.ErrPanic) {
			t.Fatalf("got %v, %v", vs, errs)
		}
	})
	t.Run("panic in the consumer propagates", func(t *testing.T) {
		type marker struct{ s string }
		var seen []int
		v := mustPanic(t, func() {
			for v, err := range mb.Stream[int](context.Background(), bus, CountTo{3}) {
				if err != nil {
					continue
				}
				seen = append(seen, v)
				if v == 3 {
					panic(marker{"consumer"})
				}
			}
		})
		if v != (marker{"consumer"}) {
			t.Fatalf("recovered %#v, want the consumer's own panic value", v)
		}
		if fmt.Sprint(seen) != "[1 3]" {
			t.Fatalf("consumer saw %v", seen)
		}
	})
	t.Run("no handler", func(t *testing.T) {
		vs, errs := collect(mb.Stream[int](context.Background(), bus, GetAccount{}))
		if len(vs) != 0 || len(errs) != 1 || !errors.Is(errs[0], mb.ErrNoHandler) {
			t.Fatalf("got %v, %v", vs, errs)
		}
	})
	t.Run("wrong element type", func(t *testing.T) {
		vs, errs := collect(mb.Stream[string](context.Background(), bus, CountTo{3}))
		if len(vs) != 0 || len(errs) != 1 || !errors.Is(errs[0], mb.ErrResultType) {
			t.Fatalf("got %v, %v", vs, errs)
		}
	})
	t.Run("query on a stream type", func(t *testing.T) {
		_, err := mb.Query[int](context.Background(), bus, CountTo{3})
		wantErr(t, err, mb.ErrNoHandler)
	})
	t.Run("invalid arguments", func(t *testing.T) {
		var nilCtx context.Context
		var nilBus *mb.Bus
		_, errs := collect(mb.Stream[int](nilCtx, bus, CountTo{1}))
		if len(errs) != 1 || !errors.Is(errs[0], mb.ErrInvalidArgument) {
			t.Fatalf("nil ctx: %v", errs)
		}
		_, errs = collect(mb.Stream[int](context.Background(), nilBus, CountTo{1}))
		if len(errs) != 1 || !errors.Is(errs[0], mb.ErrInvalidArgument) {
			t.Fatalf("nil bus: %v", errs)
		}
	})
}

func TestPanicRecovery(t *testing.T) {
	t.Parallel()
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	errInner := errors.New("inner")
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		if err := mb.Emit(ctx, AccountCreated(c)); err != nil {
			return Account{}, err
		}
		switch c.Name {
		case "string":
			panic("boom")
		case "error":
			panic(fmt.Errorf("wrapped: %w", errInner))
		}
		return Account(c), nil
	})
	var log recorder
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { touch(t, ctx); log.add(e.Name); return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"string"})
	wantErr(t, err, mb.ErrPanic)
	var pe *mb.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("%v is not a *mb.PanicError", err)
	}
	if pe.Value != "boom" {
		t.Errorf("PanicError.Value = %#v", pe.Value)
	}
	if !strings.Contains(string(pe.Stack), "TestPanicRecovery") {
		t.Errorf("stack does not show the panicking handler:\n%s", pe.Stack)
	}
	if !strings.Contains(err.Error(), "boom") {
		t.Errorf("error %q does not show the panic value", err)
	}

	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"error"})
	wantErr(t, err, mb.ErrPanic, errInner)

	// The bus keeps serving.
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"ok"})
	noErr(t, err)
	if acc.Name != "ok" {
		t.Fatalf("got %+v", acc)
	}
	wantSeq(t, log.get(), []string{"ok"})
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin", "tx1 rollback",
		"tx2 begin", "tx2 rollback",
		"tx3 begin", "tx3 commit",
		"tx4 begin", "tx4 commit", // the event handler
	})
}

func TestPublishOutsideHandler(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add("note " + e.Text)
		if _, ok := mb.MetadataFrom(ctx); !ok {
			t.Error("no metadata in an event handler")
		}
		return mb.Emit(ctx, Ping{len(e.Text)})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error {
		log.addf("ping %d", e.N)
		return nil
	})
	noErr(t, mb.Publish(context.Background(), bus, Note{"a"}, Note{"bb"}))
	// Publish returns after the cascade, breadth-first.
	wantSeq(t, log.get(), []string{"note a", "note bb", "ping 1", "ping 2"})
}

func TestPublishInvalid(t *testing.T) {
	t.Parallel()
	var nilBus *mb.Bus
	var nilCtx context.Context
	bus := mb.New()
	ran := false
	mb.Subscribe(bus, func(ctx context.Context, e any) error { ran = true; return nil })
	wantErr(t, mb.Publish(context.Background(), nilBus, Note{}), mb.ErrInvalidArgument)
	wantErr(t, mb.Publish(nilCtx, bus, Note{}), mb.ErrInvalidArgument)
	// All or nothing: the valid Note before the invalid value is not dispatched.
	wantErr(t, mb.Publish(context.Background(), bus, Note{"x"}, 42), mb.ErrInvalidMessage)
	wantErr(t, mb.Publish(context.Background(), bus, Note{"x"}, &Note{}), mb.ErrInvalidMessage)
	wantErr(t, mb.Publish(context.Background(), bus, Note{"x"}, nil), mb.ErrInvalidMessage)
	if ran {
		t.Fatal("a handler ran after an invalid Publish")
	}
	noErr(t, mb.Publish(context.Background(), bus))
}

func TestPublishHandlerErrorsGoToErrorHandler(t *testing.T) {
	t.Parallel()
	var sink errSink
	errH := errors.New("handler failed")
	bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { return errH })
	noErr(t, mb.Publish(context.Background(), bus, Note{"x"}))
	hes := handlerErrors(t, sink.get())
	if len(hes) != 1 || !errors.Is(hes[0], errH) {
		t.Fatalf("reported %v", sink.get())
	}
}

// Inside a handler of the bus, Publish is Emit: the events wait for the
// commit and are dropped on rollback.
func TestPublishInsideHandlerIsEmit(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	errFail := errors.New("fail")
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		if err := mb.Publish(ctx, bus, Note{c.Name}); err != nil {
			return Account{}, err
		}
		log.add("handler " + c.Name + " returns")
		if c.Name == "fail" {
			return Account{}, errFail
		}
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("note " + e.Text); return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"ok"})
	noErr(t, err)
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"fail"})
	wantErr(t, err, errFail)
	wantSeq(t, log.get(), []string{"handler ok returns", "note ok", "handler fail returns"})
}

func TestMetadata(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	seen := map[string]mb.Metadata{}
	record := func(ctx context.Context, key string) {
		md, ok := mb.MetadataFrom(ctx)
		if !ok {
			t.Errorf("%s: no metadata", key)
		}
		mu.Lock()
		seen[key] = md
		mu.Unlock()
	}
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		record(ctx, "outer")
		if _, err := mb.Send[Account](ctx, bus, GetAccountCmd{c.Name}); err != nil {
			return Account{}, err
		}
		return Account(c), mb.Emit(ctx, AccountCreated(c))
	}, mb.WithName("outer-handler"))
	mb.HandleCommand(bus, func(ctx context.Context, c GetAccountCmd) (Account, error) {
		record(ctx, "inner")
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		record(ctx, "event1")
		return mb.Emit(ctx, Renamed{e.Name})
	}, mb.WithName("first"))
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		record(ctx, "event2")
		return nil
	}, mb.WithName("second"))
	mb.Subscribe(bus, func(ctx context.Context, e Renamed) error {
		record(ctx, "cascade")
		return nil
	})

	if _, ok := mb.MetadataFrom(context.Background()); ok {
		t.Fatal("MetadataFrom reports metadata outside any handler")
	}

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"m"})
	noErr(t, err)
	outer, inner, ev1, ev2, casc := seen["outer"], seen["inner"], seen["event1"], seen["event2"], seen["cascade"]
	for k, md := range seen {
		wantUUIDv7(t, md.ID)
		if k != "outer" && md.CorrelationID != outer.ID {
			t.Errorf("%s: correlation %q, want the outer command's id %q", k, md.CorrelationID, outer.ID)
		}
	}
	if outer.Kind != mb.KindCommand || outer.Name != "mb_test.CreateAccount" || outer.Handler != "outer-handler" {
		t.Errorf("outer metadata %+v", outer)
	}
	if outer.CausationID != "" || outer.CorrelationID != outer.ID {
		t.Errorf("a command sent from outside: causation %q, correlation %q, id %q", outer.CausationID, outer.CorrelationID, outer.ID)
	}
	if inner.CausationID != outer.ID || inner.ID == outer.ID {
		t.Errorf("nested command: %+v, outer id %q", inner, outer.ID)
	}
	if ev1.ID != ev2.ID {
		t.Errorf("the two handlers of one event saw ids %q and %q", ev1.ID, ev2.ID)
	}
	if ev1.Kind != mb.KindEvent || ev1.Name != "mb_test.AccountCreated" || ev1.Handler != "first" || ev2.Handler != "second" {
		t.Errorf("event metadata %+v, %+v", ev1, ev2)
	}
	if ev1.CausationID != outer.ID {
		t.Errorf("event causation %q, want the command id %q", ev1.CausationID, outer.ID)
	}
	if casc.CausationID != ev1.ID || casc.Name != "accounts.renamed" || casc.ID == ev1.ID {
		t.Errorf("cascaded event %+v, want causation %q", casc, ev1.ID)
	}

	// Each Send has its own ids.
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"m2"})
	noErr(t, err)
	if seen["outer"].ID == outer.ID {
		t.Error("two sends share an id")
	}
}

// GetAccountCmd is a second command type for nesting.
type GetAccountCmd struct{ Name string }

func TestWithCorrelationID(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		md, _ := mb.MetadataFrom(ctx)
		log.add("command " + md.CorrelationID)
		return Account(c), mb.Emit(ctx, Note{"n"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		md, _ := mb.MetadataFrom(ctx)
		log.add("event " + md.CorrelationID)
		if md.CausationID == "" {
			if e.Text != "published" {
				t.Error("emitted event has no causation")
			}
		}
		return nil
	})
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) {
		md, _ := mb.MetadataFrom(ctx)
		log.add("query " + md.CorrelationID)
		return Account{}, nil
	})
	ctx := mb.WithCorrelationID(context.Background(), "req-1")
	_, err := mb.Send[Account](ctx, bus, CreateAccount{"c"})
	noErr(t, err)
	_, err = mb.Query[Account](ctx, bus, GetAccount{})
	noErr(t, err)
	noErr(t, mb.Publish(mb.WithCorrelationID(context.Background(), "req-2"), bus, Note{"published"}))
	wantSeq(t, log.get(), []string{"command req-1", "event req-1", "query req-1", "event req-2"})
}

// Subscribers to an interface receive every event implementing it, any
// receives everything, all in registration order.
func TestInterfaceSubscription(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { log.add("concrete " + e.Name); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Labeled) error { log.add("labeled " + e.Label()); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.addf("any %T", e); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { log.add("concrete again " + e.Name); return nil })

	noErr(t, mb.Publish(context.Background(), bus, AccountCreated{"a"}, Note{"n"}, Ping{1}))
	wantSeq(t, log.get(), []string{
		"concrete a", "concrete again a", "labeled account a", "any mb_test.AccountCreated",
		"labeled note n", "any mb_test.Note",
		"any mb_test.Ping",
	})
}

func TestSameEventHandlerTwiceRunsOnce(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	h := func(ctx context.Context, e Note) error { runs.Add(1); return nil }
	other := func(ctx context.Context, e Note) error { runs.Add(100); return nil }
	bus := mb.New()
	mb.Subscribe(bus, h)
	mb.Subscribe(bus, h)
	mb.Subscribe(bus, other)
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	if n := runs.Load(); n != 101 {
		t.Fatalf("runs = %d, want 101 (h once, other once)", n)
	}
}

func TestEventWithoutHandler(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, createAccount)
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"lonely"})
	noErr(t, err)
	noErr(t, mb.Publish(context.Background(), bus, Note{"nobody"}))
}

func TestEventConcurrency(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{EventConcurrency: 2, ErrorHandler: noErrors(t)})
	started1, started2 := make(chan struct{}), make(chan struct{})
	emitted2 := make(chan struct{})
	// Both handlers wait until the other has started: this only completes
	// when they run at the same time. The second emits first, yet the
	// events join the queue in handler order.
	//
	// The guard below is never reached when handlers run concurrently; it
	// only turns a broken implementation (which would deadlock) into a
	// failure instead of a hang until the test binary's -timeout.
	guard := time.NewTimer(time.Minute)
	defer guard.Stop()
	wait := func(name string, ch <-chan struct{}) error {
		select {
		case <-ch:
			return nil
		case <-guard.C:
			return fmt.Errorf("%s: the other handler never ran concurrently", name)
		}
	}
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		close(started1)
		if err := wait("h1", started2); err != nil {
			return err
		}
		if err := wait("h1", emitted2); err != nil {
			return err
		}
		return mb.Emit(ctx, Ping{1})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		close(started2)
		if err := wait("h2", started1); err != nil {
			return err
		}
		err := mb.Emit(ctx, Ping{2})
		close(emitted2)
		return err
	})
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error { log.addf("ping %d", e.N); return nil })
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	wantSeq(t, log.get(), []string{"ping 1", "ping 2"})
}

func TestEventConcurrencyBound(t *testing.T) {
	t.Parallel()
	var running, peak, runs atomic.Int32
	bus := mb.New(&mb.Options{EventConcurrency: 3, ErrorHandler: noErrors(t)})
	for i := range 10 {
		mb.Subscribe(bus, func(ctx context.Context, e Note) error {
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			runs.Add(1)
			running.Add(-1)
			return nil
		}, mb.WithName(fmt.Sprint("h", i)))
	}
	noErr(t, mb.Publish(context.Background(), bus, Note{}, Note{}))
	if runs.Load() != 20 || peak.Load() > 3 {
		t.Fatalf("runs %d, peak concurrency %d (limit 3)", runs.Load(), peak.Load())
	}
}

func TestConcurrentSend(t *testing.T) {
	t.Parallel()
	tr := &mbtest.Transactor{}
	var sink errSink
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: sink.handle, EventConcurrency: 2})
	var created, pinged atomic.Int64
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		return createAccount(ctx, c)
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		touch(t, ctx)
		created.Add(1)
		return mb.Emit(ctx, Ping{})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Labeled) error { touch(t, ctx); return nil })
	// This one uses no transaction and begins none.
	mb.Subscribe(bus, func(ctx context.Context, e Labeled) error { return nil }, mb.WithName("no tx"))
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error {
		touch(t, ctx)
		pinged.Add(1)
		if e.N == 0 {
			return errors.New("reported")
		}
		return nil
	})
	const n = 64
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			name := fmt.Sprint(i)
			acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{name})
			if err == nil && acc.Name != name {
				err = fmt.Errorf("got %+v for %s", acc, name)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	noErr(t, errors.Join(errs...))
	if created.Load() != n || pinged.Load() != n {
		t.Fatalf("created %d, pinged %d, want %d each", created.Load(), pinged.Load(), n)
	}
	if got := len(handlerErrors(t, sink.get())); got != n {
		t.Fatalf("%d errors reported, want %d", got, n)
	}
	var begins, commits, rollbacks int
	for _, c := range tr.Calls() {
		switch {
		case strings.HasSuffix(c, " begin"):
			begins++
		case strings.HasSuffix(c, " commit"):
			commits++
		case strings.HasSuffix(c, " rollback"):
			rollbacks++
		}
	}
	// Per send: the command, two AccountCreated handlers, one Ping handler.
	if begins != 4*n || commits != 3*n || rollbacks != n {
		t.Fatalf("begins %d, commits %d, rollbacks %d", begins, commits, rollbacks)
	}
}

// Registration while dispatching is safe and takes effect for later
// dispatches.
func TestRegisterWhileDispatching(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, createAccount)
	var base atomic.Int64
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { base.Add(1); return nil })

	const added = 50
	var extra [added]atomic.Int64
	var wg sync.WaitGroup
	const senders, sends = 8, 50
	errs := make(chan error, senders*sends)
	for range senders {
		wg.Go(func() {
			for range sends {
				if _, err := mb.Send[Account](context.Background(), bus, CreateAccount{"c"}); err != nil {
					errs <- err
				}
				if _, err := mb.Query[Account](context.Background(), bus, GetAccount{}); err != nil && !errors.Is(err, mb.ErrNoHandler) {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for i := range added {
			mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { extra[i].Add(1); return nil }, mb.WithName(fmt.Sprint("extra ", i)))
			if i == added/2 {
				mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (Account, error) { return Account{}, nil })
				bus.Use(mb.Recover())
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if base.Load() != senders*sends {
		t.Fatalf("base handler ran %d times, want %d", base.Load(), senders*sends)
	}
	before := make([]int64, added)
	for i := range extra {
		before[i] = extra[i].Load()
		if before[i] > senders*sends {
			t.Fatalf("handler %d ran %d times", i, before[i])
		}
	}
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"last"})
	noErr(t, err)
	for i := range extra {
		if extra[i].Load() != before[i]+1 {
			t.Fatalf("handler %d did not run exactly once for the last send", i)
		}
	}
}

func TestNewInvalidOptions(t *testing.T) {
	t.Parallel()
	v := mustPanic(t, func() { mb.New(&mb.Options{MaxCascadeDepth: -1}) })
	err, ok := v.(error)
	if !ok || !strings.Contains(err.Error(), "Options.MaxCascadeDepth") {
		t.Fatalf("panic %v does not name Options.MaxCascadeDepth", v)
	}
	v = mustPanic(t, func() {
		mb.New(&mb.Options{MaxCascadeDepth: -1, EventConcurrency: -2, Middleware: []mb.Middleware{mb.Recover(), nil}})
	})
	msg := fmt.Sprint(v)
	for _, field := range []string{"Options.MaxCascadeDepth", "Options.EventConcurrency", "Options.Middleware[1]"} {
		if !strings.Contains(msg, field) {
			t.Errorf("panic %q does not name %s", msg, field)
		}
	}
	panicErr(t, mustPanic(t, func() { mb.New(&mb.Options{}, &mb.Options{}) }), mb.ErrInvalidArgument)
	// Options.Validate reports the same without a panic.
	err = (&mb.Options{MaxCascadeDepth: -1}).Validate()
	wantErr(t, err, mb.ErrInvalidArgument)
	noErr(t, (&mb.Options{}).Validate())
	mb.New(nil) // nil means the defaults
}

func TestUseInvalid(t *testing.T) {
	t.Parallel()
	var nilBus *mb.Bus
	panicErr(t, mustPanic(t, func() { nilBus.Use(mb.Recover()) }), mb.ErrInvalidArgument)
	panicErr(t, mustPanic(t, func() { mb.New().Use(mb.Recover(), nil) }), mb.ErrInvalidArgument)
}

func TestInstall(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	errMod := errors.New("module failed")
	var order []string
	accounts := func(bus *mb.Bus) error {
		order = append(order, "accounts")
		return errors.Join(
			mb.HandleCommandSafely(bus, createAccount),
			mb.SubscribeSafely(bus, func(ctx context.Context, e AccountCreated) error { return nil }),
		)
	}
	failing := func(bus *mb.Bus) error { order = append(order, "failing"); return errMod }
	dup := func(bus *mb.Bus) error {
		order = append(order, "dup")
		return mb.HandleCommandSafely(bus, createAccount)
	}
	queries := func(bus *mb.Bus) error {
		order = append(order, "queries")
		return mb.HandleQuerySafely(bus, func(ctx context.Context, q GetAccount) (Account, error) { return Account(q), nil })
	}
	noErr(t, bus.Install(accounts))
	err := bus.Install(failing, nil, dup, queries)
	wantErr(t, err, errMod, mb.ErrInvalidHandler, mb.ErrDuplicateHandler)
	wantSeq(t, order, []string{"accounts", "failing", "dup", "queries"})
	// Modules after a failing one still ran.
	acc, err := mb.Query[Account](context.Background(), bus, GetAccount{"q"})
	noErr(t, err)
	if acc.Name != "q" {
		t.Fatalf("got %+v", acc)
	}
	var nilBus *mb.Bus
	wantErr(t, nilBus.Install(accounts), mb.ErrInvalidArgument)
}

// The default ErrorHandler logs to Options.Logger at error level.
func TestDefaultErrorHandlerLogs(t *testing.T) {
	t.Parallel()
	var buf syncBuffer
	logger := newJSONLogger(&buf)
	bus := mb.New(&mb.Options{Logger: logger})
	errH := errors.New("handler exploded")
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { return errH }, mb.WithName("exploding"))
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	recs := buf.records(t)
	if len(recs) != 1 {
		t.Fatalf("logged %d records, want 1: %s", len(recs), buf.String())
	}
	r := recs[0]
	if r["level"] != "ERROR" || !strings.Contains(fmt.Sprint(r["error"]), "handler exploded") || !strings.Contains(fmt.Sprint(r["error"]), "exploding") {
		t.Fatalf("record %v", r)
	}
}

// A panicking ErrorHandler does not take the dispatcher down.
func TestPanickingErrorHandler(t *testing.T) {
	t.Parallel()
	var runs atomic.Int32
	bus := mb.New(&mb.Options{ErrorHandler: func(ctx context.Context, err error) { panic("error handler") }})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { runs.Add(1); return errors.New("x") })
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { runs.Add(1); return nil })
	noErr(t, mb.Publish(context.Background(), bus, Note{}, Note{}))
	if runs.Load() != 4 {
		t.Fatalf("runs = %d, want 4", runs.Load())
	}
}

func TestKindString(t *testing.T) {
	t.Parallel()
	for k, want := range map[mb.Kind]string{
		mb.KindCommand: "command", mb.KindQuery: "query", mb.KindStream: "stream", mb.KindEvent: "event", 0: "unknown",
	} {
		if k.String() != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k.String(), want)
		}
	}
}

func TestDefaultHandlerName(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var name string
	bus.Use(func(next mb.Handler) mb.Handler {
		return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
			name = msg.Handler
			return next.Handle(ctx, msg)
		})
	})
	mb.HandleCommand(bus, createAccount)
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	noErr(t, err)
	if name != "mb_test.createAccount" {
		t.Fatalf("handler name %q, want mb_test.createAccount", name)
	}
}

// fragileName's MessageName panics on the zero value.
type fragileName struct{ inner *struct{ name string } }

func (f fragileName) MessageName() string { return f.inner.name }

// A MessageName method names the message everywhere; one that panics on the
// zero value leaves the Go type name in use.
func TestMessageName(t *testing.T) {
	t.Parallel()
	var sink errSink
	bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
	var names recorder
	mb.Subscribe(bus, func(ctx context.Context, e any) error {
		md, _ := mb.MetadataFrom(ctx)
		names.add(md.Name)
		return errors.New("fail")
	})
	noErr(t, mb.Publish(context.Background(), bus, Renamed{"x"}, fragileName{&struct{ name string }{"n"}}))
	wantSeq(t, names.get(), []string{"accounts.renamed", "mb_test.fragileName"})
	hes := handlerErrors(t, sink.get())
	if len(hes) != 2 || hes[0].Name != "accounts.renamed" || hes[1].Name != "mb_test.fragileName" {
		t.Fatalf("reported %v", sink.get())
	}
}
