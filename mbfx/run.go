package mbfx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
)

// Consumer declares an [mb.Consumer] that the app runs over the bus that
// [Module] provides: built by [mb.NewConsumer] while fx.New runs (so that
// invalid options fail fx.New), started when the app starts and drained
// when it stops. Declare it with a constructor annotated with
// [AsConsumer].
type Consumer struct {
	// Name names the consumer in errors. Empty means one made of its
	// group and topics, such as `consumer "mailer" of users.created`.
	Name string
	// Subscriber receives the messages: a transport driver, such as
	// mbredis's Streams or an *mbmem.Transport. Required.
	Subscriber mbdriver.Subscriber
	// Registry decodes the messages. Required.
	Registry *mb.Registry
	// Options configure the consumer as for [mb.NewConsumer]; they name
	// its topics and group, so they are required. FailFast also decides
	// how the app starts: see "Consumers and relays" in the package
	// documentation.
	Options *mb.ConsumerOptions
}

// AsConsumer annotates constructor, for [fx.Provide], so that the
// consumers it returns join group [ConsumersGroup]. constructor takes any
// dependencies from the graph and returns a [Consumer] or a []Consumer,
// optionally followed by an error:
//
//	fx.Provide(mbfx.AsConsumer(func(streams *mbredis.Streams, reg *mb.Registry) mbfx.Consumer {
//		return mbfx.Consumer{Subscriber: streams, Registry: reg,
//			Options: &mb.ConsumerOptions{Topic: "users.created", Group: "mailer"}}
//	}))
//
// A constructor of another shape fails fx.New with an error wrapping
// [mb.ErrInvalidArgument] that names it.
func AsConsumer(constructor any) any {
	return as[Consumer]("AsConsumer", ConsumersGroup, constructor)
}

// Relay declares an [mb.Relay] that the app runs: built by [mb.NewRelay]
// while fx.New runs, started when the app starts and stopped when it
// stops, after the consumers. Declare it with a constructor annotated
// with [AsRelay].
type Relay struct {
	// Name names the relay in errors. Empty means "relay" and the
	// relay's name in the store's leases (RelayOptions.Name, or the one
	// mb makes up).
	Name string
	// Store is the outbox store the relay empties. Required.
	Store mbdriver.OutboxStore
	// Publisher is where the relay publishes: a transport driver, or an
	// [mb.LocalDelivery] for the bus's own handlers. Required.
	Publisher mbdriver.Publisher
	// Options configure the relay as for [mb.NewRelay]; nil means the
	// defaults. Set Options.Outbox to the bus's [mb.Outbox] so that
	// commits wake the relay.
	Options *mb.RelayOptions
}

// AsRelay annotates constructor, for [fx.Provide], so that the relays it
// returns join group [RelaysGroup]. constructor takes any dependencies
// from the graph and returns a [Relay] or a []Relay, optionally followed
// by an error. A constructor of another shape fails fx.New with an error
// wrapping [mb.ErrInvalidArgument] that names it.
func AsRelay(constructor any) any {
	return as[Relay]("AsRelay", RelaysGroup, constructor)
}

// runIn is what the consumers and relays are built from. The group tags
// repeat the constants, as struct tags must be literals.
type runIn struct {
	fx.In
	Lifecycle  fx.Lifecycle
	Shutdowner fx.Shutdowner
	Bus        *mb.Bus
	Options    *Options   `optional:"true"`
	Consumers  []Consumer `group:"mb.consumers"`
	Relays     []Relay    `group:"mb.relays"`
}

// runAll builds the consumers and relays and hooks them to the
// lifecycle. It returns every problem, joined, each naming its consumer
// or relay.
func runAll(in runIn) error {
	var o Options
	if in.Options != nil {
		if err := in.Options.Validate(); err != nil {
			return err
		}
		o = *in.Options
	}
	g := &runners{opts: o.withDefaults(), shutdown: in.Shutdowner}
	var errs []error
	for _, c := range in.Consumers {
		r, err := c.build(in.Bus)
		errs = append(errs, err)
		if r != nil {
			g.consumers = append(g.consumers, r)
		}
	}
	for _, c := range in.Relays {
		r, err := c.build()
		errs = append(errs, err)
		if r != nil {
			g.relays = append(g.relays, r)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if len(g.consumers)+len(g.relays) == 0 {
		return nil
	}
	byName := func(a, b *runner) int { return cmp.Compare(a.name, b.name) }
	slices.SortStableFunc(g.consumers, byName)
	slices.SortStableFunc(g.relays, byName)
	in.Lifecycle.Append(fx.Hook{OnStart: g.start, OnStop: g.stop})
	return nil
}

// build makes the consumer's runner; its subscriber is watched, so that
// the app's start knows when the consumer has subscribed.
func (c Consumer) build(bus *mb.Bus) (*runner, error) {
	var topics []string
	var failFast bool
	if o := c.Options; o != nil {
		topics = slices.DeleteFunc(append([]string{o.Topic}, o.Topics...), func(t string) bool { return t == "" })
		failFast = o.FailFast
	}
	name := c.Name
	if name == "" {
		name = "consumer"
		if c.Options != nil {
			name = fmt.Sprintf("consumer %q of %s", c.Options.Group, strings.Join(topics, ", "))
		}
	}
	ready := make(chan struct{})
	var sub mbdriver.Subscriber // nil stays nil, for NewConsumer to name
	if c.Subscriber != nil {
		sub = &watchedSubscriber{Subscriber: c.Subscriber, topics: int32(len(topics)), failFast: failFast, ready: ready}
	}
	cons, err := mb.NewConsumer(bus, sub, c.Registry, c.Options)
	if err != nil {
		return nil, fmt.Errorf("mbfx: %s: %w", name, err)
	}
	return &runner{name: name, run: cons.Run, ready: ready}, nil
}

func (c Relay) build() (*runner, error) {
	r, err := mb.NewRelay(c.Store, c.Publisher, c.Options)
	name := c.Name
	if name == "" {
		name = "relay"
		if r != nil {
			name += " " + r.Name()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mbfx: %s: %w", name, err)
	}
	ready := make(chan struct{})
	close(ready) // a relay has nothing to wait for at start
	return &runner{name: name, run: r.Run, ready: ready}, nil
}

// watchedSubscriber passes Subscribe calls through to the consumer's
// subscriber and closes ready once the consumer has subscribed to each of
// its topics (it subscribes to them one after the other), or, unless
// failFast, when a subscription failed: the consumer then tries again in
// the background, and the app starts without waiting for its broker.
//
// It has the Capabilities and IsRetryable methods that mb.NewConsumer
// looks for, answering as the consumer would without the wrapper.
type watchedSubscriber struct {
	mbdriver.Subscriber
	topics     int32
	failFast   bool
	subscribed atomic.Int32
	once       sync.Once
	ready      chan struct{}
}

func (w *watchedSubscriber) Subscribe(ctx context.Context, sub mbdriver.Subscription) (mbdriver.Receiver, error) {
	r, err := w.Subscriber.Subscribe(ctx, sub)
	if (err == nil && w.subscribed.Add(1) >= w.topics) || (err != nil && !w.failFast) {
		w.once.Do(func() { close(w.ready) })
	}
	return r, err
}

// Capabilities returns those the subscriber declares; none when it
// declares nothing, which the consumer assumes then.
func (w *watchedSubscriber) Capabilities() mbdriver.Capabilities {
	if c, ok := w.Subscriber.(interface{ Capabilities() mbdriver.Capabilities }); ok {
		return c.Capabilities()
	}
	return mbdriver.Capabilities{}
}

// IsRetryable asks the subscriber, or, when it cannot tell,
// [mb.IsRetryable], as the consumer would.
func (w *watchedSubscriber) IsRetryable(err error) bool {
	if r, ok := w.Subscriber.(interface{ IsRetryable(error) bool }); ok {
		return r.IsRetryable(err)
	}
	return mb.IsRetryable(err)
}

// runners are the consumers and relays of an app, started and stopped
// together by one lifecycle hook: relays first, consumers after, and the
// other way round at stop, so that the events handlers emit while the
// consumers drain are still relayed.
type runners struct {
	opts      Options
	shutdown  fx.Shutdowner
	relays    []*runner
	consumers []*runner
}

func (g *runners) start(ctx context.Context) error {
	for _, r := range slices.Concat(g.relays, g.consumers) {
		if err := r.start(ctx, g.failed); err != nil {
			// Those started so far stop within what is left of ctx.
			return errors.Join(err, g.halt(ctx, "start"))
		}
	}
	return nil
}

// stop stops the consumers, all at once, then the relays, and returns
// what went wrong in their stopping. Those not started are skipped.
func (g *runners) stop(ctx context.Context) error {
	return g.halt(ctx, "stop")
}

// halt stops the consumers, then the relays, waiting for them within
// ctx, the context of the app's phase (start or stop).
func (g *runners) halt(ctx context.Context, phase string) error {
	return errors.Join(haltAll(ctx, phase, g.consumers), haltAll(ctx, phase, g.relays))
}

func haltAll(ctx context.Context, phase string, rs []*runner) error {
	for _, r := range rs {
		r.halt()
	}
	var errs []error
	for _, r := range rs {
		errs = append(errs, r.wait(ctx, phase))
	}
	return errors.Join(errs...)
}

// failed reports a runner that stopped on its own while the app ran, and
// shuts the app down unless told to keep running.
func (g *runners) failed(r *runner, err error) {
	if err == nil {
		err = errors.New("Run returned without an error")
	}
	err = fmt.Errorf("mbfx: %s stopped while the app was running: %w", r.name, err)
	func() {
		defer func() { _ = recover() }() // a panicking handler must not take the process down
		g.opts.ErrorHandler(context.Background(), err)
	}()
	if !g.opts.KeepRunning {
		// An error means that no one waits for the signal yet; fx keeps
		// it for the app's next Wait or Done.
		_ = g.shutdown.Shutdown(fx.ExitCode(g.opts.ExitCode))
	}
}

// runner runs the Run method of one consumer or relay in a goroutine.
type runner struct {
	name  string
	run   func(ctx context.Context) error
	ready <-chan struct{} // closed when start may return

	cancel context.CancelFunc // nil until started
	done   chan struct{}      // closed when run has returned and its end was reported

	mu      sync.Mutex
	running bool  // started, and not stopping: its end is a failure
	ended   bool  // run has returned
	err     error // what run returned
	told    bool  // err was passed on already: by start, or to failed
}

// start runs r until halt and waits until it is ready, or its Run ended
// (an error), or ctx is done (an error). The Run ending later, before
// halt, is reported to failed.
func (r *runner) start(ctx context.Context, failed func(*runner, error)) error {
	rctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan struct{})
	go func() {
		defer close(r.done)
		err := r.run(rctx)
		r.mu.Lock()
		r.ended, r.err = true, err
		report := r.running
		r.running, r.told = false, r.told || report
		r.mu.Unlock()
		if report {
			failed(r, err)
		}
	}()
	var waited error
	select {
	case <-r.ready:
	case <-r.done:
	case <-ctx.Done():
		waited = ctx.Err()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.told = r.ended
	switch {
	case r.ended && r.err != nil:
		return fmt.Errorf("mbfx: %s failed to start: %w", r.name, r.err)
	case r.ended:
		return fmt.Errorf("mbfx: %s failed to start: Run returned without an error", r.name)
	case waited != nil && !closed(r.ready):
		return fmt.Errorf("mbfx: %s had not subscribed when the start context ended: %w", r.name, waited)
	}
	r.running = true
	return nil
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// halt tells r's Run to stop, without waiting; its end is no failure.
func (r *runner) halt() {
	r.mu.Lock()
	r.running = false
	r.mu.Unlock()
	if r.cancel != nil {
		r.cancel()
	}
}

// wait waits until r's Run has returned, or ctx, the context of the
// app's phase, is done, and returns the error of a Run that ended in its
// stopping (the error of one that ended before was passed on then).
func (r *runner) wait(ctx context.Context, phase string) error {
	if r.done == nil {
		return nil
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		err := fmt.Errorf("mbfx: %s had not stopped when the %s context ended (%w); it goes on stopping in the background", r.name, phase, ctx.Err())
		if phase == "stop" {
			err = fmt.Errorf("%w: give it a drain timeout shorter than the app's stop timeout", err)
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil && !r.told {
		return fmt.Errorf("mbfx: %s: %w", r.name, r.err)
	}
	return nil
}
