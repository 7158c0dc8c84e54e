package mb

// The consumer runtime: what one Run of a Consumer does.
//
// Each subscription is a source: a receiver, a receive loop, an acker and,
// when the driver keeps messages held on request (Capabilities.Extend), an
// extender. The receive loop asks the receiver for a batch and hands each
// message to a worker: by partition key to the worker that owns the key
// (keyed channels), or to any free worker. A worker decodes the message,
// dispatches it to the bus's handlers and settles it: handed to the
// source's acker, which acks in batches, nacked for the broker to deliver
// again, retried in place, or dead-lettered. From receipt until it is
// settled a message is held: the extender keeps it held at the broker.
//
// On stop, the receive loops end first, then the workers drain what they
// were given (bounded by DrainTimeout), then the extenders and ackers end,
// and the receivers are closed last.

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// source is one subscription of a run and what serves it.
type source struct {
	rcv   mbdriver.Receiver
	topic string
	acks  chan *delivery // to the source's acker
	held  *heldSet       // the messages to keep held; nil without Extend
}

// delivery is one received message on its way through the consumer.
type delivery struct {
	msg *mbdriver.Message
	src *source
}

func (d *delivery) sourceTopic() string {
	if d.msg.Topic != "" {
		return d.msg.Topic
	}
	return d.src.topic
}

// partitionKey returns the message's partition key: the driver's, or the
// envelope's "ce-partitionkey" header.
func partitionKey(m *mbdriver.Message) string {
	if m.PartitionKey != "" {
		return m.PartitionKey
	}
	const header = headerPrefix + attrPartitionKey
	if k, ok := m.Headers[header]; ok {
		return k
	}
	for k, v := range m.Headers {
		if len(k) == len(header) && strings.EqualFold(k, header) {
			return v
		}
	}
	return ""
}

// heldSet is the messages of one source that were received and are not
// settled yet. Its methods do nothing on a nil set.
type heldSet struct {
	mu sync.Mutex
	m  map[*mbdriver.Message]struct{}
}

func (h *heldSet) add(msgs []*mbdriver.Message) {
	if h == nil {
		return
	}
	h.mu.Lock()
	for _, m := range msgs {
		if m != nil {
			h.m[m] = struct{}{}
		}
	}
	h.mu.Unlock()
}

func (h *heldSet) remove(msgs []*mbdriver.Message) {
	if h == nil {
		return
	}
	h.mu.Lock()
	for _, m := range msgs {
		delete(h.m, m)
	}
	h.mu.Unlock()
}

func (h *heldSet) snapshot() []*mbdriver.Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*mbdriver.Message, 0, len(h.m))
	for m := range h.m {
		out = append(out, m)
	}
	return out
}

// run is one Run of a Consumer.
type run struct {
	c         *Consumer
	sources   []*source
	keyed     []chan *delivery // one per worker, for messages with a key
	free      chan *delivery   // for any worker
	work      context.Context  // the handlers' context
	stopWork  context.CancelFunc
	abandoned atomic.Int64 // messages nacked unfinished at a drain timeout
}

// serve handles the messages of rcvs until ctx is done or a receiver fails
// for good, drains, and closes rcvs.
func (c *Consumer) serve(ctx context.Context, rcvs []mbdriver.Receiver) error {
	rn := c.newRun(ctx, rcvs)
	defer rn.stopWork()
	workers := rn.startWorkers()
	ackers := rn.startAckers(ctx)
	stopExtending := rn.startExtenders(ctx)
	fatal := rn.receiveAll(ctx)
	timedOut := rn.drain(workers)
	stopExtending()
	for _, src := range rn.sources {
		close(src.acks)
	}
	ackers.Wait()
	errs := append(fatal, closeReceivers(rcvs))
	if k := rn.abandoned.Load(); k > 0 || timedOut {
		errs = append(errs, fmt.Errorf("mb: consumer: drain timed out after %v: %d message(s) abandoned unfinished and nacked for redelivery", c.o.DrainTimeout, k))
	}
	return errors.Join(errs...)
}

func (c *Consumer) newRun(ctx context.Context, rcvs []mbdriver.Receiver) *run {
	rn := &run{c: c}
	// Handlers are not cancelled with ctx, only when the drain times out.
	rn.work, rn.stopWork = context.WithCancel(context.WithoutCancel(ctx))
	// The channels hold up to one batch beyond the messages being
	// handled, so that the receive loop can fetch the next batch while
	// the workers are busy and hands a batch over without waiting for a
	// worker per message.
	n := c.o.Concurrency
	rn.keyed = make([]chan *delivery, n)
	for i := range rn.keyed {
		rn.keyed[i] = make(chan *delivery, max(1, c.o.BatchSize/n))
	}
	rn.free = make(chan *delivery, c.o.BatchSize)
	for i, r := range rcvs {
		src := &source{rcv: r, topic: c.topics[i], acks: make(chan *delivery, 2*c.o.BatchSize)}
		if _, ok := r.(mbdriver.Extender); ok && c.caps.Extend {
			src.held = &heldSet{m: map[*mbdriver.Message]struct{}{}}
		} else if c.caps.Extend {
			c.report(ctx, fmt.Errorf("mb: consumer: the driver declares Capabilities.Extend, but its receiver for %q (%T) does not implement mbdriver.Extender; messages are not kept held", src.topic, r))
		}
		rn.sources = append(rn.sources, src)
	}
	return rn
}

func (rn *run) startWorkers() *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, own := range rn.keyed {
		wg.Go(func() { rn.worker(own) })
	}
	return &wg
}

// startAckers starts one acker per source, which acks handled messages in
// batches.
func (rn *run) startAckers(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	for _, src := range rn.sources {
		wg.Go(func() { rn.c.runAcker(ctx, src.rcv, src.acks) })
	}
	return &wg
}

// receiveAll runs the receive loop of every source until ctx is done or
// one fails for good, which stops them all; it returns the failures.
func (rn *run) receiveAll(ctx context.Context) []error {
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	var mu sync.Mutex
	var fatal []error
	var wg sync.WaitGroup
	for _, src := range rn.sources {
		wg.Go(func() {
			if err := rn.receive(ctx, src); err != nil {
				mu.Lock()
				fatal = append(fatal, err)
				mu.Unlock()
				stop()
			}
		})
	}
	wg.Wait()
	for _, ch := range rn.keyed {
		close(ch)
	}
	close(rn.free)
	return fatal
}

// drain waits for the workers to finish what they were given, for at most
// DrainTimeout; then it cancels the handlers' context, waits for them and
// reports true.
func (rn *run) drain(workers *sync.WaitGroup) (timedOut bool) {
	done := make(chan struct{})
	go func() {
		workers.Wait()
		close(done)
	}()
	timer := time.NewTimer(rn.c.o.DrainTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return false
	case <-timer.C:
		rn.stopWork()
		<-done
		return true
	}
}

// receive runs the receive loop of src until ctx is done (nil) or a
// non-retryable error (returned).
func (rn *run) receive(ctx context.Context, src *source) error {
	c := rn.c
	failures := 0
	for {
		msgs, err := src.rcv.Receive(ctx, c.o.BatchSize)
		if ctx.Err() != nil {
			// Stopping: give back anything received at the last moment.
			c.nack(ctx, src.rcv, msgs, 0)
			return nil
		}
		if err != nil {
			if errors.Is(err, mbdriver.ErrClosed) || !c.o.IsRetryable(err) {
				return fmt.Errorf("mb: consumer: receive from %q: %w", src.topic, err)
			}
			failures++
			c.report(ctx, fmt.Errorf("mb: consumer: receive from %q failed (will retry): %w", src.topic, err))
			if sleepCtx(ctx, c.o.ReconnectBackoff.Delay(failures)) != nil {
				return nil
			}
			continue
		}
		failures = 0
		src.held.add(msgs)
		ds := make([]delivery, len(msgs)) // one allocation per batch
		for i, m := range msgs {
			if m == nil {
				continue
			}
			d := &ds[i]
			*d = delivery{msg: m, src: src}
			select {
			case rn.queueFor(m) <- d:
			case <-ctx.Done():
				src.held.remove(msgs[i:])
				c.nack(ctx, src.rcv, msgs[i:], 0)
				return nil
			}
		}
	}
}

// queueFor returns the channel for m: that of the worker its partition key
// hashes to, so that messages with one key are handled in order, or the
// shared one.
func (rn *run) queueFor(m *mbdriver.Message) chan *delivery {
	k := partitionKey(m)
	if k == "" {
		return rn.free
	}
	h := fnv.New32a()
	h.Write([]byte(k))
	return rn.keyed[h.Sum32()%uint32(len(rn.keyed))]
}

// worker handles the messages of its own channel (one partition of the
// keys) and of the shared one until both are closed.
func (rn *run) worker(own chan *delivery) {
	free := rn.free
	for own != nil || free != nil {
		var d *delivery
		var ok bool
		select {
		case d, ok = <-own:
			if !ok {
				own = nil
				continue
			}
		case d, ok = <-free:
			if !ok {
				free = nil
				continue
			}
		}
		if rn.work.Err() != nil {
			// The drain timed out: return the rest unhandled.
			rn.abandoned.Add(1)
			rn.c.nackD(rn.work, d, 0)
			continue
		}
		if rn.c.handle(rn.work, d) == abandoned {
			rn.abandoned.Add(1)
		}
	}
}

// startExtenders starts, for each source whose messages are kept held, a
// goroutine that extends them every ExtendInterval; the returned function
// stops them and waits for them.
func (rn *run) startExtenders(ctx context.Context) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	for _, src := range rn.sources {
		if src.held == nil {
			continue
		}
		x := src.rcv.(mbdriver.Extender)
		every := x.ExtendInterval()
		if every <= 0 {
			rn.c.report(ctx, fmt.Errorf("mb: consumer: the receiver for %q has ExtendInterval %v; messages are not kept held", src.topic, every))
			continue
		}
		wg.Go(func() { rn.extend(ctx, src, x, every, quit) })
	}
	return func() {
		close(quit)
		wg.Wait()
	}
}

// extend keeps the held messages of src held until quit is closed.
func (rn *run) extend(ctx context.Context, src *source, x mbdriver.Extender, every time.Duration, quit chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-quit:
			return
		case <-t.C:
		}
		msgs := src.held.snapshot()
		for start := 0; start < len(msgs); start += rn.c.o.BatchSize {
			chunk := msgs[start:min(start+rn.c.o.BatchSize, len(msgs))]
			sctx, cancel := settleCtx(ctx)
			err := x.Extend(sctx, chunk)
			cancel()
			if err != nil {
				rn.c.report(ctx, fmt.Errorf("mb: consumer: keeping %d message(s) from %q held failed (the broker may deliver them again meanwhile): %w", len(chunk), src.topic, err))
			}
		}
	}
}

// outcome is how handling a message ended.
type outcome int

const (
	// settled: acked, dead-lettered, or handed back to the broker for a
	// later try.
	settled outcome = iota
	// tryAgain: the wait for the next try was done here; handle it again.
	tryAgain
	// abandoned: nacked unfinished because the handlers' context ended.
	abandoned
)

// handle decodes and dispatches one message and settles it: ack, nack for
// a retry, or dead-letter. It returns settled or abandoned.
func (c *Consumer) handle(ctx context.Context, d *delivery) outcome {
	m := d.msg
	var env Envelope
	v, err := decodeMessage(&env, m, c.reg, c.o.Codec, c.o.Codecs)
	if err != nil {
		now := time.Now().UTC()
		err = fmt.Errorf("mb: consumer: cannot decode message %q from %q: %w", m.ID, d.sourceTopic(), err)
		c.deadLetter(ctx, d, err, 1, now, now)
		return settled
	}
	in := env.incoming()
	guard := inboxGuard(c.o.Inbox, c.o.Group, &env, "ConsumerOptions.Inbox")
	hctx, done := ctx, func(error) {}
	if c.o.OnReceive != nil {
		e := new(Envelope) // the hook may keep its own copy only
		*e = env
		hctx, done = c.receiveHook(ctx, e)
	}
	fkey := env.Source + "\x00" + env.ID // ids are unique per source
	for k := 1; ; k++ {
		errs := c.bus.dispatchIncoming(hctx, v, in, guard)
		if len(errs) == 0 {
			c.forget(fkey)
			c.ack(d)
			done(nil)
			return settled
		}
		herr := errors.Join(errs...)
		var next outcome
		if allInFlight(errs) {
			// A redelivery overtook a handling still in progress: it may
			// yet fail, so this copy is neither acked nor a failure. Try
			// again shortly; by then the other has committed (this copy
			// is skipped) or given up (this copy runs).
			next = c.later(ctx, d, c.o.Backoff.Min)
		} else {
			st := c.fail(fkey)
			attempt := st.count
			if m.Attempt > 0 {
				attempt = m.Attempt + k - 1
			}
			failure := &ConsumerError{
				Topic: d.sourceTopic(), Group: c.o.Group, Name: env.Type, ID: env.ID, Source: env.Source,
				CorrelationID: env.CorrelationID, Attempt: attempt, MaxAttempts: c.o.MaxAttempts, Err: herr,
			}
			if attempt >= c.o.MaxAttempts {
				c.forget(fkey)
				c.deadLetter(ctx, d, failure, attempt, st.first, st.last)
				next = settled
			} else {
				c.report(ctx, failure)
				next = c.later(ctx, d, c.o.Backoff.Delay(attempt))
			}
		}
		if next != tryAgain {
			done(herr)
			return next
		}
	}
}

// inboxGuard returns the guard that claims each handling of env by group
// in inbox, or nil without one. field names the inbox's option, for
// errors.
func inboxGuard(inbox Inbox, group string, env *Envelope, field string) guardFunc {
	if inbox == nil {
		return nil
	}
	id, src := env.ID, env.Source
	return func(ctx context.Context, h *entry) (bool, error) {
		if err := h.stableName(); err != nil {
			return false, fmt.Errorf("mb: %s: %w", field, err)
		}
		return inbox.Claim(ctx, InboxKey{Group: group, Handler: h.handler, Source: src, MessageID: id})
	}
}

// decodeMessage reads m's envelope into env and decodes its payload with
// the codec of its content type among main and more.
func decodeMessage(env *Envelope, m *mbdriver.Message, reg *Registry, main Codec, more []Codec) (any, error) {
	if err := env.fromHeaders(m.Headers, m.Body); err != nil {
		return nil, err
	}
	return reg.Decode(env, codecFor(main, more, env.DataContentType))
}

// incoming returns the identity e's message arrived with.
func (e *Envelope) incoming() incoming {
	return incoming{id: e.ID, correlation: e.CorrelationID, causation: e.CausationID, source: e.Source, extensions: e.Extensions}
}

// later sets d's message up for another try after delay: through the
// broker (a nack with the delay) when it redelivers, otherwise by waiting
// here (tryAgain). When ctx is done it nacks the message for redelivery
// at once (abandoned).
func (c *Consumer) later(ctx context.Context, d *delivery, delay time.Duration) outcome {
	switch {
	case ctx.Err() != nil:
		c.nackD(ctx, d, 0)
		return abandoned
	case c.caps.Redelivery && !c.caps.AtMostOnce:
		c.nackD(ctx, d, delay)
		return settled
	case sleepCtx(ctx, delay) != nil:
		c.nackD(ctx, d, 0)
		return abandoned
	}
	return tryAgain
}

// allInFlight reports whether every error of a handling says that the
// Inbox found the same handling in progress elsewhere.
func allInFlight(errs []error) bool {
	for _, err := range errs {
		if !errors.Is(err, ErrInFlight) {
			return false
		}
	}
	return len(errs) > 0
}

// receiveHook calls OnReceive for env. A panic in the hook, or a nil
// context from it, is reported and the message is handled with ctx; the
// returned done is never nil and reports a panic of the hook's own.
func (c *Consumer) receiveHook(ctx context.Context, env *Envelope) (hctx context.Context, done func(error)) {
	nop := func(error) {}
	defer func() {
		if r := recover(); r != nil {
			c.report(ctx, fmt.Errorf("mb: consumer: ConsumerOptions.OnReceive panicked for %q: %w", env.ID, newPanicError(r)))
			hctx, done = ctx, nop
		}
	}()
	hctx, finish := c.o.OnReceive(ctx, env)
	if hctx == nil {
		c.report(ctx, fmt.Errorf("mb: consumer: ConsumerOptions.OnReceive returned a nil context for %q; using the consumer's", env.ID))
		hctx = ctx
	}
	if finish == nil {
		return hctx, nop
	}
	id := env.ID
	return hctx, func(err error) {
		defer func() {
			if r := recover(); r != nil {
				c.report(ctx, fmt.Errorf("mb: consumer: the function ConsumerOptions.OnReceive returned panicked for %q: %w", id, newPanicError(r)))
			}
		}()
		finish(err)
	}
}

// codecFor returns the codec for payloads of media type ct: the first of
// main and more whose content type it is, or main.
func codecFor(main Codec, more []Codec, ct string) Codec {
	if ct == "" || len(more) == 0 || sameMediaType(ct, main.ContentType()) {
		return main
	}
	for _, cd := range more {
		if sameMediaType(ct, cd.ContentType()) {
			return cd
		}
	}
	return main
}

// fail records a failed handling of the message with key (source and id)
// and returns its record.
func (c *Consumer) fail(key string) failState {
	now := time.Now().UTC()
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.failures[key]
	if st == nil {
		if len(c.failures) >= maxTracked {
			for k := range c.failures { // evict one, arbitrarily
				delete(c.failures, k)
				break
			}
		}
		st = &failState{first: now}
		c.failures[key] = st
	}
	st.count++
	st.last = now
	return *st
}

func (c *Consumer) forget(key string) {
	c.mu.Lock()
	delete(c.failures, key)
	c.mu.Unlock()
}

// settleCtx returns a context for acks, nacks and dead-lettering: not
// cancelled with Run's or the handlers' context, but bounded.
func settleCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
}

// ack settles a handled message: the source's acker acks it.
func (c *Consumer) ack(d *delivery) {
	d.src.held.remove([]*mbdriver.Message{d.msg})
	d.src.acks <- d
}

// runAcker acknowledges the messages handed to it in batches: it takes one,
// then whatever else is already waiting, up to BatchSize, and acks them in
// one call. Under load this turns one round trip per message into one per
// batch; when idle it adds no delay. It returns when in is closed and
// drained.
func (c *Consumer) runAcker(ctx context.Context, r mbdriver.Receiver, in chan *delivery) {
	batch := make([]*mbdriver.Message, 0, c.o.BatchSize)
	for d := range in {
		batch = append(batch[:0], d.msg)
	fill:
		for len(batch) < c.o.BatchSize {
			select {
			case d2, ok := <-in:
				if !ok {
					break fill
				}
				batch = append(batch, d2.msg)
			default:
				break fill
			}
		}
		sctx, cancel := settleCtx(ctx)
		err := r.Ack(sctx, batch)
		cancel()
		if err != nil {
			ids := make([]string, len(batch))
			for i, m := range batch {
				ids[i] = m.ID
			}
			c.report(ctx, fmt.Errorf("mb: consumer: ack of %d message(s) %q failed (they may be delivered again): %w", len(batch), ids, err))
		}
	}
}

// nackD settles d's message by giving it back to the broker.
func (c *Consumer) nackD(ctx context.Context, d *delivery, delay time.Duration) {
	msgs := []*mbdriver.Message{d.msg}
	d.src.held.remove(msgs)
	c.nack(ctx, d.src.rcv, msgs, delay)
}

func (c *Consumer) nack(ctx context.Context, r mbdriver.Receiver, msgs []*mbdriver.Message, delay time.Duration) {
	if len(msgs) == 0 {
		return
	}
	sctx, cancel := settleCtx(ctx)
	defer cancel()
	if err := r.Nack(sctx, msgs, delay); err != nil {
		c.report(ctx, fmt.Errorf("mb: consumer: nack %d message(s): %w", len(msgs), err))
	}
}

const maxErrorHeader = 8 << 10

// deadLetter moves d to the dead-letter topic with cause attached and acks
// it; without a DeadLetter publisher, or when publishing fails, it logs
// and nacks it instead.
func (c *Consumer) deadLetter(ctx context.Context, d *delivery, cause error, attempts int, first, last time.Time) {
	m := d.msg
	topic := d.sourceTopic()
	if c.o.DeadLetter == nil {
		c.o.Logger.ErrorContext(ctx, "mb: consumer: message cannot be handled and no DeadLetter publisher is configured; nacking it (it will come back)",
			"id", m.ID, "topic", topic, "group", c.o.Group, "attempts", attempts, "error", cause)
		c.nackD(ctx, d, c.o.Backoff.Max)
		return
	}
	text := truncate(cause.Error(), maxErrorHeader)
	h := maps.Clone(m.Headers)
	if h == nil {
		h = map[string]string{}
	}
	h[HeaderError] = text
	h[HeaderAttempts] = strconv.Itoa(attempts)
	h[HeaderFirstFailure] = first.UTC().Format(time.RFC3339Nano)
	h[HeaderLastFailure] = last.UTC().Format(time.RFC3339Nano)
	h[HeaderTopic] = topic
	h[HeaderGroup] = c.o.Group
	dl := &mbdriver.Message{ID: m.ID, Headers: h, Body: m.Body, PartitionKey: m.PartitionKey}
	dlTopic := c.o.DeadLetterTopic(topic)
	sctx, cancel := settleCtx(ctx)
	err := c.o.DeadLetter.Publish(sctx, dlTopic, []*mbdriver.Message{dl})
	cancel()
	if err != nil {
		c.report(ctx, errors.Join(
			fmt.Errorf("mb: consumer: dead-letter %q to %q failed; nacking it: %w", m.ID, dlTopic, err), cause))
		c.nackD(ctx, d, c.o.Backoff.Delay(attempts))
		return
	}
	var failure *ConsumerError
	if errors.As(cause, &failure) {
		failure.DeadLetterTopic = dlTopic
		c.report(ctx, failure)
	} else {
		c.report(ctx, fmt.Errorf("mb: consumer: moved %q to dead-letter topic %q: %w", m.ID, dlTopic, cause))
	}
	c.ack(d)
}

// ConsumerError is what a [Consumer] reports to its ErrorHandler when the
// handling of a message failed: to be tried again, or for good (it was
// moved to the dead-letter topic, or has nowhere to go). It wraps the
// handlers' errors (each a *[HandlerError]). Logged with log/slog, it is
// a group of attributes: msg, topic, group, name, id, source,
// correlation_id, attempt, max_attempts and, once dead-lettered,
// dead_letter_topic; no payload.
type ConsumerError struct {
	Topic           string // the topic the message came from
	Group           string // the consumer group
	Name            string // the message name (CloudEvents type)
	ID              string // the message id
	Source          string // the message's CloudEvents source
	CorrelationID   string
	Attempt         int    // which handling failed, from 1
	MaxAttempts     int    // ConsumerOptions.MaxAttempts
	DeadLetterTopic string // set once the message was moved there
	Err             error  // the handlers' errors, joined
}

// Error says what failed and what happens next.
func (e *ConsumerError) Error() string {
	if e.DeadLetterTopic != "" {
		return fmt.Sprintf("mb: consumer: moved %q to dead-letter topic %q: %s %q from %q failed %d times: %v", e.ID, e.DeadLetterTopic, e.Name, e.ID, e.Topic, e.Attempt, e.Err)
	}
	if e.Attempt >= e.MaxAttempts {
		return fmt.Sprintf("mb: consumer: %s %q from %q failed %d times: %v", e.Name, e.ID, e.Topic, e.Attempt, e.Err)
	}
	return fmt.Sprintf("mb: consumer: %s %q from %q failed (attempt %d of %d, will retry): %v", e.Name, e.ID, e.Topic, e.Attempt, e.MaxAttempts, e.Err)
}

// Unwrap returns the handlers' errors.
func (e *ConsumerError) Unwrap() error { return e.Err }

// LogValue makes e a group of attributes in log/slog records; see
// [ConsumerError].
func (e *ConsumerError) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("msg", e.Error()), slog.String("topic", e.Topic), slog.String("group", e.Group),
		slog.String("name", e.Name), slog.String("id", e.ID), slog.String("source", e.Source),
		slog.String("correlation_id", e.CorrelationID), slog.Int("attempt", e.Attempt), slog.Int("max_attempts", e.MaxAttempts),
	}
	if e.DeadLetterTopic != "" {
		attrs = append(attrs, slog.String("dead_letter_topic", e.DeadLetterTopic))
	}
	return slog.GroupValue(attrs...)
}
