package mbfx_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbfx"
	"github.com/mb-go/mb/mbmem"
)

const topic, group = "accounts.opened", "mailer"

var sub = mbdriver.Subscription{Topic: topic, Group: group}

// slowMailer is an event handler that tells when it starts and finishes
// only when released: a message in flight, for as long as a test wants.
type slowMailer struct {
	started  chan string
	release  chan struct{}
	finished atomic.Int32
}

func newSlowMailer() *slowMailer {
	return &slowMailer{started: make(chan string, 10), release: make(chan struct{})}
}

func (m *slowMailer) welcome(ctx context.Context, e AccountOpened) error {
	m.started <- e.Username
	<-m.release
	m.finished.Add(1)
	return nil
}

// consumerApp returns the options of an app that consumes topic as group
// through sub, with m's handler, and the consumer options o.
func consumerApp(s mbdriver.Subscriber, reg *mb.Registry, m *slowMailer, o mb.ConsumerOptions) fx.Option {
	o.Topic, o.Group = topic, group
	return fx.Options(
		mbfx.Module,
		mbfx.Handlers(mbfx.Event(m.welcome, mb.WithName("mailer.welcome"))),
		fx.Provide(mbfx.AsConsumer(func() mbfx.Consumer {
			return mbfx.Consumer{Subscriber: s, Registry: reg, Options: &o}
		})),
	)
}

// publish publishes events to tr.
func publish(t *testing.T, d mbdriver.Publisher, reg *mb.Registry, events ...any) {
	t.Helper()
	pub, err := mb.NewPublisher(d, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx(t), events...); err != nil {
		t.Fatal(err)
	}
}

// The app's start returns once the consumer has subscribed (its group
// exists, so what is published from then on is kept for it); its stop
// drains: the message being handled finishes and is acked before Stop
// returns.
func TestConsumerDrainsOnStop(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	testDrain(t, tr, func() int { return tr.Pending(sub) })
}

// testDrain runs an app that consumes through d, publishes a message,
// stops the app while the message is being handled, and checks that Stop
// waits for the handler and that the message was acked (pending is then
// 0).
func testDrain(t *testing.T, d mbdriver.Driver, pending func() int) {
	reg := registry(t)
	m := newSlowMailer()
	w := &stopWatch{Driver: d, stopped: make(chan struct{})}
	app := fxtest.New(t, consumerApp(w, reg, m, mb.ConsumerOptions{}))
	app.RequireStart()

	publish(t, d, reg, AccountOpened{Username: "me"})
	if got := recv(t, m.started); got != "me" {
		t.Fatalf("handled %q", got)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- app.Stop(ctx(t)) }()
	recv(t, w.stopped) // the drain has begun
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while a message was being handled", err)
	default:
	}
	close(m.release)
	if err := recv(t, stopped); err != nil {
		t.Fatalf("Stop = %v", err)
	}
	if m.finished.Load() != 1 {
		t.Fatal("Stop returned before the message in flight was handled")
	}
	if n := pending(); n != 0 {
		t.Fatalf("%d message(s) not acked after the drain", n)
	}
}

// stopWatch is a broker that tells when its consumer stops receiving: a
// Receive that returns because its context ended, which is how a
// consumer's drain begins.
type stopWatch struct {
	mbdriver.Driver
	once    sync.Once
	stopped chan struct{}
}

func (w *stopWatch) Subscribe(ctx context.Context, s mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := w.Driver.Subscribe(ctx, s)
	if err != nil {
		return nil, err
	}
	if x, ok := r.(mbdriver.Extender); ok {
		return watchedExtender{watchedReceiver{r, w}, x}, nil
	}
	return watchedReceiver{r, w}, nil
}

type watchedReceiver struct {
	mbdriver.Receiver
	w *stopWatch
}

func (r watchedReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	msgs, err := r.Receiver.Receive(ctx, max)
	if ctx.Err() != nil {
		r.w.once.Do(func() { close(r.w.stopped) })
	}
	return msgs, err
}

type watchedExtender struct {
	watchedReceiver
	mbdriver.Extender
}

// refusing is a broker that refuses subscriptions until it is let in.
type refusing struct {
	*mbmem.Transport
	err   error
	open  chan struct{}
	tries atomic.Int32
}

func (r *refusing) Subscribe(ctx context.Context, s mbdriver.Subscription) (mbdriver.Receiver, error) {
	r.tries.Add(1)
	select {
	case <-r.open:
		return r.Transport.Subscribe(ctx, s)
	default:
		return nil, r.err
	}
}

func (r *refusing) IsRetryable(err error) bool { return mb.IsRetryable(err) }

var errRefused = mb.Retryable(errors.New("dial tcp 127.0.0.1:1: connect: connection refused"))

// A FailFast consumer whose broker is unreachable fails the app's start,
// naming the consumer and wrapping the broker's error.
func TestFailFastConsumerFailsStart(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	s := &refusing{Transport: tr, err: errRefused, open: make(chan struct{})}
	app := fx.New(fx.NopLogger, consumerApp(s, registry(t), newSlowMailer(), mb.ConsumerOptions{FailFast: true}))
	err := app.Start(ctx(t))
	if !errors.Is(err, errRefused) {
		t.Fatalf("Start = %v, want the broker's error", err)
	}
	if want := `mbfx: consumer "mailer" of accounts.opened failed to start`; !strings.Contains(err.Error(), want) {
		t.Fatalf("Start = %v, want it to say %q", err, want)
	}
}

// Without FailFast, the app starts while the broker is unreachable, and
// its consumer handles messages once the broker is back.
func TestConsumerStartsWithoutItsBroker(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	reg := registry(t)
	s := &refusing{Transport: tr, err: errRefused, open: make(chan struct{})}
	m := newSlowMailer()
	close(m.release)
	app := fxtest.New(t, consumerApp(s, reg, m, mb.ConsumerOptions{
		Start:            mbdriver.StartOldest, // what was published while it was away
		ReconnectBackoff: mb.Backoff{Min: time.Millisecond, Max: time.Millisecond},
		ErrorHandler:     func(context.Context, error) {}, // the refusals
	}))
	app.RequireStart()
	defer app.RequireStop()
	if s.tries.Load() == 0 {
		t.Fatal("the app started before its consumer tried to subscribe")
	}
	publish(t, tr, reg, AccountOpened{Username: "me"})
	close(s.open)
	if got := recv(t, m.started); got != "me" {
		t.Fatalf("handled %q", got)
	}
}

// failing is a broker whose receivers fail for good once told to.
type failing struct {
	*mbmem.Transport
	fail chan struct{}
}

var errGone = errors.New("NOGROUP the consumer group was deleted")

func (f *failing) Subscribe(ctx context.Context, s mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := f.Transport.Subscribe(ctx, s)
	return failingReceiver{r, f.fail}, err
}

type failingReceiver struct {
	mbdriver.Receiver
	fail chan struct{}
}

func (r failingReceiver) Receive(ctx context.Context, max int) ([]*mbdriver.Message, error) {
	select {
	case <-r.fail:
		return nil, errGone
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A consumer that stops on its own while the app runs is reported to
// Options.ErrorHandler and shuts the app down with Options.ExitCode, or
// leaves it running with KeepRunning.
func TestConsumerFailureShutsTheAppDown(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "shut down", true: "KeepRunning"}[keep], func(t *testing.T) {
			tr := mbmem.New(nil)
			defer tr.Close()
			f := &failing{Transport: tr, fail: make(chan struct{})}
			reported := make(chan error, 1)
			app := fxtest.New(t,
				consumerApp(f, registry(t), newSlowMailer(), mb.ConsumerOptions{}),
				fx.Supply(&mbfx.Options{
					ExitCode:     3,
					KeepRunning:  keep,
					ErrorHandler: func(_ context.Context, err error) { reported <- err },
				}),
			)
			app.RequireStart()
			signals := app.Wait()
			close(f.fail)
			err := recv(t, reported)
			if !errors.Is(err, errGone) || !strings.Contains(err.Error(), `mbfx: consumer "mailer" of accounts.opened stopped while the app was running`) {
				t.Fatalf("reported %v", err)
			}
			if !keep {
				if sig := recv(t, signals); sig.ExitCode != 3 {
					t.Fatalf("shut down with exit code %d, want 3", sig.ExitCode)
				}
			}
			app.RequireStop() // the error was reported: Stop does not return it again
			if keep {
				select {
				case sig := <-signals:
					t.Fatalf("shut down (%v) despite KeepRunning", sig)
				default:
				}
			}
		})
	}
}

// A relay runs from the app's start to its stop: an event that a command
// stored in the outbox is published to the broker.
func TestRelayRunsWithTheApp(t *testing.T) {
	tr := mbmem.New(nil)
	defer tr.Close()
	reg := registry(t)
	store := &mbmem.Outbox{}
	ob, err := mb.NewOutbox(store, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	rcv, err := tr.Subscribe(ctx(t), sub) // the group of another service
	if err != nil {
		t.Fatal(err)
	}
	defer rcv.Close()
	var bus *mb.Bus
	app := fxtest.New(t,
		mbfx.Module,
		accountsModule,
		fx.Supply(&mb.Options{Forward: ob}),
		fx.Provide(mbfx.AsRelay(func() mbfx.Relay {
			return mbfx.Relay{Name: "outbox", Store: store, Publisher: tr, Options: &mb.RelayOptions{Outbox: ob}}
		})),
		fx.Populate(&bus),
	)
	app.RequireStart()
	if _, err := mb.Send[Account](ctx(t), bus, OpenAccount{"me", "me@message.bus"}); err != nil {
		t.Fatal(err)
	}
	msgs, err := rcv.Receive(ctx(t), 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Topic != topic {
		t.Fatalf("received %v", msgs)
	}
	app.RequireStop()
	if due, _ := store.Due(); due != 0 {
		t.Fatalf("%d message(s) still due in the outbox", due)
	}
}
