package mbsql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbsql"
)

type CreateUser struct{ Name string }

type UserCreated struct{ Name string }

// openSQLite opens a database file in a new temporary directory, and
// returns a function that closes it and removes the directory.
func openSQLite() (*sql.DB, func()) {
	dir, err := os.MkdirTemp("", "mbsql-example")
	if err != nil {
		panic(err)
	}
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "app.db")+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)")
	if err != nil {
		panic(err)
	}
	return db, func() { _ = db.Close(); _ = os.RemoveAll(dir) }
}

// A command handler writes through its unit's transaction; its event is
// handled after the commit, and a failing unit leaves nothing.
func ExampleTx() {
	db, done := openSQLite()
	defer done()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, "CREATE TABLE users (name TEXT PRIMARY KEY)"); err != nil {
		panic(err)
	}
	tr, err := mbsql.New(db, mbsql.SQLite, nil)
	if err != nil {
		panic(err)
	}
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c CreateUser) error {
		tx, err := mbsql.Tx(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO users (name) VALUES (?)", c.Name); err != nil {
			return err
		}
		if c.Name == "mallory" {
			return errors.New("not welcome")
		}
		return mb.Emit(ctx, UserCreated(c))
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		fmt.Println("welcome,", e.Name)
		return nil
	})

	fmt.Println(mb.Exec(ctx, bus, CreateUser{"alice"}))
	fmt.Println(mb.Exec(ctx, bus, CreateUser{"mallory"}))
	var n int
	_ = db.QueryRowContext(ctx, "SELECT count(*) FROM users").Scan(&n)
	fmt.Println(n, "user")
	// Output:
	// welcome, alice
	// <nil>
	// not welcome
	// 1 user
}

type Paid struct{ Order string }

func (Paid) MessageName() string { return "shop.paid" }

// An inbox claims each handling of a message in the handler's own
// transaction: the second delivery of the same message is skipped. (The
// Consumer makes these calls; here they are made by hand.)
func ExampleInbox() {
	db, done := openSQLite()
	defer done()
	ctx := context.Background()
	tr, err := mbsql.New(db, mbsql.SQLite, nil)
	if err != nil {
		panic(err)
	}
	inbox, err := mbsql.NewInbox(tr, &mbsql.InboxOptions{Table: "shop_inbox"})
	if err != nil {
		panic(err)
	}
	if err := inbox.Migrate(ctx); err != nil {
		panic(err)
	}
	bus := mb.New(&mb.Options{Transactor: tr})
	key := mb.InboxKey{Group: "billing", Handler: "billing.on-paid", Source: "/shop", MessageID: "0190c0de-0001"}
	mb.HandleCommandNoResult(bus, func(ctx context.Context, p Paid) error {
		first, err := inbox.Claim(ctx, key)
		if err != nil {
			return err
		}
		fmt.Println("first handling:", first)
		return nil
	})
	for range 2 {
		if err := mb.Exec(ctx, bus, Paid{"o-1"}); err != nil {
			panic(err)
		}
	}
	// Output:
	// first handling: true
	// first handling: false
}

// Invalid arguments are refused with every problem at once.
func ExampleNew_errors() {
	_, err := mbsql.New(nil, mbsql.Dialect(0), nil)
	fmt.Println(errors.Is(err, mb.ErrInvalidArgument))
	fmt.Println(err)
	// Output:
	// true
	// mb: invalid argument: mbsql.New: the *sql.DB is nil; open one with sql.Open
	// mb: invalid argument: mbsql.New: unknown dialect Dialect(0); use mbsql.Postgres, mbsql.MySQL or mbsql.SQLite
}
