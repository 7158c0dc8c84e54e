// Command quickstart is the seed use case of mb: a command that creates a
// user and emits an event, handled by two subscribers after the unit of work
// commits.
package main

import (
	"context"
	"fmt"
	"log"

	"github.com/mb-go/mb"
)

type User struct {
	Username string
	Email    string
}

var usersDB []User

type CreateUser struct {
	Username string
	Email    string
}

type UserCreated struct {
	Username string
	Email    string
}

// DedupKey is optional: two UserCreated events with the same key in one unit
// of work are delivered once.
func (e UserCreated) DedupKey() string { return e.Username }

func createUser(ctx context.Context, cmd CreateUser) (User, error) {
	user := User{Username: cmd.Username, Email: cmd.Email}
	usersDB = append(usersDB, user)
	if err := mb.Emit(ctx, UserCreated{Username: cmd.Username, Email: cmd.Email}); err != nil {
		return User{}, err
	}
	return user, nil
}

func sendWelcomeEmail(ctx context.Context, e UserCreated) error {
	fmt.Printf("Sending welcome email: 'Welcome %s!'\n", e.Username)
	return nil
}

func syncIntegration(ctx context.Context, e UserCreated) error {
	fmt.Printf("Synchronizing user: '%s'\n", e.Username)
	return nil
}

func main() {
	bus := mb.New()
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)
	mb.Subscribe(bus, syncIntegration)

	user, err := mb.Send[User](context.Background(), bus, CreateUser{"me", "me@message.bus"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("User is", user)
}
