package mb

import (
	"context"
	"fmt"
	"reflect"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// Forwarder sends the events that units of work emit to other processes,
// besides dispatching them to the bus's own handlers. Set one in
// [Options.Forward]; the choice between the two implementations is that
// one line:
//
//   - an *[Outbox] stores them in the unit's transaction, before it
//     commits, and a [Relay] publishes them: never lost, even if the
//     process dies right after the commit;
//   - a *[Publisher] publishes them after the unit has committed: simpler,
//     but an event is lost if the process dies between the commit and the
//     publish, or if publishing fails for good (reported to
//     [Options.ErrorHandler]).
//
// Either forwards the events its Select option chooses (by default, those
// whose type its registry knows: the integration events), each with the
// id, correlation and causation ids it has in process. Events of units
// that roll back are not forwarded.
type Forwarder interface {
	// beforeCommit runs in a unit of b that is about to commit, with the
	// unit's root frame as ctx; its error rolls the unit back.
	beforeCommit(b *Bus, ctx context.Context, evs []recorded) error
	// afterCommit runs after the unit committed.
	afterCommit(b *Bus, ctx context.Context, evs []recorded)
}

// selects reports whether the event of type t, named name, is forwarded:
// sel's choice, or by default whether reg knows t.
func selects(sel func(string) bool, reg *Registry, t reflect.Type, name string) bool {
	if sel != nil {
		return sel(name)
	}
	reg.mu.RLock()
	_, ok := reg.byType[t]
	reg.mu.RUnlock()
	return ok
}

// encodeRecorded encodes the events among evs that sel chooses, with their
// in-process identity.
func (c *encoder) encodeRecorded(ctx context.Context, sel func(string) bool, evs []recorded) ([]string, []mbdriver.Message, error) {
	var topics []string
	var msgs []mbdriver.Message
	now := time.Now().UTC()
	ts := now.Format(time.RFC3339Nano)
	for _, r := range evs {
		et := r.rec.et
		if !selects(sel, c.reg, et.info.typ, et.info.name) {
			continue
		}
		md := &r.rec.meta
		msgs = append(msgs, mbdriver.Message{})
		topic, err := c.message(ctx, r.rec.value, md.ID(), md.correlation(), md.causation(), now, ts, &msgs[len(msgs)-1])
		if err != nil {
			return nil, nil, fmt.Errorf("event %s %q: %w", et.info.name, md.ID(), err)
		}
		topics = append(topics, topic)
	}
	return topics, msgs, nil
}

// beforeCommit does nothing: a Publisher forwards after the commit.
func (p *Publisher) beforeCommit(*Bus, context.Context, []recorded) error { return nil }

// afterCommit publishes the chosen events of a committed unit. Failures
// go to the bus's error handler: the unit has committed, and no caller is
// left to tell.
func (p *Publisher) afterCommit(b *Bus, ctx context.Context, evs []recorded) {
	topics, msgs, err := p.enc.encodeRecorded(ctx, p.sel, evs)
	if err == nil && len(msgs) > 0 {
		var batches []*topicBatch
		for i := range msgs {
			batches = addToTopic(batches, topics[i], &msgs[i])
		}
		err = p.sendAll(ctx, batches)
	}
	if err != nil {
		b.report(ctx, fmt.Errorf("mb: Options.Forward: the events of a committed unit were not published (they are lost): %w", err))
	}
}
