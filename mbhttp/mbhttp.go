// Package mbhttp runs each HTTP request in one unit of work of an mb bus:
// the net/http middleware counterpart of a per-request transaction.
//
// # Usage
//
//	bus := mb.New(&mb.Options{Transactor: tr})
//	mux := http.NewServeMux()
//	mux.HandleFunc("POST /users", createUser) // uses r.Context() with mb.Send, mb.Emit, mbsql.Tx...
//	http.ListenAndServe(addr, mbhttp.Middleware(bus, nil)(mux))
//
// The handler's request context carries the unit: commands it sends join
// it (their writes share the unit's transaction, with savepoints), events
// it emits wait for the commit, and [mb.TxFrom] (or an adapter's accessor)
// gives it the transaction, begun on first use.
//
// # Commit and rollback
//
// The unit commits when the handler returns without panicking and with a
// status below 500 (or whatever [Options.Commit] says), and rolls back
// otherwise; then its events are dispatched. The response is held in
// memory until the unit has ended, so that a failed commit still turns it
// into a 500 before anything reaches the client: a client never sees a
// success that did not commit. A response larger than
// [Options.MaxBuffer], or one the handler flushes, starts streaming at
// that point; its unit then commits after the client has started reading,
// and a failed commit can only be reported ([Options.ErrorHandler]).
//
// A handler that panics rolls the unit back, and the panic goes on to the
// server, as without the middleware ([http.ErrAbortHandler] included).
//
// # Concurrency
//
// The middleware is safe for concurrent use; each request has a unit of
// its own.
package mbhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/mb-go/mb"
)

// DefaultMaxBuffer is the default of [Options.MaxBuffer]: 1 MiB.
const DefaultMaxBuffer = 1 << 20

// Options configure [Middleware]. The zero value, or nil, gives the
// defaults.
type Options struct {
	// Commit reports whether a request whose handler returned with status
	// commits its unit. Nil means status < 500.
	Commit func(status int) bool
	// MaxBuffer is how many bytes of a response are held until the unit
	// has ended; past it the response streams. Zero means
	// DefaultMaxBuffer; negative values are invalid.
	MaxBuffer int
	// Name names each request's unit in errors and metadata. Nil means
	// the request's method and path, such as "POST /users".
	Name func(r *http.Request) string
	// ErrorHandler receives what fails after the response started
	// streaming (a failed commit of a streamed response), and a failed
	// commit of a held response, which the client sees as a 500. Nil means
	// slog.Default() at error level.
	ErrorHandler func(ctx context.Context, err error)
}

// Validate returns the problems of o joined, each wrapping
// [mb.ErrInvalidArgument].
func (o *Options) Validate() error {
	if o.MaxBuffer < 0 {
		return fmt.Errorf("%w: mbhttp: Options.MaxBuffer is %d; use 0 for the default (%d bytes) or a positive size", mb.ErrInvalidArgument, o.MaxBuffer, DefaultMaxBuffer)
	}
	return nil
}

// errStatus fails a unit whose response has a status that rolls back.
var errStatus = errors.New("mbhttp: the response status rolls the unit of work back")

// Middleware returns middleware that runs each request in a unit of work
// of bus; opts may be nil for the defaults, and the middleware keeps a
// copy. It panics with an error wrapping [mb.ErrInvalidArgument] for a nil
// bus or invalid options: they are set-up mistakes.
func Middleware(bus *mb.Bus, opts *Options) func(http.Handler) http.Handler {
	var o Options
	if opts != nil {
		o = *opts
	}
	if bus == nil {
		panic(fmt.Errorf("%w: mbhttp.Middleware with a nil *mb.Bus", mb.ErrInvalidArgument))
	}
	if err := o.Validate(); err != nil {
		panic(err)
	}
	if o.Commit == nil {
		o.Commit = func(status int) bool { return status < 500 }
	}
	if o.MaxBuffer == 0 {
		o.MaxBuffer = DefaultMaxBuffer
	}
	if o.Name == nil {
		o.Name = func(r *http.Request) string { return r.Method + " " + r.URL.Path }
	}
	if o.ErrorHandler == nil {
		o.ErrorHandler = func(ctx context.Context, err error) {
			slog.Default().ErrorContext(ctx, "mbhttp: unit of work failed", "error", err)
		}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rw := &holder{w: w, max: o.MaxBuffer, header: w.Header().Clone()}
			err := mb.Run(r.Context(), bus, o.Name(r), func(ctx context.Context) error {
				next.ServeHTTP(rw, r.WithContext(ctx))
				if !o.Commit(rw.statusCode()) {
					return errStatus
				}
				return nil
			})
			var pe *mb.PanicError
			switch {
			case errors.As(err, &pe):
				panic(pe.Value) // rolled back; the server handles the panic as usual
			case err != nil && !errors.Is(err, errStatus) && !rw.streaming:
				// The handler succeeded but the unit did not commit: the
				// client must not see a success.
				o.ErrorHandler(r.Context(), fmt.Errorf("mbhttp: %s: %w", o.Name(r), err))
				http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
				return
			case err != nil && !errors.Is(err, errStatus):
				o.ErrorHandler(r.Context(), fmt.Errorf("mbhttp: %s: the response had started when the unit of work failed: %w", o.Name(r), err))
				return
			}
			rw.flushHeld()
		})
	}
}

// holder holds a response in memory until the unit of work has ended, or
// until it grows past max or is flushed: then it streams.
type holder struct {
	w         http.ResponseWriter
	max       int
	header    http.Header // the handler's headers while held
	status    int
	body      bytes.Buffer
	streaming bool
}

func (h *holder) Header() http.Header {
	if h.streaming {
		return h.w.Header()
	}
	return h.header
}

func (h *holder) WriteHeader(status int) {
	if h.status != 0 {
		return
	}
	h.status = status
	if h.streaming {
		h.w.WriteHeader(status)
	}
}

func (h *holder) statusCode() int {
	if h.status == 0 {
		return http.StatusOK
	}
	return h.status
}

func (h *holder) Write(p []byte) (int, error) {
	if h.status == 0 {
		h.status = http.StatusOK
	}
	if !h.streaming && h.body.Len()+len(p) > h.max {
		h.stream()
	}
	if h.streaming {
		return h.w.Write(p)
	}
	return h.body.Write(p)
}

// Flush starts streaming and flushes, when the underlying writer can.
func (h *holder) Flush() {
	h.stream()
	if f, ok := h.w.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap gives http.ResponseController the underlying writer.
func (h *holder) Unwrap() http.ResponseWriter { return h.w }

// stream sends what is held and switches to streaming.
func (h *holder) stream() {
	if h.streaming {
		return
	}
	h.streaming = true
	dst := h.w.Header()
	for k := range dst {
		if _, ok := h.header[k]; !ok {
			delete(dst, k) // the handler removed it
		}
	}
	for k, v := range h.header {
		dst[k] = v
	}
	h.w.WriteHeader(h.statusCode())
	_, _ = h.w.Write(h.body.Bytes())
	h.body.Reset()
}

// flushHeld sends a held response after its unit ended.
func (h *holder) flushHeld() {
	if !h.streaming {
		h.stream()
	}
}
