// Command fx is the seed use case as two services wired with uber/fx and
// mbfx: the users service handles CreateUser and publishes UserCreated to
// a broker; the mailer service consumes it and sends a welcome email.
// Each service is an fx app made of modules that declare their own
// handlers; here both run in one process over an in-memory broker, where
// production would run two processes over Redis Streams.
package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/examples/fx/mailer"
	"github.com/mb-go/mb/examples/fx/users"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbfx"
	"github.com/mb-go/mb/mbmem"
)

// platform is what every service of the program shares: the bus
// (mbfx.Module), the broker and the middleware.
func platform(broker mbdriver.Driver) fx.Option {
	return fx.Options(
		fx.NopLogger,
		mbfx.Module,
		fx.Supply(fx.Annotate(broker, fx.As(new(mbdriver.Driver)))),
		mbfx.Use(mbfx.Middleware{Name: "recover", Middleware: mb.Recover()}),
	)
}

// forward makes the users service's bus publish its events to the broker
// once their unit of work has committed.
func forward(broker mbdriver.Driver) (*mb.Options, error) {
	pub, err := mb.NewPublisher(broker, users.Events(), nil)
	return &mb.Options{Forward: pub}, err
}

// inbox is the mailer's Sender in this program: it hands the emails to
// main, which prints them.
type inbox chan mailer.Email

func (in inbox) Send(ctx context.Context, e mailer.Email) error {
	in <- e
	return nil
}

func main() {
	broker := mbmem.New(nil)
	defer broker.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	emails := make(inbox, 1)
	mailerService := fx.New(
		platform(broker),
		mailer.Module,
		fx.Supply(fx.Annotate(emails, fx.As(new(mailer.Sender)))),
	)
	var bus *mb.Bus
	usersService := fx.New(
		platform(broker),
		users.Module,
		fx.Provide(forward),
		fx.Populate(&bus),
	)
	for _, app := range []*fx.App{mailerService, usersService} {
		if err := app.Start(ctx); err != nil {
			log.Fatal(err)
		}
	}

	user, err := mb.Send[users.User](ctx, bus, users.CreateUser{Username: "me", Email: "me@message.bus"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("User is", user)
	select {
	case e := <-emails:
		fmt.Printf("Welcome email to %s: '%s'\n", e.To, e.Text)
	case <-ctx.Done():
		log.Fatal("no welcome email")
	}

	// Each service drains as it stops: the mailer's consumer finishes
	// the emails it has in hand.
	for _, app := range []*fx.App{usersService, mailerService} {
		if err := app.Stop(ctx); err != nil {
			log.Fatal(err)
		}
	}
}
