package mbtest_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
	"github.com/mb-go/mb/mbtest"
)

type Shipped struct{ Order string }

func (Shipped) MessageName() string { return "test.shipped" }

// RunConsumer runs the consumer until stop, which drains it and returns
// Run's result.
func TestRunConsumer(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/test"})
	mb.RegisterMessage[Shipped](reg)
	handled := make(chan string, 1)
	bus := mb.New()
	mb.Subscribe(bus, func(_ context.Context, e Shipped) error { handled <- e.Order; return nil })
	c, err := mb.NewConsumer(bus, tr, reg, &mb.ConsumerOptions{Topic: "test.shipped", Group: "g", Start: mbdriver.StartOldest})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := mb.NewPublisher(tr, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), Shipped{"o-1"}); err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, context.Background(), c)
	if got := <-handled; got != "o-1" {
		t.Errorf("handled %q", got)
	}
	if err := stop(); err != nil {
		t.Errorf("stop = %v", err)
	}
	if err := stop(); err != nil {
		t.Errorf("second stop = %v", err)
	}
}

// refusing fails every Subscribe.
type refusing struct{}

func (refusing) Subscribe(context.Context, mbdriver.Subscription) (mbdriver.Receiver, error) {
	return nil, errors.New("no such topic")
}

// stop returns Run's error; the test that reads it is not failed for it.
func TestRunConsumerReturnsRunError(t *testing.T) {
	c, err := mb.NewConsumer(mb.New(), refusing{}, mb.NewRegistry(), &mb.ConsumerOptions{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	stop := mbtest.RunConsumer(t, context.Background(), c)
	if err := stop(); err == nil || !strings.Contains(err.Error(), "no such topic") {
		t.Fatalf("stop = %v, want Run's subscribe error", err)
	}
}

// A test that never stops the consumer has it stopped at its end, and
// fails if Run failed.
func TestRunConsumerStopsAtCleanup(t *testing.T) {
	c, err := mb.NewConsumer(mb.New(), refusing{}, mb.NewRegistry(), &mb.ConsumerOptions{Topic: "t"})
	if err != nil {
		t.Fatal(err)
	}
	ft := &fakeT{}
	mbtest.RunConsumer(ft, context.Background(), c)
	ft.finish()
	if msgs := ft.messages(); len(msgs) != 1 || !strings.Contains(msgs[0], "no such topic") {
		t.Errorf("reported %q, want Run's error once", msgs)
	}
}
