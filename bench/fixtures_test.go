package bench

// The work every variant does, and one constructor per variant. Benchmarks
// (benchmarks_test.go) and the honesty tests (bench_test.go) use the very
// same constructors, so what the tests check is what the benchmarks measure.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/asaskevich/EventBus"

	"github.com/mb-go/mb"
)

// Messages: the quickstart's (examples/quickstart), plus a shard number so that
// parallel benchmarks write to per-goroutine slots instead of sharing one.

type User struct {
	Username string
	Email    string
}

type CreateUser struct {
	Username string
	Email    string
	Shard    int // which slot of shards the handler stores the user in
}

var errNoUsername = errors.New("username is empty")

// Validate gives mb.Validate (and its direct counterpart) something to do.
func (c CreateUser) Validate() error {
	if c.Username == "" {
		return errNoUsername
	}
	return nil
}

type UserCreated struct {
	Username string
	Email    string
}

// DedupKey is the seed's optional method; mb de-duplicates by it.
func (e UserCreated) DedupKey() string { return e.Username }

// Where handlers put their work. Small, preallocated, padded so that
// parallel goroutines (each with its own shard) do not share cache lines.

const numShards = 64

type shard struct {
	users [2]User
	n     uint64
	_     [56]byte
}

var shards [numShards]shard

type eventCounter struct {
	n    uint64
	last string // the Username of the last event handled
	_    [40]byte
}

// eventCounts[i] is written only by event handler i.
var eventCounts [3]eventCounter

// Sinks for results, so that no variant's call can be optimised away.
var (
	sinkUser User
	sinkN    atomic.Int64
)

// nextShard hands each goroutine of a parallel benchmark its own shard;
// sequential benchmarks and tests use shard 0.
var nextShard atomic.Int64

// resetState clears everything handlers write. Tests call it; benchmarks
// need not.
func resetState() {
	shards = [numShards]shard{}
	eventCounts = [3]eventCounter{}
}

// storeUser is the body shared by every command handler: build the User and
// store it in the command's shard.
func storeUser(cmd CreateUser) User {
	u := User{Username: cmd.Username, Email: cmd.Email}
	s := &shards[cmd.Shard&(numShards-1)]
	s.users[s.n&1] = u
	s.n++
	return u
}

// The handlers. They are kept out of line (go:noinline) so that "direct"
// measures a real call to the same function the buses call through a func
// value, rather than the handler's body inlined into the benchmark loop.

// createUser is the command handler of BenchmarkSend and
// BenchmarkSendMiddleware (every variant) and BenchmarkSendParallel.
//
//go:noinline
func createUser(_ context.Context, cmd CreateUser) (User, error) {
	return storeUser(cmd), nil
}

// createUserEmit is mb's command handler of BenchmarkSendEmit.
//
//go:noinline
func createUserEmit(ctx context.Context, cmd CreateUser) (User, error) {
	u := storeUser(cmd)
	if err := mb.Emit(ctx, UserCreated{Username: u.Username, Email: u.Email}); err != nil {
		return User{}, err
	}
	return u, nil
}

// createUserCall is the direct counterpart of createUserEmit: it calls the
// three event handlers itself.
//
//go:noinline
func createUserCall(ctx context.Context, cmd CreateUser) (User, error) {
	u := storeUser(cmd)
	if err := publishDirect3(ctx, UserCreated{Username: u.Username, Email: u.Email}); err != nil {
		return User{}, err
	}
	return u, nil
}

//go:noinline
func sendWelcomeEmail(_ context.Context, e UserCreated) error {
	c := &eventCounts[0]
	c.n++
	c.last = e.Username
	return nil
}

//go:noinline
func syncIntegration(_ context.Context, e UserCreated) error {
	c := &eventCounts[1]
	c.n++
	c.last = e.Username
	return nil
}

//go:noinline
func updateStats(_ context.Context, e UserCreated) error {
	c := &eventCounts[2]
	c.n++
	c.last = e.Username
	return nil
}

// eventHandlers are the three subscribers, in registration order.
var eventHandlers = []func(context.Context, UserCreated) error{sendWelcomeEmail, syncIntegration, updateStats}

// publishDirect3 is the direct counterpart of an event with three handlers.
func publishDirect3(ctx context.Context, e UserCreated) error {
	if err := sendWelcomeEmail(ctx, e); err != nil {
		return err
	}
	if err := syncIntegration(ctx, e); err != nil {
		return err
	}
	return updateStats(ctx, e)
}

// A variant is built by its constructor (not measured) and then called once
// per benchmark op.

type sendFunc func(ctx context.Context, cmd CreateUser) (User, error)

type sendVariant struct {
	name string
	new  func(tb testing.TB) sendFunc
}

type publishFunc func(ctx context.Context, e UserCreated) error

type publishVariant struct {
	name string
	new  func(tb testing.TB) publishFunc
}

// mbErrors counts the errors mb reports to Options.ErrorHandler (failing
// event handlers); the tests require none.
var mbErrors atomic.Int64

func newBus(opts *mb.Options) *mb.Bus {
	opts.ErrorHandler = func(context.Context, error) { mbErrors.Add(1) }
	return mb.New(opts)
}

func mbSender(bus *mb.Bus) sendFunc {
	return func(ctx context.Context, cmd CreateUser) (User, error) {
		return mb.Send[User](ctx, bus, cmd)
	}
}

// BenchmarkSend and BenchmarkSendParallel.

func newSendMB(testing.TB) sendFunc {
	bus := newBus(&mb.Options{})
	mb.HandleCommand(bus, createUser)
	return mbSender(bus)
}

// newSendMBPooled registers createUser with mb.WithPooledContext: it does
// not keep its context.
func newSendMBPooled(testing.TB) sendFunc {
	bus := newBus(&mb.Options{})
	mb.HandleCommand(bus, createUser, mb.WithPooledContext())
	return mbSender(bus)
}

func newSendDirect(testing.TB) sendFunc { return createUser }

// The floor: the least a typed bus has to do to reach the handler
// registered for a message type at run time. It looks the type up in an
// immutable map published behind an atomic pointer (registration copies the
// map), asserts the value found to the handler's typed func and calls it
// through that func value. No unit of work, no recovery, no context of its
// own: it is what mb's Send is compared with, not a rival.
//
// floorBus keys the map by reflect.Type, as most type-keyed registries do;
// floorPtrBus keys it by the address of the type descriptor, which is
// hashed as a plain pointer instead of through an interface.
type floorBus struct {
	handlers atomic.Pointer[map[reflect.Type]any]
}

type floorPtrBus struct {
	handlers atomic.Pointer[map[unsafe.Pointer]any]
}

var errFloorNoHandler = errors.New("floor: no handler")

// typeAddr returns the address of the type descriptor t stands for: the
// data word of the reflect.Type interface.
func typeAddr(t reflect.Type) unsafe.Pointer {
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&t))[1]
}

// register adds h to the map behind p, copying it.
func register[K comparable](p *atomic.Pointer[map[K]any], key K, h any) {
	m := map[K]any{}
	if old := p.Load(); old != nil {
		m = maps.Clone(*old)
	}
	m[key] = h
	p.Store(&m)
}

func floorSend[R, C any](ctx context.Context, b *floorBus, cmd C) (R, error) {
	h, ok := (*b.handlers.Load())[reflect.TypeFor[C]()].(func(context.Context, C) (R, error))
	if !ok {
		var zero R
		return zero, errFloorNoHandler
	}
	return h(ctx, cmd)
}

func floorPtrSend[R, C any](ctx context.Context, b *floorPtrBus, cmd C) (R, error) {
	h, ok := (*b.handlers.Load())[typeAddr(reflect.TypeFor[C]())].(func(context.Context, C) (R, error))
	if !ok {
		var zero R
		return zero, errFloorNoHandler
	}
	return h(ctx, cmd)
}

func newSendFloor(testing.TB) sendFunc {
	bus := &floorBus{}
	register(&bus.handlers, reflect.TypeFor[CreateUser](), any(createUser))
	return func(ctx context.Context, cmd CreateUser) (User, error) {
		return floorSend[User](ctx, bus, cmd)
	}
}

func newSendFloorPtr(testing.TB) sendFunc {
	bus := &floorPtrBus{}
	register(&bus.handlers, typeAddr(reflect.TypeFor[CreateUser]()), any(createUser))
	return func(ctx context.Context, cmd CreateUser) (User, error) {
		return floorPtrSend[User](ctx, bus, cmd)
	}
}

func newSendWatermill(tb testing.TB) sendFunc { return newWatermill(tb, watermillNoEvents).send }

// BenchmarkSendMiddleware.

// passthrough is a trivial mb middleware.
func passthrough(next mb.Handler) mb.Handler {
	return mb.HandlerFunc(func(ctx context.Context, msg *mb.Message) (any, error) {
		return next.Handle(ctx, msg)
	})
}

func newSendMBPassthrough(testing.TB) sendFunc {
	bus := newBus(&mb.Options{Middleware: []mb.Middleware{passthrough, passthrough, passthrough}})
	mb.HandleCommand(bus, createUser)
	return mbSender(bus)
}

// directPassthrough is the direct counterpart of passthrough: a typed
// wrapping func.
func directPassthrough(next sendFunc) sendFunc {
	return func(ctx context.Context, cmd CreateUser) (User, error) {
		return next(ctx, cmd)
	}
}

func newSendDirectPassthrough(testing.TB) sendFunc {
	return directPassthrough(directPassthrough(directPassthrough(createUser)))
}

const middlewareTimeout = time.Minute

func newSendMBRecoverValidateTimeout(testing.TB) sendFunc {
	bus := newBus(&mb.Options{})
	bus.Use(mb.Recover(), mb.Validate(), mb.Timeout(middlewareTimeout))
	mb.HandleCommand(bus, createUser)
	return mbSender(bus)
}

func directRecover(next sendFunc) sendFunc {
	return func(ctx context.Context, cmd CreateUser) (u User, err error) {
		defer func() {
			if p := recover(); p != nil {
				u, err = User{}, fmt.Errorf("handler panicked: %v", p)
			}
		}()
		return next(ctx, cmd)
	}
}

func directValidate(next sendFunc) sendFunc {
	return func(ctx context.Context, cmd CreateUser) (User, error) {
		if err := cmd.Validate(); err != nil {
			return User{}, fmt.Errorf("invalid CreateUser: %w", err)
		}
		return next(ctx, cmd)
	}
}

func directTimeout(d time.Duration) func(sendFunc) sendFunc {
	return func(next sendFunc) sendFunc {
		return func(ctx context.Context, cmd CreateUser) (User, error) {
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next(ctx, cmd)
		}
	}
}

func newSendDirectRecoverValidateTimeout(testing.TB) sendFunc {
	return directRecover(directValidate(directTimeout(middlewareTimeout)(createUser)))
}

// BenchmarkSendEmit.

func newSendEmitMB(testing.TB) sendFunc {
	bus := newBus(&mb.Options{})
	mb.HandleCommand(bus, createUserEmit)
	for _, h := range eventHandlers {
		mb.Subscribe(bus, h)
	}
	return mbSender(bus)
}

func newSendEmitDirect(testing.TB) sendFunc { return createUserCall }

func newSendEmitWatermill(tb testing.TB) sendFunc {
	return newWatermill(tb, watermillEventProcessor).send
}

func newSendEmitWatermillGroup(tb testing.TB) sendFunc {
	return newWatermill(tb, watermillEventGroupProcessor).send
}

// BenchmarkPublish.

func newPublishMB(subs int) func(testing.TB) publishFunc {
	return func(testing.TB) publishFunc {
		bus := newBus(&mb.Options{})
		for _, h := range eventHandlers[:subs] {
			mb.Subscribe(bus, h)
		}
		return func(ctx context.Context, e UserCreated) error {
			return mb.Publish(ctx, bus, e)
		}
	}
}

func newPublishDirect(subs int) func(testing.TB) publishFunc {
	return func(tb testing.TB) publishFunc {
		switch subs {
		case 1:
			return sendWelcomeEmail
		case 3:
			return publishDirect3
		}
		tb.Fatalf("no direct variant for %d subscribers", subs)
		return nil
	}
}

const eventBusTopic = "UserCreated"

// newPublishEventBus subscribes the very same handler funcs; EventBus calls
// them through reflection with the arguments given to Publish (it ignores
// their results).
func newPublishEventBus(subs int) func(testing.TB) publishFunc {
	return func(tb testing.TB) publishFunc {
		eb := EventBus.New()
		for _, h := range eventHandlers[:subs] {
			if err := eb.Subscribe(eventBusTopic, h); err != nil {
				tb.Fatal(err)
			}
		}
		return func(ctx context.Context, e UserCreated) error {
			eb.Publish(eventBusTopic, ctx, e)
			return nil
		}
	}
}

// newPublishEventBusClosure is EventBus's fastest mode: each handler func
// is wrapped in a closure of one argument, the event, so that EventBus's
// reflective call passes one value instead of two. The closures call the
// very same handler funcs with the context they were built with.
func newPublishEventBusClosure(subs int) func(testing.TB) publishFunc {
	return func(tb testing.TB) publishFunc {
		eb := EventBus.New()
		ctx := context.Background()
		for _, h := range eventHandlers[:subs] {
			if err := eb.Subscribe(eventBusTopic, func(e UserCreated) { _ = h(ctx, e) }); err != nil {
				tb.Fatal(err)
			}
		}
		return func(_ context.Context, e UserCreated) error {
			eb.Publish(eventBusTopic, e)
			return nil
		}
	}
}

// Watermill: CQRS command bus, command processor, event bus and event
// (group) processor over one in-process gochannel.GoChannel and one
// message.Router. Watermill handles commands and events asynchronously, on
// the router's goroutines; send waits until the command handler and every
// event handler have run, so one op is the same work end to end as a Send
// of mb.

type watermillEvents int

const (
	watermillNoEvents            watermillEvents = iota // command handler only
	watermillEventProcessor                             // command handler publishes; EventProcessor, one subscription per handler
	watermillEventGroupProcessor                        // command handler publishes; EventGroupProcessor, one subscription for the group
)

type watermillBus struct {
	commands *cqrs.CommandBus
	events   *cqrs.EventBus
	results  chan User     // the command handler's result
	handled  chan struct{} // one per event handler run
	waitFor  int           // event handlers to wait for
}

// send sends cmd and waits for the command handler's result and for every
// event handler. ctx bounds the wait (the tests give it a deadline).
func (w *watermillBus) send(ctx context.Context, cmd CreateUser) (User, error) {
	if err := w.commands.Send(ctx, &cmd); err != nil {
		return User{}, err
	}
	var u User
	select {
	case u = <-w.results:
	case <-ctx.Done():
		return User{}, fmt.Errorf("waiting for the command handler: %w", ctx.Err())
	}
	for range w.waitFor {
		select {
		case <-w.handled:
		case <-ctx.Done():
			return User{}, fmt.Errorf("waiting for the event handlers: %w", ctx.Err())
		}
	}
	return u, nil
}

// newWatermill builds and runs the Watermill set-up; tb.Cleanup closes the
// router and the pub/sub and waits for the router to stop.
func newWatermill(tb testing.TB, events watermillEvents) *watermillBus {
	tb.Helper()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	must(err)
	marshaler := cqrs.JSONMarshaler{GenerateName: cqrs.StructName}

	w := &watermillBus{
		results: make(chan User, 1),
		handled: make(chan struct{}, len(eventHandlers)),
	}
	w.commands, err = cqrs.NewCommandBusWithConfig(pubSub, cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	must(err)
	commandProcessor, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubSub, nil
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	must(err)

	var commandHandler cqrs.CommandHandler
	if events == watermillNoEvents {
		commandHandler = cqrs.NewCommandHandler("CreateUser", func(ctx context.Context, cmd *CreateUser) error {
			u, err := createUser(ctx, *cmd)
			if err != nil {
				return err
			}
			w.results <- u
			return nil
		})
	} else {
		w.waitFor = len(eventHandlers)
		w.events, err = cqrs.NewEventBusWithConfig(pubSub, cqrs.EventBusConfig{
			GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
				return "events." + p.EventName, nil
			},
			Marshaler: marshaler,
			Logger:    logger,
		})
		must(err)
		commandHandler = cqrs.NewCommandHandler("CreateUser", func(ctx context.Context, cmd *CreateUser) error {
			u := storeUser(*cmd)
			if err := w.events.Publish(ctx, &UserCreated{Username: u.Username, Email: u.Email}); err != nil {
				return err
			}
			w.results <- u
			return nil
		})
		// Each event handler runs the shared handler func and then signals.
		wrap := func(h func(context.Context, UserCreated) error) func(context.Context, *UserCreated) error {
			return func(ctx context.Context, e *UserCreated) error {
				err := h(ctx, *e)
				w.handled <- struct{}{}
				return err
			}
		}
		names := []string{"SendWelcomeEmail", "SyncIntegration", "UpdateStats"}
		switch events {
		case watermillEventProcessor:
			p, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
				GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
					return "events." + p.EventName, nil
				},
				SubscriberConstructor: func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
					return pubSub, nil
				},
				Marshaler: marshaler,
				Logger:    logger,
			})
			must(err)
			for i, h := range eventHandlers {
				must(p.AddHandlers(cqrs.NewEventHandler(names[i], wrap(h))))
			}
		case watermillEventGroupProcessor:
			p, err := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
				GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
					return "events." + marshaler.Name(&UserCreated{}), nil
				},
				SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
					return pubSub, nil
				},
				Marshaler: marshaler,
				Logger:    logger,
			})
			must(err)
			group := make([]cqrs.GroupEventHandler, len(eventHandlers))
			for i, h := range eventHandlers {
				group[i] = cqrs.NewGroupEventHandler(wrap(h))
			}
			must(p.AddHandlersGroup("UserCreatedHandlers", group...))
		}
	}
	must(commandProcessor.AddHandlers(commandHandler))

	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		_ = pubSub.Close()
		tb.Fatalf("watermill router stopped before running: %v", err)
	}
	tb.Cleanup(func() {
		err := router.Close()
		err = errors.Join(err, <-runErr, pubSub.Close())
		if err != nil {
			tb.Errorf("closing watermill: %v", err)
		}
	})
	return w
}
