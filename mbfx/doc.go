// Package mbfx wires the [mb] bus into an application built with uber/fx
// ([go.uber.org/fx]): it provides the bus, registers on it the handlers,
// middleware and modules declared anywhere in the fx graph, and runs
// consumers and outbox relays with the app's lifecycle.
//
// # Overview
//
// Include [Module] once in an app. Each fx module then declares its
// handlers next to what they need, and the bus knows them all:
//
//	var UsersModule = fx.Module("users",
//		fx.Provide(NewUsers),
//		fx.Provide(mbfx.AsHandler(func(u *Users) mbfx.Handler {
//			return mbfx.Command(u.CreateUser)
//		})),
//	)
//
//	app := fx.New(mbfx.Module, UsersModule, MailerModule)
//
// The pieces travel in fx value groups ([HandlersGroup],
// [MiddlewareGroup], [ModulesGroup], [ConsumersGroup], [RelaysGroup]),
// filled with the helpers of this package or with fx's own annotations.
// The bus is configured by the *[mb.Options] in the graph, if any:
//
//	fx.Provide(func(tr *mbsql.Transactor, ob *mb.Outbox) *mb.Options {
//		return &mb.Options{Transactor: tr, Forward: ob}
//	})
//
// The bus, and every consumer and relay, is built while fx.New runs, even
// when nothing in the graph asks for the bus: a mistake in a registration
// fails fx.New, not the first message. Components that send commands
// take the *mb.Bus as a dependency. Handlers must not (the bus is built
// from them, so fx would report a cycle): inside a handler,
// [mb.BusFrom] returns the bus.
//
// # Declaring handlers
//
// A [Handler] is one typed handler, made by [Command], [CommandNoResult],
// [Query], [Stream] or [Event] from the same functions and
// [mb.HandlerOption]s that mb.HandleCommand and the others take. A
// handler that needs nothing from the graph joins it with [Handlers]; a
// constructor that takes dependencies and returns a Handler or a
// []Handler joins it through [AsHandler], inside fx.Provide.
//
// fx hands a value group over in an order it shuffles on purpose. The
// order of registration matters to mb in one place: the handlers of one
// event with the same [mb.WithPriority] run in the order they were
// registered. So mbfx registers handlers in an order of its own: by kind
// (commands, queries, stream queries, event handlers), then by message
// type, then by Go function name ("users.(*Users).CreateUser"). The
// handlers of an event thus run in the same order in every app, however
// the modules are listed; give them priorities where that order means
// something. The names [mb.WithName] gives do not take part: mbfx cannot
// read them.
//
// # Middleware and modules
//
// Bus-wide middleware declared in the graph is a [Middleware]: the
// middleware with a Name and an Order, since fx's order is no order.
// Lower Orders wrap higher ones, and equal Orders go by Name. [Use] puts
// middleware in the graph, [AsMiddleware] annotates a constructor of it.
// They all sit inside the middleware of [mb.Options.Middleware].
//
// An [mb.Module], func(*mb.Bus) error, is what [mb.Bus.Install] takes: a
// package that already exposes its handlers that way joins an app with
// [Install] (or [AsModule] for a constructor of modules). Modules are
// installed before the handlers of [HandlersGroup] are registered, in the
// order of their Go function names. A module may do anything to the bus
// before it is used: add an observer ([mb.Bus.Observe]) for tracing, say.
// A module that registers with the functions that panic
// (mb.HandleCommand) fails fx.New with the error it panicked with.
//
// # Consumers and relays
//
// A [Consumer] declares an [mb.Consumer] of the bus: its subscriber, its
// registry and its options. A [Relay] declares an [mb.Relay]: its outbox
// store, where it publishes, and its options. Constructors annotated with
// [AsConsumer] and [AsRelay] put them in the graph. mbfx builds them (with
// mb.NewConsumer and mb.NewRelay) while fx.New runs, and runs each one's
// Run in a goroutine of its own from the app's start to its stop.
//
// Start. The relays start first, then the consumers, one after the
// other. The app's start waits until each consumer has subscribed to all
// its topics, so that when fx's Start returns, the consumer groups exist
// and what is published from then on is kept for them. A consumer whose
// broker refuses the subscription depends on its FailFast option
// ([mb.ConsumerOptions]): with FailFast, its Run ends with the error and
// the app's start fails with it; without, the consumer goes on trying in
// the background (reporting each failure to its ErrorHandler) and the app
// starts without waiting for its broker. An error that the broker does
// not report as transient (a refused permission, say) ends the
// consumer's Run either way: it fails the start, or, if the start has
// returned already, shuts the app down (see Failure below). A start
// context that ends before
// a consumer subscribed fails the start too. When the start fails, the
// consumers and relays started so far are stopped.
//
// Stop. The consumers are stopped together, then, once they all have
// returned, the relays, so that the events that handlers emit while their
// consumers drain are still relayed. A consumer drains as its Run
// documents: it stops receiving, finishes the messages it holds within
// its DrainTimeout and acknowledges them. The app's stop waits for all
// of that, within its stop context, and returns the errors of the drains
// (abandoned messages, say). A stop context that ends first (fx's
// default stop timeout is 15 seconds, mb's default DrainTimeout 30) ends
// the wait with an error naming the consumer, which goes on draining in
// the background until the process exits, and its unfinished messages
// are delivered again later: give consumers a DrainTimeout shorter than
// the app's stop timeout (fx.StopTimeout).
//
// Failure. A consumer or relay whose Run ends on its own while the app
// runs, such as a consumer whose broker reports an error that is not
// transient, is reported to [Options.ErrorHandler] with an error that
// names it, and the app is shut down through [fx.Shutdowner] with
// [Options.ExitCode], so that the process exits (fx.App.Run does) and
// its supervisor restarts it. With [Options.KeepRunning] the app goes on
// without it.
//
// # Errors
//
// Every error mbfx returns starts with "mbfx: ", names what failed (the
// handler and its message type, the middleware, the module, the consumer
// or relay) and wraps mb's error, so that errors.Is finds mb's sentinels
// (such as [mb.ErrDuplicateHandler], [mb.ErrInvalidHandler] and
// [mb.ErrInvalidArgument]) through fx's own wrapping. Where errors come
// up:
//
//   - fx.New (App.Err): invalid *mb.Options or *[Options]; a duplicate,
//     nil or otherwise invalid handler; an empty Handler; middleware
//     without a name, with a name taken or without a function; a module
//     that fails; a constructor of the wrong shape given to an As...
//     helper; a consumer or relay that mb.NewConsumer or mb.NewRelay
//     refuses. All of them at once, joined.
//   - fx's Start: a FailFast consumer that cannot subscribe, or any
//     consumer whose Run ends before it has subscribed; a start context
//     that ends first.
//   - Options.ErrorHandler, while the app runs: a consumer or relay that
//     stopped on its own.
//   - fx's Stop: a drain that failed or did not end within the stop
//     context.
//
// # Testing
//
// An fx app of mb modules is tested like any other, with fxtest. The
// broker of production can be swapped for an in-memory one with
// fx.Decorate or fx.Replace, and the bus recorded with package mbtest:
//
//	func TestSignUp(t *testing.T) {
//		rec := &mbtest.Recorder{}
//		var bus *mb.Bus
//		app := fxtest.New(t,
//			mbfx.Module, users.Module, mailer.Module,
//			fx.Supply(&mb.Options{ErrorHandler: rec.ErrorHandler}),
//			fx.Replace(fx.Annotate(mbmem.New(nil), fx.As(new(mbdriver.Driver)))),
//			fx.Invoke(rec.Attach),
//			fx.Populate(&bus),
//		)
//		app.RequireStart()
//		defer app.RequireStop()
//
//		_, err := mb.Send[users.User](t.Context(), bus, users.CreateUser{Username: "me"})
//		...
//		mbtest.AssertEvents(t, rec, users.UserCreated{Username: "me"})
//	}
//
// Since the app's start returns once its consumers have subscribed, a
// test may publish right after it; it then waits for what the consumer's
// handlers do (a channel its fake mailer writes to, say), with a bound
// on the wait. fx.ValidateApp checks the wiring of an app without running
// its constructors, so it does not see registration mistakes: fx.New
// does.
//
// # Concurrency
//
// [Module] may be used by any number of apps, each of which gets a bus
// of its own; the values of this package ([Handler], [Middleware],
// [Consumer], [Relay], [Options]) are plain values that may be shared.
// mbfx starts one goroutine per consumer and relay, between the app's
// start and its stop, and none otherwise.
package mbfx
