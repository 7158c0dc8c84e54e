package mbtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// The messages of two services: orders places orders and publishes
// OrderPlaced; shipping consumes it, books a shipment and tells the
// customer.
type (
	PlaceOrder     struct{ Order string }
	BookShipment   struct{ Order string }
	OrderPlaced    struct{ Order string }
	ShipmentBooked struct{ Order string }
)

func (OrderPlaced) MessageName() string { return "orders.placed" }

func harnessRegistry() *mb.Registry {
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/test"})
	mb.RegisterMessage[OrderPlaced](reg)
	return reg
}

func installOrders(bus *mb.Bus) {
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c PlaceOrder) error {
		if c.Order == "" {
			return errors.New("no order")
		}
		return mb.Emit(ctx, OrderPlaced(c))
	})
}

// installShipping installs shipping's handlers; each booking waits for
// gate to be closed (nil: does not wait).
func installShipping(bus *mb.Bus, gate <-chan struct{}, notified chan<- string) {
	mb.Subscribe(bus, func(ctx context.Context, e OrderPlaced) error {
		return mb.Exec(ctx, bus, BookShipment(e))
	})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c BookShipment) error {
		if gate != nil {
			<-gate
		}
		return mb.Emit(ctx, ShipmentBooked(c))
	})
	mb.Subscribe(bus, func(_ context.Context, e ShipmentBooked) error {
		if notified != nil {
			notified <- e.Order
		}
		return nil
	})
}

// Do returns only when the consumer of the other service has handled the
// published event and the cascade it caused, however long the handling
// takes: the booking waits for a gate opened after the step returned.
func TestHarnessWaitsForConsumers(t *testing.T) {
	h := mbtest.NewHarness(t)
	reg := harnessRegistry()
	orders, ordersRec := h.Bus(&mb.Options{Forward: h.Publisher(reg)})
	installOrders(orders)
	shipping, shippingRec := h.Bus()
	gate := make(chan struct{})
	notified := make(chan string, 10)
	installShipping(shipping, gate, notified)
	h.Consume(shipping, reg, &mb.ConsumerOptions{Topic: "orders.placed", Group: "shipping"})

	err := h.Do(func(ctx context.Context) error {
		go func() {
			time.Sleep(20 * time.Millisecond) // lets Wait start first; not needed for correctness
			close(gate)
		}()
		return mb.Exec(ctx, orders, PlaceOrder{"o-1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Read without waiting: Do returned after the notification.
	select {
	case got := <-notified:
		if got != "o-1" {
			t.Fatalf("notified %q", got)
		}
	default:
		t.Fatal("Do returned before shipping notified the customer")
	}
	mbtest.AssertEvents(t, ordersRec, OrderPlaced{"o-1"})
	mbtest.AssertEvents(t, shippingRec, OrderPlaced{"o-1"}, ShipmentBooked{"o-1"})
	mbtest.AssertHandled(t, shippingRec, "installShipping.func3")
	mbtest.AssertNoErrors(t, shippingRec)

	// A step that fails returns its error; nothing was published.
	if err := h.Do(func(ctx context.Context) error { return mb.Exec(ctx, orders, PlaceOrder{}) }); err == nil {
		t.Fatal("Do of a failing command returned nil")
	}
	if n := len(mbtest.EventsOf[ShipmentBooked](shippingRec)); n != 1 {
		t.Fatalf("shipping booked %d shipments, want 1", n)
	}
}

// Events written to an outbox are waited for until the relay published
// them and the consumer handled them.
func TestHarnessWaitsForOutbox(t *testing.T) {
	h := mbtest.NewHarness(t)
	reg := harnessRegistry()
	store := h.Outbox()
	ob, err := mb.NewOutbox(store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	orders, _ := h.Bus(&mb.Options{Forward: ob})
	installOrders(orders)
	shipping, shippingRec := h.Bus()
	installShipping(shipping, nil, nil)
	h.Consume(shipping, reg, &mb.ConsumerOptions{Topic: "orders.placed", Group: "shipping"})
	// A long poll: the relay is woken by the outbox after each commit.
	h.Relay(store, nil, &mb.RelayOptions{Outbox: ob, Poll: time.Hour})

	for i := range 5 {
		if err := h.Do(func(ctx context.Context) error {
			return mb.Exec(ctx, orders, PlaceOrder{fmt.Sprint("o-", i)})
		}); err != nil {
			t.Fatal(err)
		}
		if n := len(mbtest.EventsOf[ShipmentBooked](shippingRec)); n != i+1 {
			t.Fatalf("after order %d shipping booked %d shipments", i, n)
		}
	}
	if st, _ := store.Stats(context.Background()); st.Pending != 0 {
		t.Fatalf("outbox: %+v", st)
	}
}

// A message written to be published later is not waited for.
func TestHarnessDoesNotWaitForLaterMessages(t *testing.T) {
	h := mbtest.NewHarness(t)
	reg := harnessRegistry()
	store := h.Outbox()
	ob, err := mb.NewOutbox(store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	bus, rec := h.Bus()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c PlaceOrder) error {
		return ob.PublishAt(ctx, time.Now().Add(time.Hour), OrderPlaced(c))
	})
	h.Relay(store, nil, &mb.RelayOptions{Outbox: ob, Poll: time.Hour})
	if err := h.Do(func(ctx context.Context) error { return mb.Exec(ctx, bus, PlaceOrder{"later"}) }); err != nil {
		t.Fatal(err)
	}
	if due, waiting := store.Due(); due != 0 || waiting != 1 {
		t.Fatalf("outbox: %d due, %d waiting; want 0 and 1", due, waiting)
	}
	mbtest.AssertNoEvents(t, rec)
}

// Wait fails the test, naming what is in flight, when work does not end
// within the timeout.
func TestHarnessWaitTimesOut(t *testing.T) {
	f := &fakeT{}
	gate := make(chan struct{})
	defer f.finish() // stops the consumer, after the gate opened
	defer close(gate)
	h := mbtest.NewHarness(f, &mbtest.HarnessOptions{Timeout: 50 * time.Millisecond})
	reg := harnessRegistry()
	shipping, _ := h.Bus()
	installShipping(shipping, gate, nil)
	h.Consume(shipping, reg, &mb.ConsumerOptions{Topic: "orders.placed", Group: "shipping"})
	pub := h.Publisher(reg)
	catch(func() {
		_ = h.Do(func(ctx context.Context) error { return pub.Publish(ctx, OrderPlaced{"stuck"}) })
	})
	checkOneMessage(t, f, "Harness.Wait: still in flight after 50ms", `1 message(s) of "orders.placed" not handled by group "shipping"`, "handling(s)")
}

func TestHarnessOptionsValidate(t *testing.T) {
	err := (&mbtest.HarnessOptions{Timeout: -1}).Validate()
	if !errors.Is(err, mb.ErrInvalidArgument) {
		t.Fatalf("Validate = %v", err)
	}
	if err := (*mbtest.HarnessOptions)(nil).Validate(); err != nil {
		t.Fatalf("nil Validate = %v", err)
	}
	f := &fakeT{}
	defer f.finish()
	catch(func() { mbtest.NewHarness(f, &mbtest.HarnessOptions{Timeout: -1}) })
	checkOneMessage(t, f, "NewHarness", "Timeout is negative")
}

// Two services over the harness's broker: orders publishes OrderPlaced,
// shipping consumes it and books a shipment. The test asserts once the
// harness has seen everything through.
func ExampleHarness() {
	t := &fakeT{out: os.Stdout} // stands in for the test's *testing.T
	defer t.finish()

	h := mbtest.NewHarness(t)
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/example"})
	mb.RegisterMessage[OrderPlaced](reg)

	orders, _ := h.Bus(&mb.Options{Forward: h.Publisher(reg)})
	installOrders(orders)
	shipping, shippingRec := h.Bus()
	installShipping(shipping, nil, nil)
	h.Consume(shipping, reg, &mb.ConsumerOptions{Topic: "orders.placed", Group: "shipping"})

	err := h.Do(func(ctx context.Context) error {
		return mb.Exec(ctx, orders, PlaceOrder{"o-1"})
	})
	if err != nil {
		t.Fatal(err)
	}
	mbtest.AssertEvents(t, shippingRec, OrderPlaced{"o-1"}, ShipmentBooked{"o-1"})
	fmt.Println("shipments:", mbtest.EventsOf[ShipmentBooked](shippingRec), "- failed:", t.Failed())
	// Output:
	// shipments: [{o-1}] - failed: false
}
