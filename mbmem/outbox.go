package mbmem

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
)

// Outbox is an in-memory transactional outbox store: an
// [mbdriver.OutboxWriter] and [mbdriver.OutboxStore] for tests and for
// programs whose outbox need not survive the process. A Write in a unit of
// work holds its messages until the unit ends: they are added when it
// commits and dropped when it rolls back (with [mb.AfterCommit] and
// [mb.AfterRollback], so a bus needs no Transactor). It keeps per-key
// order and leases as the SQL stores do, and reports [mbdriver.OutboxStats].
//
// The zero value is an empty Outbox ready to use. An Outbox is safe for
// concurrent use and must not be copied after first use.
type Outbox struct {
	mu     sync.Mutex
	seq    int64
	rows   []*outboxRow // pending and parked, in write order
	parked int64
	now    func() time.Time // for tests; nil means time.Now
	added  chan struct{}    // closed when messages are added; see Wait
	missed bool             // messages were added while nobody waited
	chg    chan struct{}    // closed at the next change; see Changed
}

// changed tells the watchers of Changed. Call with o.mu held.
func (o *Outbox) changed() {
	if o.chg != nil {
		close(o.chg)
		o.chg = nil
	}
}

// Changed returns a channel that is closed at the next change of the
// outbox: messages added, sent, retried, given back or parked. With
// [Outbox.Due] it lets a test wait, without polling, until every message
// due was relayed (package mbtest's Harness does).
func (o *Outbox) Changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.chg == nil {
		o.chg = make(chan struct{})
	}
	return o.chg
}

// Due returns the number of pending messages that are due now (not
// waiting for their NotBefore time or a retry's), and of those that wait.
// Parked messages count in neither.
func (o *Outbox) Due() (due, waiting int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.clock()
	for _, r := range o.rows {
		switch {
		case r.parked:
		case r.due.After(now):
			waiting++
		default:
			due++
		}
	}
	return due, waiting
}

type outboxRow struct {
	seq      int64
	m        mbdriver.OutboxMessage
	created  time.Time
	due      time.Time // not before; NotBefore or a retry's time
	owner    string
	until    time.Time // the lease
	attempts int
	reason   string
	parked   bool
}

var (
	_ mbdriver.OutboxWriter  = (*Outbox)(nil)
	_ mbdriver.OutboxStore   = (*Outbox)(nil)
	_ mbdriver.OutboxStatter = (*Outbox)(nil)
	_ mbdriver.OutboxWaiter  = (*Outbox)(nil)
)

func (o *Outbox) clock() time.Time {
	if o.now != nil {
		return o.now()
	}
	return time.Now()
}

// Write holds copies of msgs until the unit of work of ctx ends: they are
// stored if it commits, in the order given. Outside a unit of work it
// returns an error wrapping [mb.ErrNoUnitOfWork].
func (o *Outbox) Write(ctx context.Context, msgs []*mbdriver.OutboxMessage) error {
	cp := make([]mbdriver.OutboxMessage, len(msgs))
	for i, m := range msgs {
		cp[i] = *m
		cp[i].Message.Headers = maps.Clone(m.Message.Headers)
		cp[i].Message.Body = slices.Clone(m.Message.Body)
		cp[i].Attempts, cp[i].Handle = 0, nil
	}
	err := mb.AfterCommit(ctx, func(context.Context) { o.add(cp) })
	if err != nil {
		return fmt.Errorf("mbmem: Outbox.Write: %w", err)
	}
	return nil
}

func (o *Outbox) add(msgs []mbdriver.OutboxMessage) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.clock()
	for _, m := range msgs {
		o.seq++
		o.rows = append(o.rows, &outboxRow{seq: o.seq, m: m, created: now, due: m.NotBefore})
	}
	if o.added != nil {
		close(o.added)
		o.added = nil
	} else {
		o.missed = true
	}
	o.changed()
}

// Wait returns when messages are added after the last Wait returned (at
// once if some were added meanwhile), or with ctx's error: a Relay over
// the Outbox is woken the moment a unit's messages land.
func (o *Outbox) Wait(ctx context.Context) error {
	o.mu.Lock()
	if o.missed {
		o.missed = false
		o.mu.Unlock()
		return nil
	}
	if o.added == nil {
		o.added = make(chan struct{})
	}
	ch := o.added
	o.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Claim gives owner up to max due messages for lease, keeping per-key
// order; see [mbdriver.OutboxStore].
func (o *Outbox) Claim(ctx context.Context, owner string, max int, lease time.Duration) ([]*mbdriver.OutboxMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.clock()
	blocked := map[string]bool{} // keys with an earlier message not given out now
	var out []*mbdriver.OutboxMessage
	for _, r := range o.rows {
		if len(out) >= max {
			break
		}
		if r.parked {
			continue
		}
		k := r.m.Message.PartitionKey
		free := r.due.Compare(now) <= 0 && !r.until.After(now)
		if k != "" && blocked[k] || !free {
			if k != "" {
				blocked[k] = true
			}
			continue
		}
		r.owner, r.until = owner, now.Add(lease)
		m := r.m
		m.Attempts, m.Handle = r.attempts, r
		out = append(out, &m)
	}
	return out, nil
}

// settle applies fn to the rows of msgs that owner still holds.
func (o *Outbox) settle(msgs []*mbdriver.OutboxMessage, fn func(r *outboxRow)) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	defer o.changed()
	for _, m := range msgs {
		r, ok := m.Handle.(*outboxRow)
		if !ok {
			return fmt.Errorf("mbmem: Outbox: message %q was not claimed from this outbox", m.Message.ID)
		}
		fn(r)
	}
	return nil
}

// Sent deletes the rows of msgs.
func (o *Outbox) Sent(_ context.Context, msgs []*mbdriver.OutboxMessage) error {
	gone := map[*outboxRow]bool{}
	err := o.settle(msgs, func(r *outboxRow) { gone[r] = true })
	o.mu.Lock()
	o.rows = slices.DeleteFunc(o.rows, func(r *outboxRow) bool { return gone[r] })
	o.changed()
	o.mu.Unlock()
	return err
}

// Retry makes msgs due again at at, counting an attempt.
func (o *Outbox) Retry(_ context.Context, msgs []*mbdriver.OutboxMessage, at time.Time, reason string) error {
	return o.settle(msgs, func(r *outboxRow) {
		r.attempts++
		r.due, r.until, r.reason = at, time.Time{}, reason
	})
}

// Release makes msgs due again at once, counting no attempt.
func (o *Outbox) Release(_ context.Context, msgs []*mbdriver.OutboxMessage) error {
	return o.settle(msgs, func(r *outboxRow) { r.until = time.Time{} })
}

// Park keeps msgs aside with reason; see [Outbox.Parked] and
// [Outbox.Unpark].
func (o *Outbox) Park(_ context.Context, msgs []*mbdriver.OutboxMessage, reason string) error {
	return o.settle(msgs, func(r *outboxRow) {
		if !r.parked {
			o.parked++
		}
		r.attempts++
		r.parked, r.reason, r.until = true, reason, time.Time{}
	})
}

// Parked returns copies of the parked messages, in write order, with
// their attempts; reasons come with them in the same order.
func (o *Outbox) Parked() ([]mbdriver.OutboxMessage, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []mbdriver.OutboxMessage
	var reasons []string
	for _, r := range o.rows {
		if r.parked {
			m := r.m
			m.Attempts = r.attempts
			out = append(out, m)
			reasons = append(reasons, r.reason)
		}
	}
	return out, reasons
}

// Unpark makes the parked messages with the given ids due again, with
// their attempts counted from zero, and reports how many it found.
func (o *Outbox) Unpark(ids ...string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, r := range o.rows {
		if r.parked && slices.Contains(ids, r.m.Message.ID) {
			r.parked, r.attempts, r.due, r.reason = false, 0, time.Time{}, ""
			o.parked--
			n++
		}
	}
	return n
}

// Stats returns the pending and parked counts and when the oldest pending
// message was written.
func (o *Outbox) Stats(context.Context) (mbdriver.OutboxStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := mbdriver.OutboxStats{Parked: o.parked, Pending: int64(len(o.rows)) - o.parked}
	for _, r := range o.rows {
		if !r.parked {
			st.Oldest = r.created
			break
		}
	}
	return st, nil
}
