package mb

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// OutboxOptions configure an [Outbox]. The zero value, or nil, gives the
// defaults.
type OutboxOptions struct {
	// Codec encodes message payloads. Nil means the registry's
	// ([RegistryOptions.Codec]).
	Codec Codec
	// Router maps message names to topics. Nil means [DefaultRouter].
	Router Router
	// Source is the CloudEvents source of the stored messages. Empty means
	// the registry's [RegistryOptions.Source]; one of the two is required.
	Source string
	// OnWrite, if set, is called for each event with the writing context
	// and its envelope before it is stored: the hook for tracing, as
	// [PublisherOptions.OnPublish] is (it may set TraceParent, TraceState,
	// Subject or extensions, not Type or Data). The traceparent written
	// here travels with the message when a relay publishes it, hours
	// later if need be.
	OnWrite func(ctx context.Context, env *Envelope)
	// Select chooses, when the Outbox is a bus's [Options.Forward], which
	// events emitted in its units of work it stores, by message name. Nil
	// means every event whose type the registry knows.
	Select func(name string) bool
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix. [NewOutbox]
// checks them, and also that a source is set here or in the registry.
func (o *OutboxOptions) Validate() error {
	var p problems
	if o.Source != "" {
		if err := checkValue(attrSource, o.Source); err != nil {
			p.add("OutboxOptions.Source: %w", err)
		}
	}
	return p.err()
}

// Outbox is a transactional outbox: it stores events as messages in the
// same database transaction as the business data that caused them, so
// that they exist if and only if that transaction commits; a [Relay] then
// publishes them to a transport, at least once, retrying until they are
// sent. It is the portable half of an outbox; the store is an
// [mbdriver.OutboxWriter] of the database's adapter (mbsql, mbpgx), whose
// Transactor the bus uses.
//
// Events reach an Outbox in two ways: set it as the bus's
// [Options.Forward] to store the integration events that units of work
// emit, or call [Outbox.Publish] in a handler to store the events given.
// Either way they are encoded at once, in [Envelope]s carrying their
// identity (id, correlation and causation ids), and written in the unit's
// transaction before it commits; after the commit, the Relays of this
// process that watch the Outbox ([RelayOptions.Outbox]) and, through the
// store, those of other processes are woken.
//
// An Outbox is safe for concurrent use, holds no resources of its own and
// needs no closing.
type Outbox struct {
	w   mbdriver.OutboxWriter
	enc encoder
	sel func(name string) bool

	mu     sync.Mutex
	relays []*Relay // woken after each commit that wrote
}

// NewOutbox returns an Outbox that encodes with reg and writes to w; opts
// may be nil for the defaults, and the Outbox keeps a copy. It returns all
// problems with its arguments joined, each wrapping [ErrInvalidArgument]:
// a nil w or reg, invalid options, or no CloudEvents source in either
// opts.Source or the registry.
func NewOutbox(w mbdriver.OutboxWriter, reg *Registry, opts *OutboxOptions) (*Outbox, error) {
	var o OutboxOptions
	if opts != nil {
		o = *opts
	}
	var p problems
	if w == nil {
		p.add("NewOutbox: the writer is nil; pass the outbox store of your database adapter")
	}
	if reg == nil {
		p.add("NewOutbox: the registry is nil; create one with NewRegistry")
	} else if o.Source == "" && reg.opts.Source == "" {
		p.add("OutboxOptions.Source is empty and the registry has no RegistryOptions.Source; set one of them to the CloudEvents source of this service, e.g. \"/orders\"")
	}
	if err := o.Validate(); err != nil {
		p = append(p, err)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	if o.Codec == nil {
		o.Codec = reg.opts.Codec
	}
	if o.Router == nil {
		o.Router = DefaultRouter
	}
	return &Outbox{
		w: w, sel: o.Select,
		enc: encoder{reg: reg, codec: o.Codec, route: o.Router, source: o.Source, hook: o.OnWrite, what: "OutboxOptions.OnWrite"},
	}, nil
}

// Publish stores events in the outbox, in the transaction of the unit of
// work ctx belongs to (a command or event handler of a bus whose
// Transactor is the store's database): they are published by a Relay if
// and only if the unit commits. Each event gets a new id; its correlation
// and causation ids come from the message being handled, as with
// [Publisher.Publish]. Publish returns an error wrapping ErrNoUnitOfWork
// outside a unit of work, the encoding error of an event (nothing is
// stored then), or the store's error.
func (o *Outbox) Publish(ctx context.Context, events ...any) error {
	return o.PublishAt(ctx, time.Time{}, events...)
}

// PublishAt is [Outbox.Publish] for events that must not be published
// before at: delayed or scheduled messages, which a Relay publishes when
// they are due. A zero at means at once.
func (o *Outbox) PublishAt(ctx context.Context, at time.Time, events ...any) error {
	if ctx == nil {
		return fmt.Errorf("%w: Outbox.Publish with a nil context", ErrInvalidArgument)
	}
	f := frameFrom(ctx)
	if f == nil || !f.hasUnit() {
		return fmt.Errorf("%w: Outbox.Publish outside a command or event handler: the events would not be stored with any transaction", ErrNoUnitOfWork)
	}
	corr, cause := identityFrom(ctx)
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339Nano)
	msgs := make([]mbdriver.OutboxMessage, len(events))
	ptrs := make([]*mbdriver.OutboxMessage, len(events))
	for i, ev := range events {
		m := &msgs[i]
		topic, err := o.enc.message(ctx, ev, NewID(), corr, cause, now, ts, &m.Message)
		if err != nil {
			return fmt.Errorf("mb: Outbox.Publish: event %d (%T): %w", i, ev, err)
		}
		m.Topic, m.NotBefore, ptrs[i] = topic, at, m
	}
	if err := o.w.Write(ctx, ptrs); err != nil {
		return fmt.Errorf("mb: Outbox.Publish: %w", err)
	}
	return AfterCommit(ctx, func(context.Context) { o.wake() })
}

// beforeCommit stores the chosen events of a unit about to commit.
func (o *Outbox) beforeCommit(_ *Bus, ctx context.Context, evs []recorded) error {
	topics, msgs, err := o.enc.encodeRecorded(ctx, o.sel, evs)
	if err != nil {
		return fmt.Errorf("mb: Options.Forward: %w", err)
	}
	if len(msgs) == 0 {
		return nil
	}
	out := make([]mbdriver.OutboxMessage, len(msgs))
	ptrs := make([]*mbdriver.OutboxMessage, len(msgs))
	for i := range msgs {
		out[i] = mbdriver.OutboxMessage{Topic: topics[i], Message: msgs[i]}
		ptrs[i] = &out[i]
	}
	if err := o.w.Write(ctx, ptrs); err != nil {
		return fmt.Errorf("mb: Options.Forward: writing %d event(s) to the outbox: %w", len(ptrs), err)
	}
	return nil
}

// afterCommit wakes the relays after a unit that wrote to the outbox
// committed. (A unit whose events Select left out wakes them for
// nothing, which costs them one empty claim.)
func (o *Outbox) afterCommit(*Bus, context.Context, []recorded) { o.wake() }

// wake wakes the relays that watch the outbox: those of this process at
// once, those of others through the store when it can notify them.
func (o *Outbox) wake() {
	if n, ok := o.w.(mbdriver.OutboxNotifier); ok {
		n.Notify()
	}
	o.mu.Lock()
	relays := o.relays
	o.mu.Unlock()
	for _, r := range relays {
		r.Wake()
	}
}

// watch makes r woken by the outbox's commits until the returned function
// is called.
func (o *Outbox) watch(r *Relay) (unwatch func()) {
	o.mu.Lock()
	o.relays = append(o.relays[:len(o.relays):len(o.relays)], r)
	o.mu.Unlock()
	return func() {
		o.mu.Lock()
		defer o.mu.Unlock()
		for i, x := range o.relays {
			if x == r {
				o.relays = append(o.relays[:i:i], o.relays[i+1:]...)
				return
			}
		}
	}
}

// EmitAt records events in the unit of work of ctx, like [Emit], to be
// delivered not before t: a reminder tomorrow, a timeout in an hour. They
// go through the bus's outbox (its [Options.Forward] must be an *Outbox),
// stored in the unit's transaction, and a [Relay] publishes them when they
// are due: to other processes, or to the bus's own handlers when the relay
// publishes to a [LocalDelivery]. They are not dispatched in process when
// the unit commits, and are dropped with it when it rolls back. EmitAt is
// [Outbox.PublishAt] on the bus's outbox.
//
// EmitAt returns an error wrapping ErrNoUnitOfWork outside a command or
// event handler, and one wrapping ErrInvalidArgument when the bus forwards
// to no Outbox.
func EmitAt(ctx context.Context, t time.Time, events ...any) error {
	if ctx == nil {
		return fmt.Errorf("%w: EmitAt with a nil context", ErrInvalidArgument)
	}
	f := frameFrom(ctx)
	if f == nil || !f.hasUnit() {
		return fmt.Errorf("%w: EmitAt outside a command or event handler", ErrNoUnitOfWork)
	}
	ob, ok := f.bus().opts.Forward.(*Outbox)
	if !ok {
		return fmt.Errorf("%w: EmitAt needs an *Outbox as the bus's Options.Forward to keep the events until they are due", ErrInvalidArgument)
	}
	return ob.PublishAt(ctx, t, events...)
}
