package mbdrivertest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mb-go/mb/mbdriver"
)

// extender returns r as an [mbdriver.Extender], or fails the test: a
// driver that declares Extend must return receivers that implement it.
func extender(t *testing.T, r *rcv) mbdriver.Extender {
	t.Helper()
	e, ok := r.Receiver.(mbdriver.Extender)
	if !ok {
		t.Fatalf("the driver declares Extend, but its receiver %T does not implement mbdriver.Extender", r.Receiver)
	}
	if iv := e.ExtendInterval(); iv <= 0 {
		t.Fatalf("ExtendInterval() = %v, want a positive interval", iv)
	}
	return e
}

// extend calls Extend for msgs with a context of its own.
func (s *suite) extend(e mbdriver.Extender, msgs []*mbdriver.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	return e.Extend(ctx, msgs)
}

// holdTimeout returns Harness.HoldTimeout, or three ExtendIntervals.
func (s *suite) holdTimeout(e mbdriver.Extender) time.Duration {
	if s.h.HoldTimeout > 0 {
		return s.h.HoldTimeout
	}
	return 3 * e.ExtendInterval()
}

// ExtendHolds: a message that its receiver keeps extending is not
// delivered to another receiver of the group, however many timeouts pass;
// once the first receiver is closed, the other gets it, with an Attempt
// one higher than the first delivery's (extensions are not deliveries).
func (s *suite) testExtendHolds(t *testing.T) {
	c1, c2 := s.open(t), s.open(t)
	b := s.base(t)
	g := b + "-g"
	holder := s.subscribe(t, c1, mbdriver.Subscription{Topic: b, Group: g, Consumer: b + "-holder"})
	other := s.subscribe(t, c2, mbdriver.Subscription{Topic: b, Group: g, Consumer: b + "-other"})
	e := extender(t, holder)
	m := newMsg("held")
	s.publish(t, c1, b, m)
	first := s.receiveN(t, holder, 1, false)[0]
	checkMsg(t, first, m, b)

	// The other receiver receives all along; the holder extends three
	// times per ExtendInterval (more often than needed, so that a slow
	// machine does not make an extension late) for three timeouts.
	hold := 3 * s.holdTimeout(e)
	ctx, stop := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		stolen []*mbdriver.Message
		rerr   error
	)
	wg.Go(func() {
		for ctx.Err() == nil {
			msgs, err := other.Receive(ctx, 10)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil && !c2.IsRetryable(err):
				rerr = err
				return
			}
			stolen = append(stolen, msgs...)
		}
	})
	tick := time.NewTicker(max(e.ExtendInterval()/3, time.Millisecond))
	end := time.NewTimer(hold)
	extensions := 0
	var eerr error
	for done := false; !done; {
		select {
		case <-tick.C:
			eerr = s.extend(e, []*mbdriver.Message{first})
			extensions++
			done = eerr != nil
		case <-end.C:
			done = true
		}
	}
	tick.Stop()
	stop()
	wg.Wait()
	if eerr != nil {
		t.Fatalf("Extend: %v", eerr)
	}
	if rerr != nil {
		t.Fatalf("%s: Receive: %v", other.name, rerr)
	}
	for _, got := range stolen {
		t.Errorf("%s received %q (%s, Attempt %d) while %s held it and extended it %d times in %v (3 HoldTimeouts)", other.name, got.ID, got.Body, got.Attempt, holder.name, extensions, hold)
	}
	if t.Failed() {
		return
	}

	// Closed, the holder gives the message back.
	if err := holder.Close(); err != nil {
		t.Fatalf("receiver Close: %v", err)
	}
	again := s.receiveNWithin(t, other, 1, true, s.redelivery)[0]
	checkMsg(t, again, m, b)
	if first.Attempt != 0 && again.Attempt != 0 && again.Attempt != first.Attempt+1 {
		t.Errorf("redelivery after %d extensions has Attempt %d, first delivery %d: want %d, extensions are not deliveries", extensions, again.Attempt, first.Attempt, first.Attempt+1)
	}
}

// ExtendSettled: extending a message that was acked, or nacked, is not an
// error and does not undo the settlement: the acked message is not
// delivered again, the nacked one is (with Redelivery).
func (s *suite) testExtendSettled(t *testing.T) {
	c := s.open(t)
	b := s.base(t)
	r := s.subscribe(t, c, mbdriver.Subscription{Topic: b, Group: b + "-g"})
	e := extender(t, r)
	acked, nacked := newMsg("acked"), newMsg("nacked")
	s.publish(t, c, b, acked)
	got := s.receiveN(t, r, 1, true)
	if err := s.extend(e, got); err != nil {
		t.Errorf("Extend of an acked message: %v, want nil", err)
	}
	if s.caps.Redelivery {
		s.publish(t, c, b, nacked)
		n := s.receiveN(t, r, 1, false)
		ctx, cancel := context.WithTimeout(context.Background(), s.wait)
		defer cancel()
		if err := r.Nack(ctx, n, 0); err != nil {
			t.Fatalf("Nack: %v", err)
		}
		if err := s.extend(e, n); err != nil {
			t.Errorf("Extend of a nacked message: %v, want nil", err)
		}
		again := s.receiveNWithin(t, r, 1, true, s.redelivery)[0]
		checkMsg(t, again, nacked, b)
	}
	s.onlyMarker(t, c, r, b, "again after it was acked and extended")
}

// ExtendAfterClose: Extend after the receiver's Close, or its driver's,
// returns an error wrapping ErrClosed.
func (s *suite) testExtendAfterClose(t *testing.T) {
	b := s.base(t)
	for _, closeDriver := range []bool{false, true} {
		c := s.open(t)
		topic := fmt.Sprintf("%s-%t", b, closeDriver)
		r := s.subscribe(t, c, mbdriver.Subscription{Topic: topic, Group: topic + "-g"})
		e := extender(t, r)
		m := newMsg("held when closed")
		s.publish(t, c, topic, m)
		got := s.receiveN(t, r, 1, false)
		what := "the receiver's"
		var err error
		if closeDriver {
			what = "the driver's"
			err = c.Close()
		} else {
			err = r.Close()
		}
		if err != nil {
			t.Fatalf("%s Close: %v", what, err)
		}
		if err := s.extend(e, got); !errors.Is(err, mbdriver.ErrClosed) {
			t.Errorf("Extend after %s Close = %v, want an error wrapping mbdriver.ErrClosed", what, err)
		}
	}
}
