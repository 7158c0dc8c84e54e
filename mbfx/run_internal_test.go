package mbfx

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake returns a runner named name whose Run records its start in out
// and is then ready, and ends, recording it, when its context is done and
// release is closed.
func fake(name string, out *trace, release <-chan struct{}) *runner {
	ready := make(chan struct{})
	return &runner{name: name, ready: ready, run: func(ctx context.Context) error {
		out.add("start " + name)
		close(ready)
		<-ctx.Done()
		<-release
		out.add("end " + name)
		return nil
	}}
}

type trace struct {
	mu    sync.Mutex
	lines []string
}

func (t *trace) add(s string) {
	t.mu.Lock()
	t.lines = append(t.lines, s)
	t.mu.Unlock()
}

func (t *trace) get() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.lines)
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
	var out trace
	released := readyNow()
	g := &runners{
		relays:    []*runner{fake("r1", &out, released)},
		consumers: []*runner{fake("c1", &out, released), fake("c2", &out, released)},
	}
	if err := g.start(bounded(t)); err != nil {
		t.Fatal(err)
	}
	if err := g.stop(bounded(t)); err != nil {
		t.Fatal(err)
	}
	got := out.get()
	if !slices.Equal(got[:3], []string{"start r1", "start c1", "start c2"}) || got[5] != "end r1" {
		t.Fatalf("order %q: want r1 started first and stopped last", got)
	}
}

// A stop context that ends while a runner drains ends the wait: Stop
// returns an error naming it, and the runner goes on in the background.
func TestStopContextEndsWhileDraining(t *testing.T) {
	var out trace
	release := make(chan struct{})
	g := &runners{consumers: []*runner{fake("consumer c", &out, release)}}
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
