package mbfx

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// fake returns a runner named name whose Run sends its start to out and
// is then ready, and ends, sending that too, when its context is done and
// release is closed.
func fake(name string, out chan<- string, release <-chan struct{}) *runner {
	ready := make(chan struct{})
	return &runner{name: name, ready: ready, run: func(ctx context.Context) error {
		out <- "start " + name
		close(ready)
		<-ctx.Done()
		<-release
		out <- "end " + name
		return nil
	}}
}

// drain returns what is in ch.
func drain(ch chan string) []string {
	var got []string
	for {
		select {
		case s := <-ch:
			got = append(got, s)
		default:
			return got
		}
	}
}

func readyNow() <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Relays start before consumers; consumers stop, all of them, before any
// relay is told to stop, so that the events their handlers emit while
// draining are still relayed.
func TestRunnersOrder(t *testing.T) {
	out := make(chan string, 6)
	released := readyNow()
	g := &runners{
		relays:    []*runner{fake("r1", out, released)},
		consumers: []*runner{fake("c1", out, released), fake("c2", out, released)},
	}
	if err := g.start(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := g.stop(bounded(t)); err != nil {
		t.Fatal(err)
	}
	got := drain(out)
	if len(got) != 6 || !slices.Equal(got[:3], []string{"start r1", "start c1", "start c2"}) || got[5] != "end r1" {
		t.Fatalf("order %q: want r1 started first and stopped last", got)
	}
}

// A stop context that ends while a runner drains ends the wait: Stop
// returns an error naming it, and the runner goes on in the background.
func TestStopContextEndsWhileDraining(t *testing.T) {
	release := make(chan struct{})
	g := &runners{consumers: []*runner{fake("consumer c", make(chan string, 2), release)}}
	if err := g.start(bounded(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := g.stop(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "consumer c had not stopped when the stop context ended") {
		t.Fatalf("stop = %v", err)
	}
	close(release)
	if err := g.stop(bounded(t)); err != nil { // waits for it
		t.Fatal(err)
	}
}

// A start context that ends before a consumer has subscribed fails the
// start, and the consumer is stopped.
func TestStartContextEndsBeforeReady(t *testing.T) {
	g := &runners{consumers: []*runner{{name: "consumer c", ready: make(chan struct{}), run: func(ctx context.Context) error {
		<-ctx.Done() // never ready
		return nil
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := g.start(ctx)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "consumer c had not subscribed when the start context ended") {
		t.Fatalf("start = %v", err)
	}
	if err := g.stop(bounded(t)); err != nil { // waits for it
		t.Fatal(err)
	}
}

// A runner that fails during its stop has its error returned by Stop.
func TestStopReturnsTheDrainError(t *testing.T) {
	errDrain := errors.New("drain timed out: 1 message(s) abandoned")
	g := &runners{consumers: []*runner{{name: "consumer c", ready: readyNow(), run: func(ctx context.Context) error {
		<-ctx.Done()
		return errDrain
	}}}}
	if err := g.start(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := g.stop(bounded(t)); !errors.Is(err, errDrain) || !strings.Contains(err.Error(), "mbfx: consumer c: ") {
		t.Fatalf("stop = %v", err)
	}
}

// By default, a consumer or relay that stops on its own is logged with
// Options.Logger, and the app exits with status 1.
func TestOptionsDefaults(t *testing.T) {
	var buf bytes.Buffer
	o := Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))}.withDefaults()
	o.ErrorHandler(context.Background(), errors.New("receive failed"))
	if got := buf.String(); !strings.Contains(got, "mbfx: stopped while the app was running") || !strings.Contains(got, "receive failed") {
		t.Errorf("logged %q", got)
	}
	if o.ExitCode != 1 || o.KeepRunning {
		t.Errorf("ExitCode %d, KeepRunning %v; want 1 and false", o.ExitCode, o.KeepRunning)
	}
}
