// Package users is the users service's module: the CreateUser command,
// its store, and the UserCreated event that other services consume.
package users

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

// UserCreated is published to other services, on topic "users.created".
type UserCreated struct {
	Username string
	Email    string
}

func (UserCreated) MessageName() string { return "users.created" }

// Events returns a registry of the events the users service publishes,
// for its publisher and for the consumers of other services.
func Events() *mb.Registry {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/users"})
	mb.RegisterMessage[UserCreated](reg)
	return reg
}

// Store keeps the users; the command handler needs it.
type Store struct {
	mu    sync.Mutex
	users map[string]User
}

func NewStore() *Store { return &Store{users: map[string]User{}} }

// CreateUser stores the user and emits UserCreated, which is dispatched
// once the unit of work commits.
func (s *Store) CreateUser(ctx context.Context, cmd CreateUser) (User, error) {
	user := User(cmd)
	s.mu.Lock()
	s.users[user.Username] = user
	s.mu.Unlock()
	return user, mb.Emit(ctx, UserCreated(cmd))
}

// syncIntegration is an in-process subscriber of the users service.
func syncIntegration(ctx context.Context, e UserCreated) error {
	fmt.Printf("Synchronizing user: '%s'\n", e.Username)
	return nil
}

// Module declares the users service's handlers next to the store they
// need.
var Module = fx.Module("users",
	fx.Provide(NewStore),
	fx.Provide(mbfx.AsHandler(func(s *Store) []mbfx.Handler {
		return []mbfx.Handler{
			mbfx.Command(s.CreateUser),
			mbfx.Event(syncIntegration),
		}
	})),
)
