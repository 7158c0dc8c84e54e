package mb_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mb-go/mb"
)

// Two event handlers that one event can reach must not share a name: the
// name keys inboxes, logs and assertions, and with an inbox the second
// handler would never run.
func TestSubscribeRefusesDuplicateHandlerName(t *testing.T) {
	t.Parallel()
	a := func(ctx context.Context, e AccountCreated) error { return nil }
	b := func(ctx context.Context, e AccountCreated) error { return nil }
	viaIface := func(ctx context.Context, e Labeled) error { return nil }
	viaAny := func(ctx context.Context, e any) error { return nil }
	note := func(ctx context.Context, e Note) error { return nil }

	bus := mb.New()
	mb.Subscribe(bus, a, mb.WithName("welcome"))
	err := panicErr(t, mustPanic(t, func() { mb.Subscribe(bus, b, mb.WithName("welcome")) }), mb.ErrDuplicateHandler)
	for _, want := range []string{`"welcome"`, "mb_test.AccountCreated"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	wantErr(t, mb.SubscribeSafely(bus, viaIface, mb.WithName("welcome")), mb.ErrDuplicateHandler)
	wantErr(t, mb.SubscribeSafely(bus, viaAny, mb.WithName("welcome")), mb.ErrDuplicateHandler)

	// The same name for events no event type can reach both of is fine.
	noErr(t, mb.SubscribeSafely(bus, note, mb.WithName("welcome")))
	// The very same function subscribed again is not a new handler.
	noErr(t, mb.SubscribeSafely(bus, a, mb.WithName("welcome")))

	// A refused registration leaves the bus as it was.
	ran := 0
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { ran++; return nil }, mb.WithName("count"))
	noErr(t, mb.Publish(context.Background(), bus, AccountCreated{"x"}))
	if ran != 1 {
		t.Fatalf("ran %d", ran)
	}
}

// Two closures of one function literal get the same default name, so the
// second subscription of such a closure to the same event is refused.
func TestSubscribeRefusesClosuresOfOneLiteral(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var errs []error
	for i := range 2 {
		errs = append(errs, mb.SubscribeSafely(bus, func(ctx context.Context, e Note) error { _ = i; return nil }))
	}
	noErr(t, errs[0])
	wantErr(t, errs[1], mb.ErrDuplicateHandler)
	if !strings.Contains(errs[1].Error(), "WithName") {
		t.Errorf("error %q does not say how to fix it", errs[1])
	}
	if errors.Is(errs[1], mb.ErrInvalidHandler) {
		t.Error("a duplicate is not an invalid handler")
	}
}

// A handler reaches its bus through its context.
func TestBusFrom(t *testing.T) {
	t.Parallel()
	if mb.BusFrom(context.Background()) != nil {
		t.Fatal("BusFrom outside a handler is not nil")
	}
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, createAccount)
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if mb.BusFrom(ctx) != bus {
			t.Error("BusFrom in a command handler is not its bus")
		}
		_, err := mb.Send[Account](ctx, mb.BusFrom(ctx), CreateAccount{c.What})
		return err
	})
	var seen *mb.Bus
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { seen = mb.BusFrom(ctx); return nil })
	mb.HandleQuery(bus, func(ctx context.Context, q GetAccount) (*mb.Bus, error) { return mb.BusFrom(ctx), nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"nested"}))
	if seen != bus {
		t.Fatal("BusFrom in an event handler is not its bus")
	}
	if got, err := mb.Query[*mb.Bus](context.Background(), bus, GetAccount{}); err != nil || got != bus {
		t.Fatalf("BusFrom in a query handler = %p, %v", got, err)
	}
	_, err := mb.Send[Account](context.Background(), mb.BusFrom(context.Background()), CreateAccount{})
	wantErr(t, err, mb.ErrInvalidArgument)
}

type nameSvc struct{}

func (nameSvc) Handle(ctx context.Context, e Note) error { return nil }

func (*nameSvc) Create(ctx context.Context, c CreateAccount) (Account, error) { return Account(c), nil }

// Method values are named after the method, without the compiler's "-fm".
func TestDefaultNameOfMethodValue(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	var names []string
	bus.Use(func(next mb.Handler) mb.Handler {
		return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
			names = append(names, msg.Handler)
			return next.Handle(ctx, msg)
		})
	})
	svc := &nameSvc{}
	mb.Subscribe(bus, nameSvc{}.Handle)
	mb.HandleCommand(bus, svc.Create)
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	noErr(t, err)
	wantSeq(t, names, []string{"mb_test.nameSvc.Handle", "mb_test.(*nameSvc).Create"})
}
