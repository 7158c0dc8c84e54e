package mbpgx_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbpgx"
)

type CreateUser struct{ Name string }

type UserCreated struct{ Name string }

// A command handler writes through its unit's transaction; the event is
// handled after the commit. (It needs a PostgreSQL server, so it is only
// compiled.)
func ExampleTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@127.0.0.1/app")
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	tr, err := mbpgx.New(pool, nil)
	if err != nil {
		panic(err)
	}
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c CreateUser) error {
		tx, err := mbpgx.Tx(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "INSERT INTO users (name) VALUES ($1)", c.Name); err != nil {
			return err
		}
		return mb.Emit(ctx, UserCreated(c))
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("welcome,", e.Name)
		return nil
	})
	if err := mb.Exec(ctx, bus, CreateUser{"alice"}); err != nil {
		panic(err)
	}
}

// Invalid arguments are refused with every problem at once.
func ExampleNew_errors() {
	_, err := mbpgx.New(nil, &mbpgx.Options{Isolation: "snapshot"})
	fmt.Println(errors.Is(err, mb.ErrInvalidArgument))
	fmt.Println(err)
	// Output:
	// true
	// mb: invalid argument: mbpgx.New: the pool is nil; create one with pgxpool.New
	// mb: invalid argument: mbpgx: Options.Isolation is "snapshot"; use pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable or pgx.ReadUncommitted, or leave it empty for the default
}
