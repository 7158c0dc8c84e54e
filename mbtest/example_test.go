package mbtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// A test of the seed's createUser command and its sendWelcomeEmail event
// handler. In a real test t is the *testing.T of a func TestCreateUser.
func Example() {
	t := &fakeT{out: os.Stdout} // stands in for the test's *testing.T
	defer t.finish()

	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)

	user, err := mb.Send[User](context.Background(), bus, CreateUser{Username: "me", Email: "me@message.bus"})
	if err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, rec,
		UserCreated{Username: "me", Email: "me@message.bus"},
		WelcomeEmailSent{Username: "me"},
	)
	mbtest.AssertHandled(t, rec, "sendWelcomeEmail")
	mbtest.AssertNoErrors(t, rec)
	fmt.Println("created", user.Username, "- failed:", t.Failed())
	// Output:
	// created me - failed: false
}

// A failed assertion shows what was expected next to what was recorded.
func ExampleAssertEvents() {
	t := &fakeT{out: os.Stdout} // stands in for the test's *testing.T
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)

	_, _ = mb.Send[User](context.Background(), bus, CreateUser{Username: "me", Email: "me@message.bus"})
	mbtest.AssertEvents(t, rec,
		UserCreated{Username: "me", Email: "me@message.bus"},
		WelcomeEmailSent{Username: "me"}, // no handler sends it on this bus
	)
	// Output:
	// FAIL: mbtest.AssertEvents: got 1 event, want 2 (-want +got):
	//       mbtest_test.UserCreated{Username:me Email:me@message.bus}
	//     - mbtest_test.WelcomeEmailSent{Username:me}
}

// AssertEventEmitted returns the one event of a type, to check its fields.
func ExampleAssertEventEmitted() {
	t := &fakeT{out: os.Stdout} // stands in for the test's *testing.T
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)

	_, _ = mb.Send[User](context.Background(), bus, CreateUser{Username: "me", Email: "me@message.bus"})
	created := mbtest.AssertEventEmitted[UserCreated](t, rec)
	fmt.Println(created.Email)
	// Output:
	// me@message.bus
}

// A failing event handler does not fail Send. NewBus catches what it
// reports to the bus's ErrorHandler: the test reads it with rec.Errors(),
// or fails when it ends.
func ExampleNewBus() {
	t := &fakeT{out: os.Stdout} // stands in for the test's *testing.T
	bus, rec := mbtest.NewBus(t)
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		return errors.New("smtp down")
	}, mb.WithName("sendWelcomeEmail"))

	_, err := mb.Send[User](context.Background(), bus, CreateUser{Username: "me"})
	fmt.Println("Send:", err)
	for _, err := range rec.Errors() {
		fmt.Println("reported:", err)
	}
	t.finish() // the end of the test: nothing left unread
	fmt.Println("failed:", t.Failed())
	// Output:
	// Send: <nil>
	// reported: mb: event mbtest_test.UserCreated: handler sendWelcomeEmail: smtp down
	// failed: false
}

// Events carry their metadata: which message caused them and the flow they
// belong to.
func ExampleRecorder_Events() {
	bus := mb.New()
	mb.HandleCommand(bus, createUser)
	mb.Subscribe(bus, sendWelcomeEmail)
	rec := mbtest.Record(bus)

	ctx := mb.WithCorrelationID(context.Background(), "request-42")
	_, _ = mb.Send[User](ctx, bus, CreateUser{Username: "me"})

	names := map[string]string{} // message id -> message name
	for _, c := range rec.Commands() {
		names[c.ID] = c.Name
	}
	for _, e := range rec.Events() {
		names[e.ID] = e.Name
		fmt.Printf("%s: caused by %s, flow %s\n", e.Name, names[e.CausationID], e.CorrelationID)
	}
	// Output:
	// mbtest_test.UserCreated: caused by mbtest_test.CreateUser, flow request-42
	// mbtest_test.WelcomeEmailSent: caused by mbtest_test.UserCreated, flow request-42
}

// The Transactor shows what a unit of work does with its transaction: a
// nested Send sets a savepoint and rolls back to it when it fails.
func ExampleTransactor() {
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr})
	registerNested(bus) // Outer sends Inner and carries on if it fails

	res, err := mb.Send[string](context.Background(), bus, Outer{FailInner: true})
	fmt.Println(res, err)
	for _, call := range tr.Calls() {
		fmt.Println(call)
	}
	// Output:
	// inner failed <nil>
	// tx1 begin
	// tx1 savepoint mb_sp_1
	// tx1 rollback to mb_sp_1
	// tx1 commit
}
