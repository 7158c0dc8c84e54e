package mbfx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
)

// The value groups that [Module] collects. Constructors may join them
// with fx's own annotations as well as with the As... helpers:
//
//	fx.Annotate(NewHandlers, fx.ResultTags(`group:"mb.handlers,flatten"`))
const (
	// HandlersGroup holds [Handler] values: the bus's handlers.
	HandlersGroup = "mb.handlers"
	// MiddlewareGroup holds [Middleware] values: bus-wide middleware.
	MiddlewareGroup = "mb.middleware"
	// ModulesGroup holds [mb.Module] values, installed on the bus.
	ModulesGroup = "mb.modules"
	// ConsumersGroup holds [Consumer] values: consumers the app runs.
	ConsumersGroup = "mb.consumers"
	// RelaysGroup holds [Relay] values: outbox relays the app runs.
	RelaysGroup = "mb.relays"
)

// Module provides the app's *[mb.Bus] and runs its consumers and relays
// with the app's lifecycle. Include it once per fx app:
//
//	fx.New(
//		mbfx.Module,
//		users.Module,  // declares handlers, middleware, consumers...
//		mailer.Module,
//	)
//
// The bus is built from the *[mb.Options] in the graph, if any (supply
// them with fx.Supply or a constructor; without them, the defaults),
// with the middleware of [MiddlewareGroup], the modules of
// [ModulesGroup] and the handlers of [HandlersGroup]. It is built while
// fx.New runs, even when nothing asks for it, so that a mistake in a
// registration fails fx.New. The consumers of [ConsumersGroup] and the
// relays of [RelaysGroup] are built then too, and run from the app's
// start to its stop (see "Consumers and relays" in the package
// documentation). The *[Options] in the graph, if any, configure what
// happens when one of them stops on its own.
var Module = fx.Module("mbfx",
	fx.Provide(newBus),
	fx.Invoke(runAll),
)

// busIn is what the bus is built from. The group tags repeat the
// constants, as struct tags must be literals.
type busIn struct {
	fx.In
	Options    *mb.Options  `optional:"true"`
	Handlers   []Handler    `group:"mb.handlers"`
	Middleware []Middleware `group:"mb.middleware"`
	Modules    []mb.Module  `group:"mb.modules"`
}

// newBus builds the bus and registers everything the groups hold, in a
// fixed order whatever order fx gives them in: middleware by Order and
// Name, modules by function name, handlers by kind, message type and
// function name. It returns every problem, joined.
func newBus(in busIn) (*mb.Bus, error) {
	if in.Options != nil {
		if err := in.Options.Validate(); err != nil {
			return nil, fmt.Errorf("mbfx: the *mb.Options in the graph: %w", err)
		}
	}
	bus := mb.New(in.Options)
	err := errors.Join(
		useMiddleware(bus, in.Middleware),
		installModules(bus, in.Modules),
		registerHandlers(bus, in.Handlers),
	)
	if err != nil {
		return nil, err
	}
	return bus, nil
}

// Options configure [Module]; supply them to the app, as in
// fx.Supply(&mbfx.Options{KeepRunning: true}). Without them, or for zero
// fields, the defaults apply.
type Options struct {
	// ErrorHandler receives the error of a consumer or relay whose Run
	// ended on its own while the app was running: a consumer whose
	// receiving failed for good, say (a consumer retries what a broker
	// reports as transient). The error names the consumer or relay and
	// wraps Run's error. ErrorHandler may be called from several
	// goroutines at once. The default logs the error with Logger at
	// error level.
	ErrorHandler func(ctx context.Context, err error)
	// Logger is used by the default ErrorHandler. Nil means
	// slog.Default() at the time of the error.
	Logger *slog.Logger
	// KeepRunning leaves the app running when a consumer or relay stops
	// on its own. By default the app is shut down then, through
	// fx.Shutdowner with ExitCode, so that a service that no longer
	// consumes does not keep passing for a healthy one (its supervisor
	// restarts it instead).
	KeepRunning bool
	// ExitCode is the exit code of that shutdown (fx.App.Run exits the
	// process with it). Zero means 1.
	ExitCode int
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument] and naming the field and the fix. [Module]
// fails fx.New with them.
func (o *Options) Validate() error {
	if o.ExitCode < 0 || o.ExitCode > 255 {
		return fmt.Errorf("%w: mbfx.Options.ExitCode is %d; use 0 for the default (1) or an exit status from 1 to 255", mb.ErrInvalidArgument, o.ExitCode)
	}
	return nil
}

// withDefaults returns a copy of valid options with the zero fields
// filled.
func (o Options) withDefaults() Options {
	if o.ExitCode == 0 {
		o.ExitCode = 1
	}
	if o.ErrorHandler == nil {
		logger := o.Logger
		o.ErrorHandler = func(ctx context.Context, err error) {
			cmp.Or(logger, slog.Default()).ErrorContext(ctx, "mbfx: stopped while the app was running", "error", err)
		}
	}
	return o
}
