package mbfx_test

import (
	"context"
	"fmt"
	"sync"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbfx"
)

type CreateUser struct {
	Username string
	Email    string
}

type User struct {
	Username string
	Email    string
}

type UserCreated struct {
	Username string
	Email    string
}

// MessageName is the event's name on the wire, for the consumers of
// other services.
func (UserCreated) MessageName() string { return "users.created" }

// Users is the users module's store: a dependency of its handler.
type Users struct {
	mu sync.Mutex
	db []User
}

func NewUsers() *Users { return &Users{} }

func (u *Users) CreateUser(ctx context.Context, cmd CreateUser) (User, error) {
	user := User(cmd)
	u.mu.Lock()
	u.db = append(u.db, user)
	u.mu.Unlock()
	return user, mb.Emit(ctx, UserCreated(cmd))
}

// UsersModule declares the command handler where its store is.
var UsersModule = fx.Module("users",
	fx.Provide(NewUsers),
	fx.Provide(mbfx.AsHandler(func(u *Users) mbfx.Handler {
		return mbfx.Command(u.CreateUser)
	})),
)

// Mailer sends emails; the app supplies one.
type Mailer interface {
	Send(ctx context.Context, to, text string) error
}

// Welcome is the mailer module's event handler and what it needs.
type Welcome struct{ Mailer Mailer }

func (w Welcome) sendWelcomeEmail(ctx context.Context, e UserCreated) error {
	return w.Mailer.Send(ctx, e.Email, "Welcome "+e.Username+"!")
}

// MailerModule subscribes to UserCreated.
var MailerModule = fx.Module("mailer",
	fx.Provide(mbfx.AsHandler(func(m Mailer) mbfx.Handler {
		return mbfx.Event(Welcome{m}.sendWelcomeEmail)
	})),
)

func syncIntegration(ctx context.Context, e UserCreated) error {
	fmt.Printf("Synchronizing user: '%s'\n", e.Username)
	return nil
}

type console struct{}

func (console) Send(ctx context.Context, to, text string) error {
	fmt.Printf("Sending welcome email: '%s'\n", text)
	return nil
}

// The seed use case, declared across fx modules: each module declares
// its handlers next to what they need, and mbfx.Module registers them all
// on the app's bus. The handlers of one event run in the order of their
// Go names (mbfx_test.Welcome.sendWelcomeEmail, then
// mbfx_test.syncIntegration) whatever the order of the modules;
// mb.WithPriority orders them otherwise.
func Example() {
	var bus *mb.Bus
	app := fx.New(
		fx.NopLogger,
		mbfx.Module,
		UsersModule,
		MailerModule,
		mbfx.Handlers(mbfx.Event(syncIntegration)),
		mbfx.Use(mbfx.Middleware{Name: "recover", Middleware: mb.Recover()}),
		fx.Supply(fx.Annotate(console{}, fx.As(new(Mailer)))),
		fx.Populate(&bus),
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer app.Stop(ctx)

	user, err := mb.Send[User](ctx, bus, CreateUser{"me", "me@message.bus"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("User is", user)
	// Output:
	// Sending welcome email: 'Welcome me!'
	// Synchronizing user: 'me'
	// User is {me me@message.bus}
}
