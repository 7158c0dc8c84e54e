package mbstoretest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbdriver"
	"github.com/mb-go/mb/mbmem"
)

// RunInbox runs the Inbox subtests against the stores h opens; each store
// must have an Inbox.
func RunInbox(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	runAll(t, []testCase{
		{"ClaimCommit", s.testClaimCommit},
		{"ClaimRollback", s.testClaimRollback},
		{"KeyFields", s.testKeyFields},
		{"ClaimOutsideUnit", s.testClaimOutsideUnit},
		{"ConcurrentCommit", func(t *testing.T) { s.testConcurrentClaims(t, true) }},
		{"ConcurrentRollback", func(t *testing.T) { s.testConcurrentClaims(t, false) }},
		{"ConsumerDuplicate", s.testConsumerDuplicate},
	})
}

// openInbox opens a store with an Inbox, and a bus over its Transactor.
func (s *suite) openInbox(t *testing.T) (Store, *mb.Bus) {
	t.Helper()
	st, _, bus := s.setup(t, Config{})
	if st.Inbox == nil {
		t.Fatal("mbstoretest: Harness.Open returned a Store without an Inbox")
	}
	return st, bus
}

// inboxKey returns a key unique to this run of the subtest.
func inboxKey(t *testing.T) mb.InboxKey {
	return mb.InboxKey{Group: "group", Handler: "mbstoretest.handler", Source: "/mbstoretest", MessageID: key(t, "id")}
}

// claim claims k in a unit of its own and, when it is new, writes the
// effect row effect; the unit fails with fail. It returns what Claim
// reported.
func (s *suite) claim(ctx context.Context, st Store, bus *mb.Bus, k mb.InboxKey, effect string, fail error) (bool, error) {
	var ok bool
	err := unit(ctx, bus, func(ctx context.Context) error {
		var err error
		if ok, err = st.Inbox.Claim(ctx, k); err != nil || !ok {
			return err
		}
		if effect != "" {
			if err := st.insert(ctx, effect); err != nil {
				return err
			}
		}
		return fail
	})
	if fail != nil && errors.Is(err, fail) {
		err = nil
	}
	return ok, err
}

// ClaimCommit: a claimed key whose unit committed is claimed no more.
func (s *suite) testClaimCommit(t *testing.T) {
	st, bus := s.openInbox(t)
	ctx := s.ctx(t)
	k, effect := inboxKey(t), key(t, "effect")
	ok, err := s.claim(ctx, st, bus, k, effect, nil)
	if err != nil || !ok {
		t.Fatalf("first Claim = %v, %v; want true", ok, err)
	}
	ok, err = s.claim(ctx, st, bus, k, effect+"-again", nil)
	if err != nil || ok {
		t.Fatalf("Claim after the first unit committed = %v, %v; want false", ok, err)
	}
	st.wantCommitted(t, ctx, map[string]int{effect: 1, effect + "-again": 0})
}

// ClaimRollback: a claim whose unit rolled back releases the key, and
// leaves no effect.
func (s *suite) testClaimRollback(t *testing.T) {
	st, bus := s.openInbox(t)
	ctx := s.ctx(t)
	k, effect := inboxKey(t), key(t, "effect")
	ok, err := s.claim(ctx, st, bus, k, effect+"-failed", errPlanned)
	if err != nil || !ok {
		t.Fatalf("first Claim = %v, %v; want true", ok, err)
	}
	ok, err = s.claim(ctx, st, bus, k, effect, nil)
	if err != nil || !ok {
		t.Fatalf("Claim after the first unit rolled back = %v, %v; want true", ok, err)
	}
	st.wantCommitted(t, ctx, map[string]int{effect + "-failed": 0, effect: 1})
}

// KeyFields: each of the four fields of a key tells keys apart, byte for
// byte (case, trailing spaces, where one field ends and the next begins),
// also for long and non-ASCII values.
func (s *suite) testKeyFields(t *testing.T) {
	st, bus := s.openInbox(t)
	ctx := s.ctx(t)
	base := inboxKey(t)
	id := base.MessageID
	keys := []mb.InboxKey{base}
	add := func(f func(k *mb.InboxKey)) {
		k := base
		f(&k)
		keys = append(keys, k)
	}
	add(func(k *mb.InboxKey) { k.Group = "other-group" })
	add(func(k *mb.InboxKey) { k.Handler = "mbstoretest.other" })
	add(func(k *mb.InboxKey) { k.Source = "/other-source" })
	add(func(k *mb.InboxKey) { k.MessageID = id + "-2" })
	add(func(k *mb.InboxKey) { k.MessageID = strings.ToUpper(id) })
	add(func(k *mb.InboxKey) { k.MessageID = id + " " })
	add(func(k *mb.InboxKey) { k.Group, k.Handler = "groupmb", "store.handler" }) // the fields' concatenation is base's
	add(func(k *mb.InboxKey) { k.Source = "" })
	add(func(k *mb.InboxKey) { k.Source = "/ünïcödé/✓/" + strings.Repeat("s", 400) })
	add(func(k *mb.InboxKey) { k.MessageID = strings.Repeat("i", 400) + id })
	add(func(k *mb.InboxKey) { k.Handler = strings.Repeat("h", 300) })
	for round, want := range []bool{true, false} {
		for i, k := range keys {
			ok, err := s.claim(ctx, st, bus, k, "", nil)
			if err != nil || ok != want {
				t.Errorf("round %d, key %d %+v: Claim = %v, %v; want %v", round+1, i, k, ok, err, want)
			}
		}
	}
}

// ClaimOutsideUnit: a claim with a context that belongs to no unit of
// work fails: it could not take effect with a handler's writes.
func (s *suite) testClaimOutsideUnit(t *testing.T) {
	st, _ := s.openInbox(t)
	ok, err := st.Inbox.Claim(s.ctx(t), inboxKey(t))
	if err == nil || ok {
		t.Fatalf("Claim outside a unit of work = %v, %v; want an error", ok, err)
	}
}

// ConcurrentCommit, ConcurrentRollback: a second claim of a key while the
// first claim's unit is open waits for its outcome: it reports false
// after the first committed, and true after it rolled back. Exactly one
// effect results either way.
func (s *suite) testConcurrentClaims(t *testing.T, commit bool) {
	st, bus := s.openInbox(t)
	ctx := s.ctx(t)
	k, effect := inboxKey(t), key(t, "effect")
	claimed, end := make(chan struct{}), make(chan struct{})
	first := make(chan result, 1)
	go func() {
		var ok bool
		err := unit(ctx, bus, func(ctx context.Context) error {
			var err error
			if ok, err = st.Inbox.Claim(ctx, k); err != nil || !ok {
				return fmt.Errorf("first Claim = %v, %v; want true", ok, err)
			}
			if err := st.insert(ctx, effect+"-first"); err != nil {
				return err
			}
			close(claimed)
			<-end
			if !commit {
				return errPlanned
			}
			return nil
		})
		if errors.Is(err, errPlanned) {
			err = nil
		}
		first <- result{ok, err}
	}()
	select {
	case <-claimed:
	case r := <-first:
		t.Fatalf("the first unit: %v", r.err)
	}
	second := make(chan result, 1)
	go func() {
		ok, err := s.claim(ctx, st, bus, k, effect+"-second", nil)
		second <- result{ok, err}
	}()
	s.waitBlocked(t, st, second)
	close(end)
	if r := s.await(t, first, "the first unit"); r.err != nil {
		t.Fatal(r.err)
	}
	r := s.await(t, second, "the second claim")
	switch {
	case errors.Is(r.err, mb.ErrInFlight):
		t.Fatalf("the second Claim returned %v: a transactional inbox waits for the first claim's outcome instead", r.err)
	case r.err != nil:
		t.Fatalf("the second Claim: %v", r.err)
	case r.ok == commit:
		t.Fatalf("the second Claim after the first unit (commit=%v) ended = %v, want %v", commit, r.ok, !commit)
	}
	want := map[string]int{effect + "-first": 1, effect + "-second": 0}
	if !commit {
		want = map[string]int{effect + "-first": 0, effect + "-second": 1}
	}
	st.wantCommitted(t, ctx, want)
}

// storeEvent is the event of ConsumerDuplicate.
type storeEvent struct {
	Key string
	N   int
}

func (storeEvent) MessageName() string    { return "mbstoretest.event" }
func (e storeEvent) PartitionKey() string { return "one-key" }

// ConsumerDuplicate: an mb.Consumer over an in-memory broker with the
// store's Inbox gives a message delivered twice one effect, whose row the
// handler writes in its unit's transaction.
func (s *suite) testConsumerDuplicate(t *testing.T) {
	st, bus := s.openInbox(t)
	ctx := s.ctx(t)
	broker := mbmem.New(nil)
	defer broker.Close()
	reg := mb.NewRegistry(&mb.RegistryOptions{Source: "/mbstoretest"})
	mb.RegisterMessage[storeEvent](reg)
	handled := make(chan int, 10)
	mb.Subscribe(bus, func(ctx context.Context, e storeEvent) error {
		if err := st.insert(ctx, e.Key); err != nil {
			return err
		}
		return mb.AfterCommit(ctx, func(context.Context) { handled <- e.N })
	}, mb.WithName("mbstoretest.effect"))
	var sent []*mb.Envelope
	var mu sync.Mutex
	pub, err := mb.NewPublisher(broker, reg, &mb.PublisherOptions{
		Router: func(string) string { return "mbstoretest" },
		OnPublish: func(_ context.Context, env *mb.Envelope) {
			mu.Lock()
			cp := *env
			sent = append(sent, &cp)
			mu.Unlock()
		},
	})
	must(t, "NewPublisher", err)
	errs := make(chan error, 100)
	c, err := mb.NewConsumer(bus, broker, reg, &mb.ConsumerOptions{
		Topic: "mbstoretest", Group: "mbstoretest", Inbox: st.Inbox, Concurrency: 2,
		// The group may be created after the events are published: it
		// starts at the oldest message the broker keeps.
		Start:        mbdriver.StartOldest,
		Backoff:      mb.Backoff{Min: 1, Max: 1},
		ErrorHandler: func(_ context.Context, err error) { errs <- err },
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	must(t, "NewConsumer", err)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- c.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Consumer.Run: %v", err)
		}
	}()

	effect, marker := key(t, "effect"), key(t, "marker")
	must(t, "Publish", pub.Publish(ctx, storeEvent{Key: effect, N: 1}))
	// The same message again, as a redelivery brings it, then a marker
	// with the same partition key: once the marker is handled, so is the
	// copy.
	mu.Lock()
	env := sent[0]
	mu.Unlock()
	dup := &mbdriver.Message{ID: env.ID, Headers: env.ToHeaders(), Body: env.Data, PartitionKey: env.PartitionKey}
	must(t, "publishing the copy", broker.Publish(ctx, "mbstoretest", []*mbdriver.Message{dup}))
	must(t, "Publish of the marker", pub.Publish(ctx, storeEvent{Key: marker, N: 2}))
	for seen := map[int]int{}; seen[2] == 0; {
		select {
		case n := <-handled:
			if seen[n]++; seen[n] > 1 {
				t.Fatalf("event %d was handled %d times", n, seen[n])
			}
		case err := <-errs:
			t.Fatalf("the consumer reported: %v", err)
		case <-ctx.Done():
			t.Fatalf("the marker was not handled within %v", s.wait)
		}
	}
	st.wantCommitted(t, ctx, map[string]int{effect: 1, marker: 1})
}
