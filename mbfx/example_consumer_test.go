package mbfx_test

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbfx"
	"github.com/mb-go/mb/mbmem"
)

// mailbox is a Mailer that hands its emails to the program.
type mailbox chan string

func (m mailbox) Send(ctx context.Context, to, text string) error {
	m <- fmt.Sprintf("to %s: %s", to, text)
	return nil
}

// The mailer as a service of its own: its consumer receives the
// UserCreated events that the users service publishes to the broker, and
// runs MailerModule's handler for them. The app's start returns once the
// consumer has subscribed; its stop drains it.
func ExampleAsConsumer() {
	broker := mbmem.New(nil) // stands in for Redis Streams, say
	defer broker.Close()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/users"})
	mb.RegisterMessage[UserCreated](reg)

	sent := make(mailbox, 1)
	app := fx.New(
		fx.NopLogger,
		mbfx.Module,
		MailerModule,
		fx.Supply(reg, broker, fx.Annotate(sent, fx.As(new(Mailer)))),
		fx.Provide(mbfx.AsConsumer(func(broker *mbmem.Transport, reg *mb.Registry) mbfx.Consumer {
			return mbfx.Consumer{Subscriber: broker, Registry: reg, Options: &mb.ConsumerOptions{
				Topic: "users.created",
				Group: "mailer",
			}}
		})),
	)
	ctx := context.Background()
	if err := app.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	defer app.Stop(ctx)

	// The users service publishes an event.
	pub, err := mb.NewPublisher(broker, reg, nil)
	if err == nil {
		err = pub.Publish(ctx, UserCreated{"me", "me@message.bus"})
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case email := <-sent:
		fmt.Println(email)
	case <-time.After(time.Minute):
		fmt.Println("no email")
	}
	// Output: to me@message.bus: Welcome me!
}
