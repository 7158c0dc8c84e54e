package mb

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
)

// Sentinel errors. Test for them with [errors.Is]; the errors mb returns wrap
// them with the name of the message or handler involved.
var (
	// ErrNoHandler is returned when a command, query or stream query has no
	// registered handler.
	ErrNoHandler = errors.New("mb: no handler")

	// ErrDuplicateHandler is returned (or panicked with) when a second
	// handler is registered for a command, query or stream query type.
	ErrDuplicateHandler = errors.New("mb: duplicate handler")

	// ErrNoUnitOfWork is returned by [Emit], [BeforeCommit] and
	// [AfterCommit] when the context carries no open unit of work: outside
	// a command or event handler, inside a query handler, or after the
	// handler that owned the unit has returned.
	ErrNoUnitOfWork = errors.New("mb: no unit of work")

	// ErrPanic is wrapped by the error a handler's panic is turned into.
	// Use [errors.As] with *[PanicError] for the value and the stack.
	ErrPanic = errors.New("mb: handler panicked")

	// ErrResultType is returned when the result type asked of [Send] or
	// [Query] cannot hold what the registered handler returns. The handler
	// is not run.
	ErrResultType = errors.New("mb: result type mismatch")

	// ErrInvalidMessage is returned for a message that mb cannot carry: nil,
	// not a struct, or a pointer to a struct.
	ErrInvalidMessage = errors.New("mb: invalid message")

	// ErrInvalidHandler is returned (or panicked with) at registration for a
	// nil handler, a nil bus or a message type that is not a struct.
	ErrInvalidHandler = errors.New("mb: invalid handler")

	// ErrInvalidArgument is returned for a nil bus or a nil context at
	// dispatch time.
	ErrInvalidArgument = errors.New("mb: invalid argument")

	// ErrCascadeLimit is reported to the bus's error handler when an event
	// cascade goes deeper than [Options.MaxCascadeDepth]. The events past
	// the limit are not dispatched.
	ErrCascadeLimit = errors.New("mb: event cascade depth limit exceeded")

	// ErrValidation is wrapped by the error the [Validate] middleware returns
	// when a message's Validate method fails.
	ErrValidation = errors.New("mb: validation failed")
)

// PanicError is the error a panicking handler, hook or middleware is turned
// into. It wraps [ErrPanic] and, when the panic value is an error, that error
// too, so errors.Is finds both.
type PanicError struct {
	// Value is what was passed to panic.
	Value any
	// Stack is the goroutine's stack at the time of the panic.
	Stack []byte
}

func newPanicError(v any) *PanicError {
	return &PanicError{Value: v, Stack: debug.Stack()}
}

// Error returns the panic value; the stack is in the Stack field.
func (e *PanicError) Error() string {
	return fmt.Sprintf("mb: handler panicked: %v", e.Value)
}

// Unwrap returns ErrPanic and, if the panic value is an error, that error.
func (e *PanicError) Unwrap() []error {
	if err, ok := e.Value.(error); ok {
		return []error{ErrPanic, err}
	}
	return []error{ErrPanic}
}

// HandlerError is what the bus reports to its error handler when an event
// handler fails, panics or cannot be run. Its Err is the original error.
// Its fields are named like those of [Metadata]. Logged with log/slog, it
// is a group of the attributes the [Logging] middleware uses too.
type HandlerError struct {
	Kind          Kind   // the kind of message being handled (KindEvent)
	Name          string // the message name
	Handler       string // the handler name; "" when no handler ran (cascade limit)
	ID            string // the id of the message
	CorrelationID string // the id of the root of the message's business flow
	Err           error  // what went wrong
}

// LogValue makes e a group of attributes in log/slog records: msg (the
// error's text) and kind, name, handler, id and correlation_id, as the
// [Logging] middleware writes them. No payload is logged.
func (e *HandlerError) LogValue() slog.Value {
	return slog.GroupValue(append([]slog.Attr{slog.String("msg", e.Error())},
		messageAttrs(e.Kind, e.Name, e.Handler, e.ID, e.CorrelationID)...)...)
}

// messageAttrs are the attributes that identify a message in mb's log
// records, by the names every record uses.
func messageAttrs(kind Kind, name, handler, id, correlation string) []slog.Attr {
	attrs := []slog.Attr{slog.String("kind", kind.String()), slog.String("name", name)}
	if handler != "" {
		attrs = append(attrs, slog.String("handler", handler))
	}
	return append(attrs, slog.String("id", id), slog.String("correlation_id", correlation))
}

// Error describes the failure with the message and handler names.
func (e *HandlerError) Error() string {
	if e.Handler == "" {
		return fmt.Sprintf("mb: %s %s: %v", e.Kind, e.Name, e.Err)
	}
	return fmt.Sprintf("mb: %s %s: handler %s: %v", e.Kind, e.Name, e.Handler, e.Err)
}

// Unwrap returns the original error.
func (e *HandlerError) Unwrap() error { return e.Err }

// retryable marks an error as worth retrying; see Retryable.
type retryable struct{ err error }

func (r retryable) Error() string   { return r.err.Error() }
func (r retryable) Unwrap() error   { return r.err }
func (r retryable) Retryable() bool { return true }

// Retryable marks err as transient, so that the [Retry] middleware tries the
// handler again. It returns nil for a nil err. Errors from other packages can
// take part by having a method Retryable() bool.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryable{err}
}

// IsRetryable reports whether any error in err's tree has a method
// Retryable() bool that returns true.
func IsRetryable(err error) bool {
	var r interface{ Retryable() bool }
	return errors.As(err, &r) && r.Retryable()
}
