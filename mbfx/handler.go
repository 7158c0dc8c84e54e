package mbfx

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"runtime"
	"slices"
	"strings"

	"go.uber.org/fx"

	"github.com/mb-go/mb"
)

// Handler is one typed handler declared in the fx graph: a command,
// query, stream query or event handler with its [mb.HandlerOption]s,
// registered on the bus that [Module] provides. Make one with [Command],
// [CommandNoResult], [Query], [Stream] or [Event], and put it in the graph
// with [Handlers] or from a constructor annotated with [AsHandler].
//
// A Handler is a plain value: it registers nothing until the bus is built,
// and it may be copied and registered on several buses (one per fx app).
// The zero Handler is not valid; registering it fails fx.New.
type Handler struct {
	kind mb.Kind
	msg  reflect.Type
	fn   string // the Go function name, without its package path
	reg  func(*mb.Bus) error
}

// Command declares h as the handler of commands of type C, as
// [mb.HandleCommand] registers it: a second handler for C, from anywhere
// in the graph, fails fx.New with an error wrapping
// [mb.ErrDuplicateHandler].
func Command[C, R any](h func(ctx context.Context, cmd C) (R, error), opts ...mb.HandlerOption) Handler {
	return declare[C](mb.KindCommand, h, func(bus *mb.Bus) error { return mb.HandleCommandSafely(bus, h, opts...) })
}

// CommandNoResult declares h as the handler of commands of type C that
// return only an error, as [mb.HandleCommandNoResult] registers it;
// dispatch them with [mb.Exec].
func CommandNoResult[C any](h func(ctx context.Context, cmd C) error, opts ...mb.HandlerOption) Handler {
	return declare[C](mb.KindCommand, h, func(bus *mb.Bus) error { return mb.HandleCommandNoResultSafely(bus, h, opts...) })
}

// Query declares h as the handler of queries of type Q, as
// [mb.HandleQuery] registers it.
func Query[Q, R any](h func(ctx context.Context, q Q) (R, error), opts ...mb.HandlerOption) Handler {
	return declare[Q](mb.KindQuery, h, func(bus *mb.Bus) error { return mb.HandleQuerySafely(bus, h, opts...) })
}

// Stream declares h as the handler of streaming queries of type Q, as
// [mb.HandleStream] registers it.
func Stream[Q, T any](h func(ctx context.Context, q Q) iter.Seq2[T, error], opts ...mb.HandlerOption) Handler {
	return declare[Q](mb.KindStream, h, func(bus *mb.Bus) error { return mb.HandleStreamSafely(bus, h, opts...) })
}

// Event declares h as a handler of events of type E (a struct type, an
// interface type or any), as [mb.Subscribe] registers it. Event handlers
// declared anywhere in the graph run in the order described under
// "Declaring handlers" in the package documentation; give them
// [mb.WithPriority] where their order matters.
func Event[E any](h func(ctx context.Context, event E) error, opts ...mb.HandlerOption) Handler {
	return declare[E](mb.KindEvent, h, func(bus *mb.Bus) error { return mb.SubscribeSafely(bus, h, opts...) })
}

func declare[M any](kind mb.Kind, fn any, reg func(*mb.Bus) error) Handler {
	return Handler{kind: kind, msg: reflect.TypeFor[M](), fn: funcName(fn), reg: reg}
}

// String describes h as errors name it, such as "command handler
// users.createUser for users.CreateUser". The name is the Go function's;
// the one given with [mb.WithName] appears in the bus's own errors.
func (h Handler) String() string {
	if h.reg == nil {
		return "empty mbfx.Handler"
	}
	return fmt.Sprintf("%s handler %s for %s", h.kind, h.fn, h.msg)
}

// register registers h on bus; the error names h.
func (h Handler) register(bus *mb.Bus) error {
	if h.reg == nil {
		return fmt.Errorf("mbfx: %w: an empty mbfx.Handler in group %q; make handlers with mbfx.Command, Query, Stream or Event", mb.ErrInvalidHandler, HandlersGroup)
	}
	if err := h.reg(bus); err != nil {
		return fmt.Errorf("mbfx: registering the %s: %w", h, err)
	}
	return nil
}

// Handlers puts hs in the graph, in group [HandlersGroup], for the bus
// that [Module] provides. Use it for handlers that need nothing from the
// graph; handlers that do are returned by a constructor annotated with
// [AsHandler].
func Handlers(hs ...Handler) fx.Option {
	return supply(HandlersGroup, hs)
}

// AsHandler annotates constructor, for [fx.Provide], so that the
// handlers it returns join group [HandlersGroup]. constructor is a
// function that takes any dependencies from the graph and returns a
// [Handler] or a []Handler, optionally followed by an error:
//
//	func NewHandlers(repo *Repo, mail Mailer) []mbfx.Handler {
//		return []mbfx.Handler{
//			mbfx.Command(repo.CreateUser),
//			mbfx.Event(mail.SendWelcome),
//		}
//	}
//
//	fx.Provide(mbfx.AsHandler(NewHandlers))
//
// A constructor of another shape fails fx.New with an error wrapping
// [mb.ErrInvalidArgument] that names it.
func AsHandler(constructor any) any {
	return as[Handler]("AsHandler", HandlersGroup, constructor)
}

// registerHandlers registers hs on bus in the order of [sortHandlers] and
// returns every failure, joined.
func registerHandlers(bus *mb.Bus, hs []Handler) error {
	hs = slices.Clone(hs)
	sortHandlers(hs)
	var errs []error
	for _, h := range hs {
		if err := h.register(bus); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sortHandlers orders hs by kind (commands, queries, stream queries,
// events), then by message type, then by Go function name: fx gives a
// value group in an order it shuffles on purpose, and the order of
// registration is the order in which an event's handlers of equal
// priority run.
func sortHandlers(hs []Handler) {
	slices.SortStableFunc(hs, func(a, b Handler) int {
		return cmp.Or(
			cmp.Compare(a.kind, b.kind),
			cmp.Compare(typeName(a.msg), typeName(b.msg)),
			cmp.Compare(a.fn, b.fn),
		)
	})
}

func typeName(t reflect.Type) string {
	if t == nil {
		return ""
	}
	return t.PkgPath() + "." + t.String()
}

// funcName returns the name of the function fn as package.Function (or
// package.(*Type).Method for a method value), without the package path,
// as mb names handlers; "nil" for a nil function.
func funcName(fn any) string {
	v := reflect.ValueOf(fn)
	if !v.IsValid() || v.Kind() != reflect.Func || v.IsNil() {
		return "nil"
	}
	f := runtime.FuncForPC(v.Pointer())
	if f == nil {
		return "?"
	}
	name := strings.TrimSuffix(f.Name(), "-fm")
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	return name
}
