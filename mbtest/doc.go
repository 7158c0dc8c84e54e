// Package mbtest helps test code that uses the [mb] bus: it records what
// happens on a bus and asserts on it, so that tests of handlers stay short.
//
// # Recording
//
// [NewBus] builds a bus for one test with a [Recorder] attached; [Record]
// attaches one to a bus built elsewhere. The recorder sees every handler
// invocation ([Recorder.Handled], [Recorder.Commands], [Recorder.Queries]),
// with what the handler returned and whether its unit of work committed,
// and every dispatched event with its id, correlation id and causation id
// ([Recorder.Events]). [EventsOf] and [CommandsOf] return the typed values.
// A Recorder is an [mb.Observer]: it adds no handler or middleware, so the
// bus behaves as it would without it. Dispatch finishes before mb.Send and
// mb.Publish return, so everything is recorded by the time they do.
//
// # Assertions
//
// [AssertEvents], [AssertEventEmitted], [AssertNoEvents], [AssertNoErrors]
// and [AssertHandled] take a [testing.TB], report failures with t.Errorf
// showing what was expected next to what was recorded, and return whether
// they passed.
//
// # Errors without a caller
//
// A failing event handler does not fail the mb.Send that emitted its event:
// mb reports the error to [mb.Options.ErrorHandler]. [NewBus] sends those
// errors to [Recorder.ErrorHandler] and fails the test at its end if it
// never read them with [Recorder.Errors] or [AssertNoErrors]. With a bus
// built elsewhere, pass the method value rec.ErrorHandler as its
// ErrorHandler and attach rec with [Recorder.Attach].
//
// # Consumers
//
// [RunConsumer] runs an [mb.Consumer] for the length of a test and returns
// the function that stops it (draining it) and gives Run's error.
//
// # Several services in one test
//
// [Harness] runs the services of a flow over one in-memory broker
// ([mbmem.Transport]): buses built with [Harness.Bus], publishers with
// [Harness.Publisher], consumers run with [Harness.Consume], outboxes
// ([Harness.Outbox]) and the relays that empty them ([Harness.Relay]).
// [Harness.Do] runs a step of the test and returns once everything it
// caused has finished — event cascades, published messages consumed by
// every group, outbox messages relayed and handled — so that the test
// asserts on its recorders with no sleeping and no polling. The harness
// knows what is in flight from the buses' observers, the broker's pending
// counts and the outboxes' due messages, and wakes when any of them
// changes; [HarnessOptions.Timeout] bounds a hung step.
//
// # Transactions
//
// [Transactor] is an in-memory [mb.Transactor] that records begin, commit,
// rollback and savepoint calls, and can be told to fail, to test what a
// unit of work does with a transaction.
//
// # Example
//
//	func TestCreateUser(t *testing.T) {
//		bus, rec := mbtest.NewBus(t)
//		if err := bus.Install(users.Register); err != nil {
//			t.Fatal(err)
//		}
//
//		_, err := mb.Send[users.User](t.Context(), bus, users.CreateUser{Username: "me"})
//		if err != nil {
//			t.Fatal(err)
//		}
//		mbtest.AssertEvents(t, rec, users.UserCreated{Username: "me"})
//		mbtest.AssertHandled(t, rec, "sendWelcomeEmail")
//		mbtest.AssertNoErrors(t, rec)
//	}
package mbtest
