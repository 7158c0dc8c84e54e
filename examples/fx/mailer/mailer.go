// Package mailer is the mailer service's module: it consumes the users
// service's UserCreated events from the broker and sends each new user a
// welcome email.
package mailer

import (
	"context"
	"time"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/examples/fx/users"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbfx"
)

// Email is a message to send.
type Email struct {
	To   string
	Text string
}

// Sender sends emails; the program supplies one.
type Sender interface {
	Send(ctx context.Context, e Email) error
}

type welcome struct{ sender Sender }

func (w welcome) sendWelcomeEmail(ctx context.Context, e users.UserCreated) error {
	return w.sender.Send(ctx, Email{To: e.Email, Text: "Welcome " + e.Username + "!"})
}

// Module declares the event handler and the consumer that feeds it: the
// consumer group "mailer" of topic "users.created" on the broker (the
// mbdriver.Driver of the graph). The app's start returns once the group
// exists; its stop lets the email being sent finish.
var Module = fx.Module("mailer",
	fx.Provide(mbfx.AsHandler(func(s Sender) mbfx.Handler {
		return mbfx.Event(welcome{s}.sendWelcomeEmail, mb.WithName("mailer.sendWelcomeEmail"))
	})),
	fx.Provide(mbfx.AsConsumer(func(broker mbdriver.Driver) mbfx.Consumer {
		return mbfx.Consumer{
			Subscriber: broker,
			Registry:   users.Events(),
			Options: &mb.ConsumerOptions{
				Topic:        "users.created",
				Group:        "mailer",
				DeadLetter:   broker,           // users.created.dlq
				DrainTimeout: 10 * time.Second, // within fx's stop timeout (15s)
			},
		}
	})),
)
