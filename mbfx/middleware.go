package mbfx

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
)

// Middleware is bus-wide middleware declared in the fx graph, in group
// [MiddlewareGroup]: the bus that [Module] provides adds it with
// [mb.Bus.Use], inside the middleware of [mb.Options.Middleware].
//
// fx gives a value group in no particular order, and the order of
// middleware matters (a Recover outside a Retry, a Logging outside
// both), so each one says where it goes: middleware of lower Order wraps
// middleware of higher Order, and among equal Orders, names in ascending
// order wrap the later ones.
type Middleware struct {
	// Name names the middleware in errors and orders middleware of equal
	// Order. It is required and must be unique among the app's
	// middleware: two with one name are, most likely, one module
	// included twice.
	Name string
	// Order places the middleware: lower wraps higher (runs first on the
	// way in, last on the way out). Zero is as good a default as any.
	Order int
	// Middleware wraps every command, query, stream query and event
	// handler of the bus. It is required.
	Middleware mb.Middleware
}

// Use puts mws in the graph, in group [MiddlewareGroup], for the bus that
// [Module] provides. Middleware that needs something from the graph (a
// logger, a meter) comes from a constructor annotated with
// [AsMiddleware].
func Use(mws ...Middleware) fx.Option {
	return supply(MiddlewareGroup, mws)
}

// AsMiddleware annotates constructor, for [fx.Provide], so that the
// middleware it returns joins group [MiddlewareGroup]. constructor takes
// any dependencies from the graph and returns a [Middleware] or a
// []Middleware, optionally followed by an error:
//
//	fx.Provide(mbfx.AsMiddleware(func(log *slog.Logger) mbfx.Middleware {
//		return mbfx.Middleware{Name: "logging", Order: -10, Middleware: mb.Logging(log)}
//	}))
//
// A constructor of another shape fails fx.New with an error wrapping
// [mb.ErrInvalidArgument] that names it.
func AsMiddleware(constructor any) any {
	return as[Middleware]("AsMiddleware", MiddlewareGroup, constructor)
}

// useMiddleware checks mws and adds them to bus in their order; it adds
// none when any is invalid, and returns every problem, joined.
func useMiddleware(bus *mb.Bus, mws []Middleware) error {
	var errs []error
	seen := map[string]bool{}
	for _, m := range mws {
		switch {
		case m.Name == "":
			errs = append(errs, fmt.Errorf("mbfx: %w: a Middleware in group %q has no Name; name it (the name orders and identifies it)", mb.ErrInvalidArgument, MiddlewareGroup))
		case seen[m.Name]:
			errs = append(errs, fmt.Errorf("mbfx: %w: two Middleware in group %q are named %q; is a module included twice?", mb.ErrInvalidArgument, MiddlewareGroup, m.Name))
		}
		seen[m.Name] = true
		if m.Middleware == nil {
			errs = append(errs, fmt.Errorf("mbfx: %w: Middleware %q has a nil Middleware func", mb.ErrInvalidArgument, m.Name))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	mws = slices.Clone(mws)
	slices.SortFunc(mws, func(a, b Middleware) int {
		return cmp.Or(cmp.Compare(a.Order, b.Order), cmp.Compare(a.Name, b.Name))
	})
	chain := make([]mb.Middleware, len(mws))
	for i, m := range mws {
		chain[i] = m.Middleware
	}
	if len(chain) > 0 {
		bus.Use(chain...)
	}
	return nil
}

// Install puts modules in the graph, in group [ModulesGroup]: the bus
// that [Module] provides installs each of them, as [mb.Bus.Install]
// does. A package that already exposes its handlers as an [mb.Module]
// joins an fx app with one line:
//
//	mbfx.Install(users.Register)
//
// A module may also add middleware ([mb.Bus.Use]) or observers
// ([mb.Bus.Observe]) to the bus. Modules that need something from the
// graph come from a constructor annotated with [AsModule].
func Install(modules ...mb.Module) fx.Option {
	return supply(ModulesGroup, modules)
}

// AsModule annotates constructor, for [fx.Provide], so that the modules
// it returns join group [ModulesGroup]. constructor takes any
// dependencies from the graph and returns an [mb.Module] or a
// []mb.Module, optionally followed by an error. A constructor of another
// shape fails fx.New with an error wrapping [mb.ErrInvalidArgument] that
// names it.
func AsModule(constructor any) any {
	return as[mb.Module]("AsModule", ModulesGroup, constructor)
}

// installModules installs modules on bus, ordered by Go function name
// (fx shuffles value groups), and returns every failure, joined, each
// naming its module.
func installModules(bus *mb.Bus, modules []mb.Module) error {
	type named struct {
		name string
		m    mb.Module
	}
	ms := make([]named, len(modules))
	for i, m := range modules {
		ms[i] = named{funcName(m), m}
	}
	slices.SortStableFunc(ms, func(a, b named) int { return cmp.Compare(a.name, b.name) })
	var errs []error
	for _, m := range ms {
		if m.m == nil {
			errs = append(errs, fmt.Errorf("mbfx: %w: a nil mb.Module in group %q", mb.ErrInvalidHandler, ModulesGroup))
			continue
		}
		if err := install(bus, m.m); err != nil {
			errs = append(errs, fmt.Errorf("mbfx: installing module %s: %w", m.name, err))
		}
	}
	return errors.Join(errs...)
}

// install runs m on bus. A module that registers with the panicking
// functions (mb.HandleCommand rather than mb.HandleCommandSafely) fails
// with the error it panicked with, instead of taking fx.New down.
func install(bus *mb.Bus, m mb.Module) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = fmt.Errorf("panicked: %w", e)
			} else {
				err = fmt.Errorf("panicked: %v", r)
			}
		}
	}()
	return m(bus)
}
