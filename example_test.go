package mb_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/mb-go/mb"
)

type CreateUser struct {
	Username string
	Email    string
}

type User struct {
	Username string
	Email    string
}

type UserCreated struct{ Username string }

// DedupKey makes two UserCreated events for one user in one unit of work
// count once.
func (e UserCreated) DedupKey() string { return e.Username }

func (e UserCreated) AuditText() string { return "user " + e.Username + " created" }

type UserDeleted struct{ Username string }

func (e UserDeleted) AuditText() string { return "user " + e.Username + " deleted" }

// Auditable is implemented by the events that go to the audit log.
type Auditable interface{ AuditText() string }

type DeleteUser struct{ Username string }

type GetUser struct{ Username string }

type ListUsers struct{ Limit int }

func ExampleSend() {
	bus := mb.New()
	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
		return User(cmd), nil
	})

	user, err := mb.Send[User](context.Background(), bus, CreateUser{"ada", "ada@example.com"})
	fmt.Println(user, err)

	// A command nobody handles.
	_, err = mb.Send[User](context.Background(), bus, DeleteUser{"ada"})
	fmt.Println(errors.Is(err, mb.ErrNoHandler))

	// Asking for the wrong result type is an error, not a panic.
	_, err = mb.Send[string](context.Background(), bus, CreateUser{"bob", "bob@example.com"})
	fmt.Println(errors.Is(err, mb.ErrResultType))
	// Output:
	// {ada ada@example.com} <nil>
	// true
	// true
}

// A handler subscribed to an interface receives every event implementing
// it; one subscribed to any receives every event.
func ExampleSubscribe() {
	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("welcome", e.Username)
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e Auditable) error {
		fmt.Println("audit:", e.AuditText())
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e any) error {
		fmt.Printf("seen %T\n", e)
		return nil
	})

	_ = mb.Publish(context.Background(), bus, UserCreated{"ada"}, UserDeleted{"bob"})
	// Output:
	// welcome ada
	// audit: user ada created
	// seen mb_test.UserCreated
	// audit: user bob deleted
	// seen mb_test.UserDeleted
}

// Events are dispatched only when the handler succeeds; a failing handler's
// events are discarded with its unit of work.
func ExampleEmit() {
	bus := mb.New()
	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
		if err := mb.Emit(ctx, UserCreated{cmd.Username}); err != nil {
			return User{}, err
		}
		if cmd.Email == "" {
			return User{}, errors.New("email required")
		}
		return User(cmd), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("welcome", e.Username)
		return nil
	})

	_, err := mb.Send[User](context.Background(), bus, CreateUser{"ada", "ada@example.com"})
	fmt.Println("ada:", err)
	_, err = mb.Send[User](context.Background(), bus, CreateUser{"bob", ""})
	fmt.Println("bob:", err)

	// Outside a handler there is no unit of work to record events in.
	err = mb.Emit(context.Background(), UserCreated{"eve"})
	fmt.Println(errors.Is(err, mb.ErrNoUnitOfWork))
	// Output:
	// welcome ada
	// ada: <nil>
	// bob: email required
	// true
}

func ExampleQuery() {
	users := map[string]User{"ada": {"ada", "ada@example.com"}}
	bus := mb.New()
	mb.HandleQuery(bus, func(ctx context.Context, q GetUser) (User, error) {
		u, ok := users[q.Username]
		if !ok {
			return User{}, fmt.Errorf("user %q not found", q.Username)
		}
		return u, nil
	})

	u, err := mb.Query[User](context.Background(), bus, GetUser{"ada"})
	fmt.Println(u.Email, err)
	_, err = mb.Query[User](context.Background(), bus, GetUser{"bob"})
	fmt.Println(err)
	// Output:
	// ada@example.com <nil>
	// user "bob" not found
}

func ExampleStream() {
	bus := mb.New()
	mb.HandleStream(bus, func(ctx context.Context, q ListUsers) iter.Seq2[User, error] {
		return func(yield func(User, error) bool) {
			for _, name := range []string{"ada", "bob", "eve"}[:q.Limit] {
				if !yield(User{Username: name}, nil) {
					return // the consumer stopped early
				}
			}
		}
	})

	for u, err := range mb.Stream[User](context.Background(), bus, ListUsers{Limit: 3}) {
		if err != nil {
			fmt.Println("error:", err)
			break
		}
		fmt.Println(u.Username)
		if u.Username == "bob" {
			break
		}
	}
	// Output:
	// ada
	// bob
}

// Publish dispatches events from outside any handler at once, cascades
// included.
func ExamplePublish() {
	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e UserDeleted) error {
		fmt.Println("deleted", e.Username)
		// Inside a handler, events are recorded and dispatched after it.
		return mb.Publish(ctx, bus, UserCreated{"restored-" + e.Username})
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("created", e.Username)
		return nil
	})

	err := mb.Publish(context.Background(), bus, UserDeleted{"ada"}, UserDeleted{"bob"})
	fmt.Println("done:", err)
	// Output:
	// deleted ada
	// deleted bob
	// created restored-ada
	// created restored-bob
	// done: <nil>
}

func ExampleRetry() {
	bus := mb.New(&mb.Options{
		Middleware: []mb.Middleware{
			mb.Retry(&mb.RetryOptions{MaxAttempts: 5, Backoff: mb.Backoff{Min: time.Millisecond}}),
		},
	})
	attempts := 0
	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
		attempts++
		// Events of failed attempts are discarded.
		if err := mb.Emit(ctx, UserCreated{fmt.Sprint(cmd.Username, " #", attempts)}); err != nil {
			return User{}, err
		}
		if attempts < 3 {
			return User{}, mb.Retryable(errors.New("database busy"))
		}
		return User(cmd), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("created", e.Username)
		return nil
	})

	u, err := mb.Send[User](context.Background(), bus, CreateUser{"ada", "ada@example.com"})
	fmt.Println(u.Username, err, "after", attempts, "attempts")
	// Output:
	// created ada #3
	// ada <nil> after 3 attempts
}

func ExampleBus_Install() {
	// Each package exposes one function that registers its handlers.
	usersModule := func(bus *mb.Bus) error {
		return errors.Join(
			mb.HandleCommandSafely(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
				return User(cmd), mb.Emit(ctx, UserCreated{cmd.Username})
			}),
			mb.HandleQuerySafely(bus, func(ctx context.Context, q GetUser) (User, error) {
				return User{Username: q.Username}, nil
			}),
		)
	}
	mailModule := func(bus *mb.Bus) error {
		return mb.SubscribeSafely(bus, func(ctx context.Context, e UserCreated) error {
			fmt.Println("welcome mail to", e.Username)
			return nil
		})
	}

	bus := mb.New()
	if err := bus.Install(usersModule, mailModule); err != nil {
		fmt.Println(err)
		return
	}
	_, err := mb.Send[User](context.Background(), bus, CreateUser{"ada", "ada@example.com"})
	fmt.Println(err)

	// Installing a module twice reports the duplicates.
	err = bus.Install(usersModule)
	fmt.Println(errors.Is(err, mb.ErrDuplicateHandler))
	// Output:
	// welcome mail to ada
	// <nil>
	// true
}

func ExampleMetadataFrom() {
	bus := mb.New()
	var commandID string
	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
		md, _ := mb.MetadataFrom(ctx)
		commandID = md.ID
		fmt.Println(md.Kind, md.Name, "correlation:", md.CorrelationID)
		return User(cmd), mb.Emit(ctx, UserCreated{cmd.Username})
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		md, _ := mb.MetadataFrom(ctx)
		fmt.Println(md.Kind, md.Name)
		fmt.Println("caused by the command:", md.CausationID == commandID)
		fmt.Println("correlation:", md.CorrelationID)
		return nil
	})

	ctx := mb.WithCorrelationID(context.Background(), "request-42")
	_, _ = mb.Send[User](ctx, bus, CreateUser{"ada", "ada@example.com"})

	_, ok := mb.MetadataFrom(context.Background())
	fmt.Println("outside a handler:", ok)
	// Output:
	// command mb_test.CreateUser correlation: request-42
	// event mb_test.UserCreated
	// caused by the command: true
	// correlation: request-42
	// outside a handler: false
}

// Before-commit hooks run after the handler, inside the transaction;
// after-commit hooks once the events have been handled.
func ExampleBeforeCommit() {
	bus := mb.New()
	mb.HandleCommand(bus, func(ctx context.Context, cmd CreateUser) (User, error) {
		fmt.Println("handler")
		_ = mb.BeforeCommit(ctx, func(ctx context.Context) error {
			fmt.Println("before commit: write the outbox")
			return nil
		})
		_ = mb.AfterCommit(ctx, func(ctx context.Context) {
			fmt.Println("after commit")
		})
		return User(cmd), mb.Emit(ctx, UserCreated{cmd.Username})
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("event handler")
		return nil
	})

	_, err := mb.Send[User](context.Background(), bus, CreateUser{"ada", "ada@example.com"})
	fmt.Println(err)
	// Output:
	// handler
	// before commit: write the outbox
	// event handler
	// after commit
	// <nil>
}

type LogIn struct{ Username, Password string }

// LoginRejected is recorded even though the command that emits it fails.
type LoginRejected struct{ Username string }

// DispatchOnRollback makes the event outlive the rollback of its unit.
func (LoginRejected) DispatchOnRollback() bool { return true }

type SessionStarted struct{ Username string }

var errWrongPassword = errors.New("wrong password")

// Events whose type has a DispatchOnRollback method returning true are
// dispatched even when their unit of work rolls back (an audit entry, a
// failed-login counter); the others are discarded.
func ExampleEmit_dispatchOnRollback() {
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c LogIn) error {
		if c.Password != "secret" {
			if err := mb.Emit(ctx, LoginRejected{c.Username}); err != nil {
				return err
			}
			return errWrongPassword
		}
		return mb.Emit(ctx, SessionStarted{c.Username})
	})
	mb.Subscribe(bus, func(ctx context.Context, e LoginRejected) error {
		fmt.Println("count failed login of", e.Username)
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e SessionStarted) error {
		fmt.Println("session for", e.Username)
		return nil
	})

	err := mb.Exec(context.Background(), bus, LogIn{"me", "guess"})
	fmt.Println("error:", err)
	err = mb.Exec(context.Background(), bus, LogIn{"me", "secret"})
	fmt.Println("error:", err)
	// Output:
	// count failed login of me
	// error: wrong password
	// session for me
	// error: <nil>
}

// A Clone shares the original's handlers but not what is registered on
// it afterwards: a test adds a handler without touching the shared bus.
func ExampleBus_Clone() {
	bus := mb.New()
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("welcome", e.Username)
		return nil
	}, mb.WithName("welcome"))

	testBus := bus.Clone()
	mb.Subscribe(testBus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("test saw", e.Username)
		return nil
	}, mb.WithName("spy"))

	_ = mb.Publish(context.Background(), testBus, UserCreated{"me"})
	_ = mb.Publish(context.Background(), bus, UserCreated{"you"})
	// Output:
	// welcome me
	// test saw me
	// welcome you
}
