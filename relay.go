package mb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// Defaults of [RelayOptions].
const (
	DefaultRelayBatchSize   = 100
	DefaultRelayLease       = 30 * time.Second
	DefaultRelayMaxAttempts = 10
	DefaultRelayPoll        = time.Second
	DefaultRelayMinBackoff  = time.Second
	DefaultRelayMaxBackoff  = 5 * time.Minute
)

// RelayOptions configure a [Relay]. The zero value, or nil, gives the
// defaults.
type RelayOptions struct {
	// Name names the relay among the relays of one store, in the store's
	// leases. Empty means one made of the host name, the process id and a
	// random suffix.
	Name string
	// BatchSize is the most messages claimed at once. Zero means
	// DefaultRelayBatchSize (100).
	BatchSize int
	// Lease is how long a claim holds: a relay that dies leaves its
	// messages to the others after at most Lease. Publishing a batch must
	// end within half of it; the relay bounds it so. Zero means
	// DefaultRelayLease (30s).
	Lease time.Duration
	// MaxAttempts is how many times the transport may refuse a message
	// before it is parked: kept in the store with its last error, never
	// tried again unless the store's operator puts it back, and no longer
	// holding back the later messages of its partition key. An outage
	// (an error the transport reports as retryable) counts no attempt:
	// the relay gives the batch back and waits. Zero means
	// DefaultRelayMaxAttempts (10).
	MaxAttempts int
	// Backoff is the wait before a refused message is tried again. Zero
	// fields mean DefaultRelayMinBackoff (1s) and DefaultRelayMaxBackoff
	// (5m).
	Backoff Backoff
	// ReconnectBackoff is the wait after the store or the transport
	// failed with a retryable error. Zero fields mean DefaultMinBackoff
	// and DefaultMaxReconnectBackoff.
	ReconnectBackoff Backoff
	// Poll is the longest the relay waits for a wake-up before it looks
	// for due messages again (delayed messages become due without one;
	// notifications can be lost). Zero means DefaultRelayPoll (1s).
	Poll time.Duration
	// Outbox, if set, wakes the relay as soon as a unit of work of this
	// process that wrote to it commits. Relays of other processes are
	// woken by the store when it can (PostgreSQL's LISTEN/NOTIFY), and
	// otherwise poll.
	Outbox *Outbox
	// IsRetryable reports whether an error of the transport is an outage
	// rather than a refusal of the messages. Nil means the transport's
	// IsRetryable method when it has one (every [mbdriver.Driver] does),
	// otherwise [IsRetryable].
	IsRetryable func(error) bool
	// ErrorHandler receives what goes wrong without stopping Run: store
	// and transport failures, refused and parked messages. It may be
	// called from several goroutines at once. The default logs with
	// Logger at error level.
	ErrorHandler func(ctx context.Context, err error)
	// Logger is used by the default ErrorHandler. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Validate returns the problems of o joined, each wrapping
// [ErrInvalidArgument] and naming the field and the fix.
func (o *RelayOptions) Validate() error {
	var p problems
	if o.BatchSize < 0 {
		p.add("RelayOptions.BatchSize is %d; use 0 for the default (%d) or a positive size", o.BatchSize, DefaultRelayBatchSize)
	}
	if o.Lease < 0 {
		p.add("RelayOptions.Lease is %v; use 0 for the default (%v) or a positive duration", o.Lease, DefaultRelayLease)
	}
	if o.MaxAttempts < 0 {
		p.add("RelayOptions.MaxAttempts is %d; use 0 for the default (%d) or a positive count", o.MaxAttempts, DefaultRelayMaxAttempts)
	}
	if o.Poll < 0 {
		p.add("RelayOptions.Poll is %v; use 0 for the default (%v) or a positive duration", o.Poll, DefaultRelayPoll)
	}
	o.Backoff.check(&p, "RelayOptions.Backoff")
	o.ReconnectBackoff.check(&p, "RelayOptions.ReconnectBackoff")
	return p.err()
}

// withDefaults fills the zero fields of valid options for a relay that
// publishes through pub.
func (o RelayOptions) withDefaults(pub mbdriver.Publisher) RelayOptions {
	if o.Name == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		o.Name = host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b)
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultRelayBatchSize
	}
	if o.Lease == 0 {
		o.Lease = DefaultRelayLease
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultRelayMaxAttempts
	}
	if o.Poll == 0 {
		o.Poll = DefaultRelayPoll
	}
	o.Backoff = o.Backoff.withDefaults(DefaultRelayMinBackoff, DefaultRelayMaxBackoff)
	o.ReconnectBackoff = o.ReconnectBackoff.withDefaults(DefaultMinBackoff, DefaultMaxReconnectBackoff)
	if o.IsRetryable == nil {
		if r, ok := pub.(interface{ IsRetryable(error) bool }); ok {
			o.IsRetryable = r.IsRetryable
		} else {
			o.IsRetryable = IsRetryable
		}
	}
	if o.ErrorHandler == nil {
		logger := o.Logger
		o.ErrorHandler = func(ctx context.Context, err error) {
			l := logger
			if l == nil {
				l = slog.Default()
			}
			l.ErrorContext(ctx, "mb: relay error", "error", err)
		}
	}
	return o
}

// Relay publishes the messages of a transactional outbox to a transport:
// it claims due messages from the store in batches, publishes them, and
// marks them sent. Delivery is at least once: a message is published
// again if its relay dies, or its store fails, between publishing it and
// marking it sent; consumers de-duplicate with an [Inbox].
//
// Many relays, in one process or several, may share one store: the
// store's leases give each message to one relay at a time and keep the
// order of messages with the same partition key (see
// [mbdriver.OutboxStore]); a relay publishes the messages of one key in
// that order, and when the transport refuses one, holds back the later
// ones of its key until it is sent or parked. A refused message is tried
// again after Backoff, and parked after MaxAttempts; an outage of the
// transport or the store (a retryable error) counts no attempt: the relay
// gives its batch back and waits ReconnectBackoff.
//
// Create one with [NewRelay] and call Run once. Its methods are safe for
// concurrent use.
type Relay struct {
	store mbdriver.OutboxStore
	pub   mbdriver.Publisher
	o     RelayOptions
	wake  chan struct{}

	started                   atomic.Bool
	published, retried, parks atomic.Int64
}

// NewRelay returns a Relay that claims from store and publishes through
// pub (often an [mbdriver.Driver]; for delivery to this process's own
// handlers, a [LocalDelivery]); opts may be nil for the defaults, and the
// Relay keeps a copy. It returns all problems with its arguments joined,
// each wrapping [ErrInvalidArgument]. The Relay does not own store or pub:
// it closes neither.
func NewRelay(store mbdriver.OutboxStore, pub mbdriver.Publisher, opts *RelayOptions) (*Relay, error) {
	var o RelayOptions
	if opts != nil {
		o = *opts
	}
	var p problems
	if store == nil {
		p.add("NewRelay: the store is nil; pass the outbox store of your database adapter")
	}
	if pub == nil {
		p.add("NewRelay: the publisher is nil; pass a transport driver, or a LocalDelivery")
	}
	if err := o.Validate(); err != nil {
		p = append(p, err)
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return &Relay{store: store, pub: pub, o: o.withDefaults(pub), wake: make(chan struct{}, 1)}, nil
}

// Name returns the relay's name, as it appears in the store's leases.
func (r *Relay) Name() string { return r.o.Name }

// Wake makes the relay look for due messages now rather than at its next
// poll. An [Outbox] calls it after each commit that wrote to it; it never
// blocks.
func (r *Relay) Wake() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RelayStats is what a [Relay] has done since it was created, with what
// its store holds.
type RelayStats struct {
	// Published is the number of messages published and marked sent.
	Published int64
	// Retried is the number of times the transport refused a message
	// that was then set up for another try.
	Retried int64
	// Parked is the number of messages this relay parked.
	Parked int64
	// Store is what the store holds, when it reports it
	// ([mbdriver.OutboxStatter]); zero otherwise.
	Store mbdriver.OutboxStats
	// Lag is how long the oldest pending message has waited: now minus
	// Store.Oldest, zero when nothing is pending.
	Lag time.Duration
}

// Stats returns the relay's counters and, when the store can report them,
// its pending and parked counts and lag. The error is the store's.
func (r *Relay) Stats(ctx context.Context) (RelayStats, error) {
	st := RelayStats{Published: r.published.Load(), Retried: r.retried.Load(), Parked: r.parks.Load()}
	s, ok := r.store.(mbdriver.OutboxStatter)
	if !ok {
		return st, nil
	}
	var err error
	if st.Store, err = s.Stats(ctx); err == nil && !st.Store.Oldest.IsZero() {
		st.Lag = max(0, time.Since(st.Store.Oldest))
	}
	return st, err
}

func (r *Relay) report(ctx context.Context, err error) {
	defer func() { _ = recover() }()
	r.o.ErrorHandler(ctx, err)
}

// Run relays messages until ctx is done, then finishes the batch in hand
// (publishing and settling it, within half a lease) and returns nil. It
// returns an error only for misuse (a second call). Failures of the store
// or the transport are reported to ErrorHandler and retried.
func (r *Relay) Run(ctx context.Context) error {
	if r == nil {
		return fmt.Errorf("%w: Run on a nil *Relay; create one with NewRelay", ErrInvalidArgument)
	}
	if ctx == nil {
		return fmt.Errorf("%w: Run with a nil context", ErrInvalidArgument)
	}
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("mb: Relay.Run called twice; create a Relay per Run")
	}
	if r.o.Outbox != nil {
		defer r.o.Outbox.watch(r)()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wctx, stopWaiter := context.WithCancel(ctx)
	defer stopWaiter()
	if w, ok := r.store.(mbdriver.OutboxWaiter); ok {
		wg.Go(func() { r.listen(wctx, w) })
	}
	failures := 0
	for ctx.Err() == nil {
		msgs, err := r.store.Claim(ctx, r.o.Name, r.o.BatchSize, r.o.Lease)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			failures++
			r.report(ctx, fmt.Errorf("mb: relay %s: claim failed (will retry): %w", r.o.Name, err))
			_ = sleepCtx(ctx, r.o.ReconnectBackoff.Delay(failures))
			continue
		}
		failures = 0
		if len(msgs) == 0 {
			r.idle(ctx)
			continue
		}
		if outage := r.relay(ctx, msgs); outage > 0 {
			_ = sleepCtx(ctx, r.o.ReconnectBackoff.Delay(outage))
		}
	}
	return nil
}

// idle waits for a wake-up, the poll interval or ctx.
func (r *Relay) idle(ctx context.Context) {
	t := time.NewTimer(r.o.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-r.wake:
	case <-t.C:
	}
}

// listen wakes the relay on the store's notifications until ctx is done.
func (r *Relay) listen(ctx context.Context, w mbdriver.OutboxWaiter) {
	failures := 0
	for ctx.Err() == nil {
		if err := w.Wait(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			r.report(ctx, fmt.Errorf("mb: relay %s: waiting for the store's notifications failed (polling meanwhile): %w", r.o.Name, err))
			_ = sleepCtx(ctx, r.o.ReconnectBackoff.Delay(failures))
			continue
		}
		failures = 0
		r.Wake()
	}
}

// relay publishes the claimed msgs and settles them. It finishes even when
// ctx is done, within half a lease. It returns how many outages in a row
// the transport had (0 when it accepted or refused messages), so that Run
// backs off.
func (r *Relay) relay(ctx context.Context, msgs []*mbdriver.OutboxMessage) (outage int) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.Lease/2)
	defer cancel()
	var s settlement
	held := map[string]bool{} // keys with a message that was not sent
	for _, g := range byTopic(msgs) {
		if outage > 0 {
			s.release = append(s.release, g.msgs...)
			continue
		}
		var send []*mbdriver.OutboxMessage
		for _, m := range g.msgs {
			if k := m.Message.PartitionKey; k != "" && held[k] {
				s.release = append(s.release, m)
			} else {
				send = append(send, m)
			}
		}
		if len(send) == 0 {
			continue
		}
		err := r.pub.Publish(pctx, g.topic, driverMessages(send))
		switch {
		case err == nil:
			s.sent = append(s.sent, send...)
		case r.o.IsRetryable(err):
			r.report(ctx, fmt.Errorf("mb: relay %s: publishing %d message(s) to %q failed (they are given back, and tried again after a pause): %w", r.o.Name, len(send), g.topic, err))
			s.release = append(s.release, send...)
			outage = 1
		default:
			// The transport refused the batch: find out which messages,
			// one at a time, so that one bad message holds back only its
			// key.
			for _, m := range send {
				if k := m.Message.PartitionKey; k != "" && held[k] {
					s.release = append(s.release, m)
					continue
				}
				if err := r.pub.Publish(pctx, g.topic, []*mbdriver.Message{&m.Message}); err != nil {
					s.failed = append(s.failed, refusal{m, err})
					if k := m.Message.PartitionKey; k != "" {
						held[k] = true
					}
					continue
				}
				s.sent = append(s.sent, m)
			}
		}
	}
	r.settle(pctx, &s)
	return outage
}

// settlement is what became of a claimed batch.
type settlement struct {
	sent, release []*mbdriver.OutboxMessage
	failed        []refusal
}

// refusal is a message the transport refused, with its error.
type refusal struct {
	m   *mbdriver.OutboxMessage
	err error
}

// settle tells the store what became of the batch. A store failure is
// reported; the messages concerned come back when their lease ends
// (those sent are then published again).
func (r *Relay) settle(ctx context.Context, s *settlement) {
	if len(s.sent) > 0 {
		if err := r.store.Sent(ctx, s.sent); err != nil {
			r.report(ctx, fmt.Errorf("mb: relay %s: marking %d published message(s) sent failed (they will be published again): %w", r.o.Name, len(s.sent), err))
		} else {
			r.published.Add(int64(len(s.sent)))
		}
	}
	now := time.Now()
	for _, f := range s.failed {
		m, reason := f.m, truncate(f.err.Error(), maxErrorHeader)
		one := []*mbdriver.OutboxMessage{m}
		if m.Attempts+1 >= r.o.MaxAttempts {
			err := r.store.Park(ctx, one, reason)
			if err == nil {
				r.parks.Add(1)
			}
			r.report(ctx, errors.Join(fmt.Errorf("mb: relay %s: message %q to %q refused %d times; parked: %w", r.o.Name, m.Message.ID, m.Topic, m.Attempts+1, f.err), err))
			continue
		}
		err := r.store.Retry(ctx, one, now.Add(r.o.Backoff.Delay(m.Attempts+1)), reason)
		if err == nil {
			r.retried.Add(1)
		}
		r.report(ctx, errors.Join(fmt.Errorf("mb: relay %s: message %q to %q refused (attempt %d of %d, will retry): %w", r.o.Name, m.Message.ID, m.Topic, m.Attempts+1, r.o.MaxAttempts, f.err), err))
	}
	if len(s.release) > 0 {
		if err := r.store.Release(ctx, s.release); err != nil {
			r.report(ctx, fmt.Errorf("mb: relay %s: giving back %d message(s) failed (they come back when their lease ends): %w", r.o.Name, len(s.release), err))
		}
	}
}

// topicGroup is the claimed messages of one topic, in claim order.
type topicGroup struct {
	topic string
	msgs  []*mbdriver.OutboxMessage
}

// byTopic groups msgs by topic, in the order each topic first appears,
// keeping the order within each.
func byTopic(msgs []*mbdriver.OutboxMessage) []topicGroup {
	var gs []topicGroup
	for _, m := range msgs {
		i := len(gs) - 1
		for ; i >= 0 && gs[i].topic != m.Topic; i-- {
		}
		if i < 0 {
			gs = append(gs, topicGroup{topic: m.Topic})
			i = len(gs) - 1
		}
		gs[i].msgs = append(gs[i].msgs, m)
	}
	return gs
}

func driverMessages(msgs []*mbdriver.OutboxMessage) []*mbdriver.Message {
	out := make([]*mbdriver.Message, len(msgs))
	for i, m := range msgs {
		out[i] = &m.Message
	}
	return out
}
