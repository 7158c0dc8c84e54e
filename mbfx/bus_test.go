package mbfx_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbfx"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbtest"
)

// accountsModule declares the command and query handlers of accounts,
// which need the repo from the graph.
var accountsModule = fx.Module("accounts",
	fx.Provide(newRepo),
	fx.Provide(mbfx.AsHandler(func(r *repo) []mbfx.Handler {
		return []mbfx.Handler{mbfx.Command(r.create), mbfx.Query(r.get)}
	})),
)

// mailerModule declares an event handler with a dependency, one handler
// at a time.
func mailerModule(out *journal) fx.Option {
	return fx.Module("mailer",
		fx.Supply(out),
		fx.Provide(mbfx.AsHandler(func(out *journal) mbfx.Handler {
			return mbfx.Event(func(ctx context.Context, e AccountOpened) error {
				out.add("welcome " + e.Username)
				return nil
			}, mb.WithName("mailer.welcome"))
		})),
	)
}

// Handlers declared by several fx modules, in every way the package
// offers, all reach the one bus.
func TestModuleRegistersTheHandlersOfEveryModule(t *testing.T) {
	var out journal
	audit := func(ctx context.Context, e AccountOpened) error { out.add("audit " + e.Username); return nil }
	var bus *mb.Bus
	app := fxtest.New(t,
		mbfx.Module,
		accountsModule,
		mailerModule(&out),
		fx.Module("audit", mbfx.Install(func(bus *mb.Bus) error {
			return mb.SubscribeSafely(bus, audit, mb.WithName("audit"))
		})),
		fx.Module("sync", mbfx.Handlers(mbfx.Event(syncAccount(&out)))),
		fx.Populate(&bus),
	)
	app.RequireStart()
	defer app.RequireStop()

	user, err := mb.Send[Account](context.Background(), bus, OpenAccount{"me", "me@message.bus"})
	if err != nil || user.Username != "me" {
		t.Fatalf("Send = %v, %v", user, err)
	}
	got, err := mb.Query[Account](context.Background(), bus, GetAccount{"me"})
	if err != nil || got != user {
		t.Fatalf("Query = %v, %v; want %v", got, err, user)
	}
	lines := out.get()
	slices.Sort(lines)
	if want := []string{"audit me", "sync me", "welcome me"}; !slices.Equal(lines, want) {
		t.Fatalf("event handlers did %q, want %q", lines, want)
	}
}

func syncAccount(out *journal) func(context.Context, AccountOpened) error {
	return func(ctx context.Context, e AccountOpened) error { out.add("sync " + e.Username); return nil }
}

// A mistake in any registration fails fx.New with an error that wraps
// mb's sentinel and names what failed; every mistake is reported at once.
func TestRegistrationMistakesFailNew(t *testing.T) {
	otherCreate := func(context.Context, OpenAccount) (Account, error) { return Account{}, nil }
	for _, tc := range []struct {
		name string
		opts []fx.Option
		is   []error
		says []string
	}{{
		name: "duplicate command handler",
		opts: []fx.Option{accountsModule, fx.Module("other", mbfx.Handlers(mbfx.Command(otherCreate, mb.WithName("other"))))},
		is:   []error{mb.ErrDuplicateHandler},
		says: []string{"registering the command handler mbfx_test.TestRegistrationMistakesFailNew.func1 for mbfx_test.OpenAccount", "already handled by mbfx_test.(*repo).create"},
	}, {
		name: "nil handler",
		opts: []fx.Option{mbfx.Handlers(mbfx.Command[OpenAccount, Account](nil))},
		is:   []error{mb.ErrInvalidHandler},
		says: []string{"command handler nil for mbfx_test.OpenAccount", "is nil"},
	}, {
		name: "empty Handler",
		opts: []fx.Option{mbfx.Handlers(mbfx.Handler{})},
		is:   []error{mb.ErrInvalidHandler},
		says: []string{"an empty mbfx.Handler"},
	}, {
		name: "constructor of the wrong shape",
		opts: []fx.Option{fx.Provide(mbfx.AsHandler(func() string { return "" }))},
		is:   []error{mb.ErrInvalidArgument},
		says: []string{"mbfx.AsHandler takes a constructor that returns a mbfx.Handler or a []mbfx.Handler", "func() string"},
	}, {
		name: "invalid bus options",
		opts: []fx.Option{fx.Supply(&mb.Options{MaxCascadeDepth: -1})},
		is:   []error{mb.ErrInvalidArgument},
		says: []string{"the *mb.Options in the graph", "MaxCascadeDepth"},
	}, {
		name: "failing and panicking modules, both reported",
		opts: []fx.Option{mbfx.Install(failingModule, panickingModule)},
		is:   []error{errModule, mb.ErrDuplicateHandler},
		says: []string{"installing module mbfx_test.failingModule", "installing module mbfx_test.panickingModule: panicked"},
	}, {
		name: "middleware without a name, twice a name, nil",
		opts: []fx.Option{mbfx.Use(
			mbfx.Middleware{Middleware: mb.Recover()},
			mbfx.Middleware{Name: "a", Middleware: mb.Recover()},
			mbfx.Middleware{Name: "a", Middleware: mb.Recover()},
			mbfx.Middleware{Name: "b"},
		)},
		is:   []error{mb.ErrInvalidArgument},
		says: []string{"has no Name", `two Middleware in group "mb.middleware" are named "a"`, `Middleware "b" has a nil Middleware func`},
	}, {
		name: "invalid mbfx options",
		opts: []fx.Option{fx.Supply(&mbfx.Options{ExitCode: -1})},
		is:   []error{mb.ErrInvalidArgument},
		says: []string{"mbfx.Options.ExitCode is -1"},
	}, {
		name: "consumer and relay without what they need",
		opts: []fx.Option{fx.Provide(
			mbfx.AsConsumer(func() mbfx.Consumer { return mbfx.Consumer{Name: "mailer"} }),
			mbfx.AsRelay(func() mbfx.Relay { return mbfx.Relay{Name: "outbox"} }),
		)},
		is:   []error{mb.ErrInvalidArgument},
		says: []string{"mbfx: mailer: ", "the subscriber is nil", "Topic is empty", "mbfx: outbox: ", "the store is nil"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			app := fx.New(append([]fx.Option{fx.NopLogger, mbfx.Module}, tc.opts...)...)
			err := app.Err()
			if err == nil {
				t.Fatal("fx.New succeeded")
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("fx.New error does not wrap %v: %v", want, err)
				}
			}
			for _, want := range tc.says {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("fx.New error does not say %q: %v", want, err)
				}
			}
		})
	}
}

var errModule = errors.New("no database")

func failingModule(*mb.Bus) error { return errModule }

// panickingModule registers with the functions that panic, and makes a
// mistake.
func panickingModule(bus *mb.Bus) error {
	h := func(context.Context, OpenAccount) (Account, error) { return Account{}, nil }
	mb.HandleCommand(bus, h)
	mb.HandleCommand(bus, h)
	return nil
}

// Middleware of the graph wraps handlers by Order, then Name, inside
// that of mb.Options, whatever order fx gives the group in.
func TestMiddlewareOrder(t *testing.T) {
	for range 8 { // fx shuffles value groups: try a few orders
		var out journal
		mark := func(name string) mb.Middleware {
			return func(next mb.Handler) mb.Handler {
				return mb.HandlerFunc(func(ctx context.Context, m *mb.Message) (any, error) {
					out.add(name)
					return next.Handle(ctx, m)
				})
			}
		}
		var bus *mb.Bus
		app := fxtest.New(t,
			mbfx.Module,
			accountsModule,
			fx.Supply(&mb.Options{Middleware: []mb.Middleware{mark("options")}}),
			mbfx.Use(
				mbfx.Middleware{Name: "late", Order: 10, Middleware: mark("late")},
				mbfx.Middleware{Name: "b", Middleware: mark("b")},
			),
			fx.Provide(mbfx.AsMiddleware(func() []mbfx.Middleware {
				return []mbfx.Middleware{
					{Name: "a", Middleware: mark("a")},
					{Name: "early", Order: -10, Middleware: mark("early")},
				}
			})),
			fx.Populate(&bus),
		)
		if _, err := mb.Query[Account](context.Background(), bus, GetAccount{"me"}); err != nil {
			t.Fatal(err)
		}
		app.RequireStart().RequireStop()
		if got, want := out.get(), []string{"options", "early", "a", "b", "late"}; !slices.Equal(got, want) {
			t.Fatalf("middleware ran in the order %q, want %q", got, want)
		}
	}
}

// The handlers of one event, declared in any order across modules, run
// in the same order in every app: by Go function name.
func TestEventHandlersRunInAFixedOrder(t *testing.T) {
	for range 8 { // fx shuffles value groups: try a few orders
		var out journal
		var bus *mb.Bus
		app := fxtest.New(t,
			mbfx.Module,
			fx.Module("c", mbfx.Handlers(mbfx.Event(out.gamma))),
			fx.Module("a", mbfx.Handlers(mbfx.Event(out.alpha))),
			fx.Module("b", mbfx.Handlers(mbfx.Event(out.beta))),
			fx.Populate(&bus),
		)
		if err := mb.Publish(context.Background(), bus, AccountOpened{Username: "me"}); err != nil {
			t.Fatal(err)
		}
		app.RequireStart().RequireStop()
		if got, want := out.get(), []string{"alpha", "beta", "gamma"}; !slices.Equal(got, want) {
			t.Fatalf("handlers ran in the order %q, want %q", got, want)
		}
	}
}

func (l *journal) alpha(context.Context, AccountOpened) error { l.add("alpha"); return nil }
func (l *journal) beta(context.Context, AccountOpened) error  { l.add("beta"); return nil }
func (l *journal) gamma(context.Context, AccountOpened) error { l.add("gamma"); return nil }

// The recipe of the package documentation's Testing section: a recorder
// attached with fx.Invoke, the broker of production replaced by an
// in-memory one.
func TestRecorderAndReplacedBroker(t *testing.T) {
	production := fx.Module("broker", fx.Provide(func() (mbdriver.Driver, error) {
		return nil, errors.New("no broker in tests")
	}))
	rec := &mbtest.Recorder{}
	var bus *mb.Bus
	var d mbdriver.Driver
	app := fxtest.New(t,
		mbfx.Module, accountsModule, production,
		fx.Supply(&mb.Options{ErrorHandler: rec.ErrorHandler}),
		fx.Replace(fx.Annotate(mbmem.New(nil), fx.As(new(mbdriver.Driver)))),
		fx.Invoke(rec.Attach),
		fx.Populate(&bus, &d),
	)
	app.RequireStart()
	defer app.RequireStop()
	defer d.Close()
	if _, ok := d.(*mbmem.Transport); !ok {
		t.Fatalf("the driver is a %T", d)
	}
	if _, err := mb.Send[Account](t.Context(), bus, OpenAccount{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, rec, AccountOpened{Username: "me"})
	mbtest.AssertNoErrors(t, rec)
}
