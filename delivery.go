package mb

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"

	"github.com/mb-go/mb/mbdriver"
)

// LocalDeliveryOptions configure a [LocalDelivery]. The zero value, or
// nil, gives the defaults.
type LocalDeliveryOptions struct {
	// Group names the deliveries' consumer group: the Group of the
	// [InboxKey]s, which keeps handlings of one message by this delivery
	// apart from those of a consumer of the same handlers. Empty means
	// "local".
	Group string
	// Inbox, if set, is consulted inside each handler's unit of work, as
	// a [Consumer] does, so that a message delivered again (its relay
	// died before marking it sent, or a handler of it failed and it is
	// retried) has no second effect on the handlers that already took it.
	// With a database inbox in the bus's database (mbsql, mbpgx), every
	// event has exactly one effect. Handlers under an inbox need stable
	// names; see [WithName].
	Inbox Inbox
	// Codec decodes payloads. Nil means the registry's
	// ([RegistryOptions.Codec]).
	Codec Codec
	// Codecs are more codecs, chosen by a message's content type as in
	// [ConsumerOptions.Codecs].
	Codecs []Codec
}

// DefaultLocalGroup is the group of a [LocalDelivery] whose options name
// none.
const DefaultLocalGroup = "local"

// LocalDelivery is an [mbdriver.Publisher] that delivers messages to the
// event handlers of a bus in this process instead of a broker: given to
// a [Relay], it turns a transactional outbox into durable in-process event
// delivery. A service with a database and no broker (SQLite alone) then
// gets event handlers that run at least once for every committed event,
// are retried with backoff when they fail, and are parked after
// RelayOptions.MaxAttempts; with an Inbox, each has exactly one effect.
//
// Publish decodes each message with the registry, as a [Consumer] does,
// and dispatches it to the bus's handlers, each in its own unit of work,
// through the bus's middleware, with the identity it was stored with. It
// returns when every handler of every message succeeded, or with the first
// failure: an error that is not retryable, so that the Relay tries the
// message again after its backoff (the messages before it in the call were
// handled). Events that the handlers emit are dispatched in process as
// usual.
//
// A LocalDelivery is safe for concurrent use. Close makes later Publish
// calls fail with [mbdriver.ErrClosed]; it closes nothing else.
type LocalDelivery struct {
	bus    *Bus
	reg    *Registry
	o      LocalDeliveryOptions
	closed atomic.Bool
}

var _ mbdriver.Publisher = (*LocalDelivery)(nil)

// NewLocalDelivery returns a LocalDelivery to bus's handlers of the
// messages reg decodes; opts may be nil for the defaults, and the
// LocalDelivery keeps a copy. It returns an error wrapping
// [ErrInvalidArgument] for a nil bus or reg, a nil codec among Codecs, or
// a bus that itself stores an event of reg in its [Outbox]
// ([Options.Forward]) and handles it — its handlers would run twice, right
// after the commit and again from the relay: subscribe the durable
// handlers on a bus of their own — and one wrapping [ErrInvalidHandler]
// when an event handler of a registered message has a generated name
// while an Inbox is set.
func NewLocalDelivery(bus *Bus, reg *Registry, opts *LocalDeliveryOptions) (*LocalDelivery, error) {
	var o LocalDeliveryOptions
	if opts != nil {
		o = *opts
	}
	var p problems
	if bus == nil {
		p.add("NewLocalDelivery: the bus is nil; create one with New")
	}
	if reg == nil {
		p.add("NewLocalDelivery: the registry is nil; create one with NewRegistry and register the delivered messages")
	}
	for i, cd := range o.Codecs {
		if cd == nil {
			p.add("LocalDeliveryOptions.Codecs[%d] is nil; remove it", i)
		}
	}
	if o.Inbox != nil && bus != nil && reg != nil {
		for _, h := range bus.subscribersOf(reg.types()) {
			if err := h.stableName(); err != nil {
				p = append(p, fmt.Errorf("mb: LocalDeliveryOptions.Inbox: %w", err))
			}
		}
	}
	if bus != nil && reg != nil {
		p = append(p, forwardedAndDelivered(bus, reg)...)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if o.Group == "" {
		o.Group = DefaultLocalGroup
	}
	if o.Codec == nil {
		o.Codec = reg.opts.Codec
	}
	o.Codecs = slices.Clone(o.Codecs)
	return &LocalDelivery{bus: bus, reg: reg, o: o}, nil
}

// Publish delivers msgs, in order, to the bus's handlers; topic is only
// used in errors. See [LocalDelivery].
func (l *LocalDelivery) Publish(ctx context.Context, topic string, msgs []*mbdriver.Message) error {
	if l.closed.Load() {
		return mbdriver.ErrClosed
	}
	for _, m := range msgs {
		var env Envelope
		v, err := decodeMessage(&env, m, l.reg, l.o.Codec, l.o.Codecs)
		if err != nil {
			return fmt.Errorf("mb: local delivery: cannot decode message %q of %q: %w", m.ID, topic, err)
		}
		guard := inboxGuard(l.o.Inbox, l.o.Group, &env, "LocalDeliveryOptions.Inbox")
		if errs := l.bus.dispatchIncoming(ctx, v, env.incoming(), guard); len(errs) > 0 {
			return fmt.Errorf("mb: local delivery: %s %q of %q: %w", env.Type, env.ID, topic, errors.Join(errs...))
		}
	}
	return nil
}

// IsRetryable reports false: a handler's failure is the message's, which
// the Relay retries on its own with backoff and parks in the end, not an
// outage of a broker.
func (l *LocalDelivery) IsRetryable(error) bool { return false }

// Close makes later Publish calls fail with [mbdriver.ErrClosed]. It is
// idempotent and returns nil.
func (l *LocalDelivery) Close() error {
	l.closed.Store(true)
	return nil
}

// forwardedAndDelivered reports the events of reg that bus both stores in
// its Outbox (Options.Forward) and handles: delivered to bus by a relay,
// their handlers would run twice, once after the commit and once more from
// the outbox.
func forwardedAndDelivered(bus *Bus, reg *Registry) []error {
	ob, ok := bus.opts.Forward.(*Outbox)
	if !ok || ob == nil {
		return nil
	}
	var errs []error
	for _, t := range reg.types() {
		reg.mu.RLock()
		name := reg.byType[t]
		reg.mu.RUnlock()
		if !selects(ob.sel, ob.enc.reg, t, name) || len(bus.subscribersOf([]reflect.Type{t})) == 0 {
			continue
		}
		errs = append(errs, fmt.Errorf("%w: NewLocalDelivery: the bus stores %s in its Outbox (Options.Forward) and handles it, so its handlers would run twice: after the commit and again from the relay; subscribe the durable handlers on another bus and deliver to that one", ErrInvalidArgument, name))
	}
	return errs
}
