package mb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Handler handles one message. Middleware sees every handler as a Handler:
// the message arrives in msg.Body and the result leaves as any (nil for
// events; for stream queries, the sequence the handler returned).
type Handler interface {
	Handle(ctx context.Context, msg *Message) (any, error)
}

// HandlerFunc adapts a function to a [Handler].
type HandlerFunc func(ctx context.Context, msg *Message) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, msg *Message) (any, error) { return f(ctx, msg) }

// Middleware wraps a handler, in the shape of net/http middleware. It runs
// inside the unit of work of the message (for commands and events), so the
// context it passes on must be derived from the one it receives. Middleware
// is built once per handler at registration and called concurrently.
//
// Middleware wraps commands, queries, stream queries and each event handler
// separately; msg.Kind tells them apart. Bus-wide middleware
// ([Options.Middleware], [Bus.Use]) runs outside per-handler middleware
// ([WithMiddleware]); within each list the first is outermost.
type Middleware func(next Handler) Handler

// Recover turns a panic in the handlers it wraps into an error wrapping
// ErrPanic (a *[PanicError] with the stack). The bus does this anyway at the
// edge of every unit of work; use Recover inside other middleware, such as
// logging, that should see panics as errors.
func Recover() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) (out any, err error) {
			defer func() {
				if p := recover(); p != nil {
					out, err = nil, newPanicError(p)
				}
			}()
			return next.Handle(ctx, msg)
		})
	}
}

// Timeout gives each handling a context that is cancelled after d. Handlers
// must watch ctx to stop; a handler that ignores it runs to its end. Stream
// queries pass through unchanged, since their work happens after the
// handler returns. Timeout panics with an error wrapping
// [ErrInvalidArgument] if d is not positive.
func Timeout(d time.Duration) Middleware {
	if d <= 0 {
		panic(fmt.Errorf("%w: Timeout(%v): the duration must be positive", ErrInvalidArgument, d))
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) (any, error) {
			if msg.Kind == KindStream {
				return next.Handle(ctx, msg)
			}
			ctx, cancel := context.WithTimeout(ctx, d)
			defer cancel()
			return next.Handle(ctx, msg)
		})
	}
}

// Validate calls the Validate() error method of messages that have one
// before their handler, and fails with an error wrapping both ErrValidation
// and the method's error when it returns one; the handler is then not run.
func Validate() Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) (any, error) {
			if v, ok := msg.Body.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					return nil, fmt.Errorf("%w: %s %s: %w", ErrValidation, msg.Kind, msg.Name, err)
				}
			}
			return next.Handle(ctx, msg)
		})
	}
}

// Logging logs every handling with logger (slog.Default() if nil): at debug
// level when it succeeds, at error level when it fails, with the message
// kind, name, handler, id, correlation id, duration and error.
func Logging(logger *slog.Logger) Middleware {
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) (any, error) {
			l := logger
			if l == nil {
				l = slog.Default()
			}
			start := time.Now()
			out, err := next.Handle(ctx, msg)
			level := slog.LevelDebug
			if err != nil {
				level = slog.LevelError
			}
			if !l.Enabled(ctx, level) {
				return out, err
			}
			attrs := append(messageAttrs(msg.Kind, msg.Name, msg.Handler, msg.ID(), msg.CorrelationID()),
				slog.Duration("duration", time.Since(start)))
			text := "mb: handled"
			if err != nil {
				attrs = append(attrs, slog.Any("error", err))
				text = "mb: handler failed"
			}
			l.LogAttrs(ctx, level, text, attrs...)
			return out, err
		})
	}
}

// Defaults of [RetryOptions].
const (
	DefaultRetryAttempts   = 3
	DefaultRetryMinBackoff = 10 * time.Millisecond
	DefaultRetryMaxBackoff = time.Second
)

// RetryOptions configure [Retry] and the retries of a [Publisher]. Zero
// fields take the defaults.
type RetryOptions struct {
	// MaxAttempts is the total number of tries, the first included.
	// Zero means DefaultRetryAttempts (3).
	MaxAttempts int
	// Backoff is the wait between tries. Zero fields mean
	// DefaultRetryMinBackoff (10ms), DefaultRetryMaxBackoff (1s) and a
	// Multiplier of 2.
	Backoff Backoff
	// IsRetryable decides which errors are worth another try. Nil means
	// [IsRetryable]: only errors marked with [Retryable] or having a
	// Retryable() bool method that returns true.
	IsRetryable func(error) bool
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix.
func (o *RetryOptions) Validate() error {
	var p problems
	o.check(&p, "RetryOptions")
	return p.err()
}

func (o *RetryOptions) check(p *problems, field string) {
	if o.MaxAttempts < 0 {
		p.add("%s.MaxAttempts is %d; use 0 for the default (%d) or a positive count", field, o.MaxAttempts, DefaultRetryAttempts)
	}
	o.Backoff.check(p, field+".Backoff")
}

func (o RetryOptions) withDefaults() RetryOptions {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultRetryAttempts
	}
	o.Backoff = o.Backoff.withDefaults(DefaultRetryMinBackoff, DefaultRetryMaxBackoff)
	if o.IsRetryable == nil {
		o.IsRetryable = IsRetryable
	}
	return o
}

// Retry tries a failing handler again, up to opts.MaxAttempts times in all,
// while its error is retryable, waiting with exponential backoff and jitter
// between tries. It gives up early when ctx is done and returns the last
// error.
//
// Each try of a command or event handler runs in its own nested scope of the
// unit of work: the events (and, with a savepoint-capable transaction, the
// writes) of a failed try are discarded before the next. A transaction that
// the database has aborted as a whole (a serialization failure, say) cannot
// be repaired this way; [Options.ConflictRetry] runs the whole unit again
// instead.
//
// opts may be nil for the defaults; Retry keeps a copy. It panics with
// the error of [RetryOptions.Validate] when opts are invalid.
func Retry(opts *RetryOptions) Middleware {
	var o RetryOptions
	if opts != nil {
		o = *opts
	}
	mustValid(o.Validate())
	o = o.withDefaults()
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, msg *Message) (any, error) {
			for n := 1; ; n++ {
				out, err := attempt(ctx, msg, next)
				if err == nil || n >= o.MaxAttempts || !o.IsRetryable(err) {
					return out, err
				}
				t := time.NewTimer(o.Backoff.Delay(n))
				select {
				case <-ctx.Done():
					t.Stop()
					return nil, errors.Join(err, context.Cause(ctx))
				case <-t.C:
				}
			}
		})
	}
}

// attempt calls next in a scope nested in ctx's unit of work, if any, so
// that a failure discards what the try recorded.
func attempt(ctx context.Context, msg *Message, next Handler) (out any, err error) {
	outer := frameFrom(ctx)
	if outer == nil || !outer.hasUnit() {
		return next.Handle(ctx, msg)
	}
	f, ok, err := nestTry(ctx, outer)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: retry after the handler of %s %s returned", ErrNoUnitOfWork, msg.Kind, msg.Name)
	}
	defer func() {
		if p := recover(); p != nil {
			err = newPanicError(p)
		}
		err = f.finishNested(f.x.Load(), err)
		if err != nil {
			out = nil
		}
	}()
	return next.Handle(f, msg)
}
