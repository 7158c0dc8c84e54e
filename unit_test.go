package mb_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

// Events are dispatched after the handler returned, and only on success.
func TestEventsAfterHandlerOnlyOnSuccess(t *testing.T) {
	t.Parallel()
	var log recorder
	errFail := errors.New("fail")
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		if err := mb.Emit(ctx, AccountCreated(c)); err != nil {
			return Account{}, err
		}
		log.add("handler emitted " + c.Name)
		if c.Name == "fail" {
			return Account{}, errFail
		}
		log.add("handler returns " + c.Name)
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { log.add("event " + e.Name); return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"ok"})
	noErr(t, err)
	_, err = mb.Send[Account](context.Background(), bus, CreateAccount{"fail"})
	if err != errFail && !errors.Is(err, errFail) {
		t.Fatalf("got %v, want the handler's error", err)
	}
	wantSeq(t, log.get(), []string{
		"handler emitted ok", "handler returns ok", "event ok",
		"handler emitted fail",
	})
}

func TestRollbackReturnsOriginalError(t *testing.T) {
	t.Parallel()
	errDomain := errors.New("username taken")
	errRollback := errors.New("rollback failed")
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		if err := mb.Emit(ctx, AccountCreated(c)); err != nil {
			return Account{}, err
		}
		return Account{}, fmt.Errorf("create %s: %w", c.Name, errDomain)
	})
	dispatched := false
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { dispatched = true; return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"x"})
	wantErr(t, err, errDomain)
	wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 rollback"})

	// A failing rollback is reported alongside the original error.
	tr2 := &mbtest.Transactor{RollbackErr: errRollback}
	bus2 := mb.New(&mb.Options{Transactor: tr2})
	mb.HandleCommand(bus2, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		return Account{}, errDomain
	})
	_, err = mb.Send[Account](context.Background(), bus2, CreateAccount{"x"})
	wantErr(t, err, errDomain, errRollback)
	if dispatched {
		t.Fatal("events of a rolled back unit were dispatched")
	}
}

// The phases of a unit of work, in order, with each event handler in its
// own transaction.
func TestPhaseOrder(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &mbtest.Transactor{}
	tr.OnCall(log.add)
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	txID := func(ctx context.Context) int {
		tx, err := mb.TxFrom(ctx)
		if err != nil {
			t.Error(err)
			return 0
		}
		return tx.(*mbtest.Tx).ID()
	}
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		log.addf("handler in tx%d", txID(ctx))
		noErr(t, mb.AfterCommit(ctx, func(ctx context.Context) {
			if _, err := mb.TxFrom(ctx); !errors.Is(err, mb.ErrNoUnitOfWork) {
				t.Errorf("TxFrom in an after-commit hook: %v, want ErrNoUnitOfWork", err)
			}
			log.add("after-commit 1")
		}))
		noErr(t, mb.BeforeCommit(ctx, func(ctx context.Context) error {
			log.addf("before-commit 1 in tx%d", txID(ctx))
			return nil
		}))
		noErr(t, mb.BeforeCommit(ctx, func(ctx context.Context) error {
			log.add("before-commit 2")
			return nil
		}))
		noErr(t, mb.AfterCommit(ctx, func(ctx context.Context) { log.add("after-commit 2") }))
		noErr(t, mb.Emit(ctx, AccountCreated(c)))
		log.add("handler returns")
		return Account(c), nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		log.addf("event handler 1 in tx%d", txID(ctx))
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		log.addf("event handler 2 in tx%d", txID(ctx))
		return nil
	})

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"p"})
	noErr(t, err)
	wantSeq(t, log.get(), []string{
		"tx1 begin",
		"handler in tx1",
		"handler returns",
		"before-commit 1 in tx1",
		"before-commit 2",
		"tx1 commit",
		"tx2 begin", "event handler 1 in tx2", "tx2 commit",
		"tx3 begin", "event handler 2 in tx3", "tx3 commit",
		"after-commit 1",
		"after-commit 2",
	})
}

func TestCommitFailure(t *testing.T) {
	t.Parallel()
	errCommit := errors.New("commit failed")
	tr := &mbtest.Transactor{CommitErr: errCommit}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		noErr(t, mb.AfterCommit(ctx, func(context.Context) { t.Error("after-commit hook ran after a failed commit") }))
		return Account(c), mb.Emit(ctx, AccountCreated(c))
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		t.Error("event dispatched after a failed commit")
		return nil
	})
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"c"})
	wantErr(t, err, errCommit)
	if acc != (Account{}) {
		t.Errorf("Send returned %+v with an error", acc)
	}
	if got := tr.Calls(); len(got) < 2 || got[0] != "tx1 begin" || got[1] != "tx1 commit" {
		t.Fatalf("calls %q", got)
	}
}

// A transaction that cannot begin fails the unit of work, even when the
// handler ignores TxFrom's error: it rolls back and Send returns the error.
func TestBeginFailure(t *testing.T) {
	t.Parallel()
	errBegin := errors.New("no connection")
	tr := &mbtest.Transactor{BeginErr: errBegin}
	bus := mb.New(&mb.Options{Transactor: tr})
	var txErr error
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		_, txErr = mb.TxFrom(ctx)
		if _, err := mb.TxFrom(ctx); !errors.Is(err, errBegin) {
			t.Errorf("second TxFrom: %v, want the same error", err)
		}
		return Account(c), mb.Emit(ctx, AccountCreated(c)) // ignores it
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		t.Error("event of a unit whose transaction failed to begin was dispatched")
		return nil
	})
	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"a"})
	wantErr(t, err, errBegin)
	wantErr(t, txErr, errBegin)
	if acc != (Account{}) {
		t.Errorf("Send returned %+v with an error", acc)
	}
	wantSeq(t, tr.Calls(), []string{"tx1 begin"})
}

// nilTxTransactor returns no transaction and no error.
type nilTxTransactor struct{}

func (nilTxTransactor) Begin(context.Context) (mb.Tx, error) { return nil, nil }

func TestBeginReturnsNilTx(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{Transactor: nilTxTransactor{}})
	var txErr error
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		var tx mb.Tx
		tx, txErr = mb.TxFrom(ctx)
		if tx != nil {
			t.Errorf("TxFrom returned %v", tx)
		}
		return Account(c), nil
	})
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	if err == nil || txErr == nil || !strings.Contains(err.Error(), "nil Tx") {
		t.Fatalf("Send: %v, TxFrom: %v; want an error about the nil Tx from both", err, txErr)
	}
}

// failAfter fails every Begin after the first n.
type failAfter struct {
	mbtest.Transactor
	n   int32
	cnt atomic.Int32
	err error
}

func (f *failAfter) Begin(ctx context.Context) (mb.Tx, error) {
	if f.cnt.Add(1) > f.n {
		return nil, f.err
	}
	return f.Transactor.Begin(ctx)
}

// An event handler whose transaction cannot begin fails and is reported;
// the command is not affected.
func TestEventHandlerBeginFailure(t *testing.T) {
	t.Parallel()
	errBegin := errors.New("pool exhausted")
	tr := &failAfter{n: 1, err: errBegin}
	var sink errSink
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: sink.handle})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		return createAccount(ctx, c)
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		_, err := mb.TxFrom(ctx)
		return err
	}, mb.WithName("welcome"))
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"b"})
	noErr(t, err)
	hes := handlerErrors(t, sink.get())
	if len(hes) != 1 || !errors.Is(hes[0], errBegin) || hes[0].Handler != "welcome" {
		t.Fatalf("reported %v", sink.get())
	}
}

func TestNestedSendSuccess(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		noErr(t, mb.Emit(ctx, Note{"outer 1"}))
		inner, err := mb.Send[Account](ctx, bus, GetAccountCmd{"inner"})
		if err != nil {
			return Account{}, err
		}
		if inner.Name != "inner" {
			t.Errorf("nested Send returned %+v", inner)
		}
		log.add("outer continues")
		noErr(t, mb.Emit(ctx, Note{"outer 2"}))
		return Account(c), nil
	})
	mb.HandleCommand(bus, func(ctx context.Context, c GetAccountCmd) (Account, error) {
		tx, err := mb.TxFrom(ctx)
		if err != nil || tx.(*mbtest.Tx).ID() != 1 {
			t.Error("nested Send does not share the outer transaction")
		}
		return Account(c), mb.Emit(ctx, Note{"inner"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("event " + e.Text); return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"o"})
	noErr(t, err)
	// Nothing is dispatched before the outermost unit commits; then all
	// events in first-emission order.
	wantSeq(t, log.get(), []string{"outer continues", "event outer 1", "event inner", "event outer 2"})
	// Only the inner handler used the transaction: it began there, with
	// the inner unit's savepoint, and the event handlers began none.
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 commit",
	})
}

func TestNestedSendFailure(t *testing.T) {
	t.Parallel()
	errInner := errors.New("inner failed")
	for _, withTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("transactor=%v", withTx), func(t *testing.T) {
			t.Parallel()
			var log recorder
			tr := &mbtest.Transactor{}
			opts := &mb.Options{ErrorHandler: noErrors(t)}
			if withTx {
				opts.Transactor = tr
			}
			bus := mb.New(opts)
			mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
				if withTx {
					touch(t, ctx)
				}
				noErr(t, mb.Emit(ctx, Note{"outer 1"}))
				_, err := mb.Send[Account](ctx, bus, GetAccountCmd{c.Name})
				if !errors.Is(err, errInner) && !errors.Is(err, mb.ErrPanic) {
					t.Errorf("nested Send: got %v", err)
				}
				// The outer handler decides: here it carries on.
				noErr(t, mb.Emit(ctx, Note{"outer 2"}))
				return Account(c), nil
			})
			mb.HandleCommand(bus, func(ctx context.Context, c GetAccountCmd) (Account, error) {
				noErr(t, mb.Emit(ctx, Note{"inner"}, Keyed{"k", "inner"}))
				noErr(t, mb.BeforeCommit(ctx, func(context.Context) error {
					log.add("inner before-commit")
					return nil
				}))
				noErr(t, mb.AfterCommit(ctx, func(context.Context) { log.add("inner after-commit") }))
				if c.Name == "panic" {
					panic("inner panic")
				}
				return Account{}, errInner
			})
			mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("event " + e.Text); return nil })
			mb.Subscribe(bus, func(ctx context.Context, e Keyed) error { log.add("keyed " + e.Val); return nil })

			for _, name := range []string{"error", "panic"} {
				log = recorder{}
				tr.Reset()
				_, err := mb.Send[Account](context.Background(), bus, CreateAccount{name})
				noErr(t, err)
				wantSeq(t, log.get(), []string{"event outer 1", "event outer 2"})
				if withTx {
					wantSeq(t, tr.Calls(), []string{
						"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 rollback to mb_sp_1", "tx1 commit",
					})
				}
			}
		})
	}
}

// The outer handler may also fail because the inner one did: then
// everything, the inner unit's successful events included, is discarded.
func TestNestedOuterFailsDiscardsAll(t *testing.T) {
	t.Parallel()
	errOuter := errors.New("outer")
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		touch(t, ctx)
		noErr(t, mb.Emit(ctx, Note{"outer"}))
		if _, err := mb.Send[Account](ctx, bus, GetAccountCmd{}); err != nil {
			return Account{}, err
		}
		return Account{}, errOuter
	})
	mb.HandleCommand(bus, func(ctx context.Context, c GetAccountCmd) (Account, error) {
		noErr(t, mb.AfterCommit(ctx, func(context.Context) { t.Error("after-commit hook of a rolled back unit ran") }))
		return Account{}, mb.Emit(ctx, Note{"inner"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		t.Errorf("event %q of a rolled back unit dispatched", e.Text)
		return nil
	})
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{})
	wantErr(t, err, errOuter)
	wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 rollback"})
}

// Several nested levels: a failure discards only the failing level and the
// levels inside it.
func TestNestedDeep(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	type level struct{ N int }
	errLevel2 := errors.New("level 2 fails")
	mb.HandleCommandNoResult(bus, func(ctx context.Context, l level) error {
		touch(t, ctx)
		noErr(t, mb.Emit(ctx, Note{fmt.Sprintf("level %d", l.N)}))
		if l.N < 3 {
			err := mb.Exec(ctx, bus, level{l.N + 1})
			if l.N == 1 && !errors.Is(err, errLevel2) {
				t.Errorf("level 1 got %v", err)
			}
			if l.N == 2 {
				noErr(t, err)
				return errLevel2
			}
		}
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add(e.Text); return nil })
	noErr(t, mb.Exec(context.Background(), bus, level{0}))
	wantSeq(t, log.get(), []string{"level 0", "level 1"})
	wantSeq(t, tr.Calls()[:7], []string{
		"tx1 begin",
		"tx1 savepoint mb_sp_1", // level 1
		"tx1 savepoint mb_sp_2", // level 2
		"tx1 savepoint mb_sp_3", // level 3
		"tx1 release mb_sp_3",
		"tx1 rollback to mb_sp_2",
		"tx1 release mb_sp_1",
	})
}

func TestDedupKeepsFirstPosition(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		noErr(t, mb.Emit(ctx, Keyed{"a", "1"}, Note{"x"}))
		noErr(t, mb.Emit(ctx, Keyed{"a", "2"}, KeyedToo{"a", "3"}, Keyed{"b", "4"}, Note{"x"}))
		return mb.Emit(ctx, Keyed{"b", "5"}, Keyed{"a", "6"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.addf("%v", e); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	// Same type and key: once, at the first position, with the first value.
	// Another type with the same key and events without a key are not
	// de-duplicated.
	wantSeq(t, log.get(), []string{"{a 1}", "{x}", "{a 3}", "{b 4}", "{x}"})
}

// De-duplication holds for cascades with many keys: past the few that
// dispatch keeps in an array, the rest are kept in a map.
func TestDedupManyKeys(t *testing.T) {
	t.Parallel()
	var events []any
	var want []string
	for _, val := range []string{"first", "again"} {
		for i := range 20 {
			events = append(events, Keyed{fmt.Sprint(i), val})
			if val == "first" {
				want = append(want, fmt.Sprint(i, "/", val))
			}
		}
	}
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { return mb.Emit(ctx, events...) })
	mb.Subscribe(bus, func(ctx context.Context, e Keyed) error { log.add(e.Key + "/" + e.Val); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), want)
}

// The first emission of a key discarded by a failed nested Send does not
// suppress a later one.
func TestDedupAfterNestedRollback(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		if c.What == "inner" {
			noErr(t, mb.Emit(ctx, Keyed{"k", "inner"}))
			return errors.New("inner fails")
		}
		_ = mb.Exec(ctx, bus, DoIt{"inner"})
		return mb.Emit(ctx, Keyed{"k", "outer"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Keyed) error { log.add(e.Val); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"outer"}))
	wantSeq(t, log.get(), []string{"outer"})
}

func TestFIFOOrder(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		for i := range 3 {
			noErr(t, mb.Emit(ctx, Ping{i}))
		}
		return mb.Emit(ctx, Note{"3"}, Ping{4})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error { log.addf("a ping %d", e.N); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e any) error { log.addf("b %v", e); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), []string{
		"a ping 0", "b {0}",
		"a ping 1", "b {1}",
		"a ping 2", "b {2}",
		"b {3}",
		"a ping 4", "b {4}",
	})
}

// Events emitted by event handlers join the end of the queue.
func TestCascadeBreadthFirst(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		return mb.Emit(ctx, Note{"A1"}, Note{"A2"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		log.add(e.Text)
		switch {
		case strings.HasPrefix(e.Text, "A"):
			return mb.Emit(ctx, Note{"B" + e.Text[1:] + ".1"}, Note{"B" + e.Text[1:] + ".2"})
		case e.Text == "B1.1":
			return mb.Emit(ctx, Note{"C1"})
		}
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		if e.Text == "A1" {
			return mb.Emit(ctx, Note{"B1.3"})
		}
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), []string{"A1", "A2", "B1.1", "B1.2", "B1.3", "B2.1", "B2.2", "C1"})
}

// The cascade depth limit stops an endless cascade and reports it.
func TestCascadeLimit(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{0, 1, 3} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			t.Parallel()
			var sink errSink
			var handled []int
			bus := mb.New(&mb.Options{MaxCascadeDepth: limit, ErrorHandler: sink.handle})
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { return mb.Emit(ctx, Ping{0}) })
			mb.Subscribe(bus, func(ctx context.Context, e Ping) error {
				handled = append(handled, e.N)
				return mb.Emit(ctx, Ping{e.N + 1}) // endless
			})
			noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
			want := limit
			if limit == 0 {
				want = mb.DefaultMaxCascadeDepth
			}
			// Depths 0..limit are dispatched.
			if len(handled) != want+1 || handled[len(handled)-1] != want {
				t.Fatalf("handled %v, want 0..%d", handled, want)
			}
			hes := handlerErrors(t, sink.get())
			if len(hes) != 1 || !errors.Is(hes[0], mb.ErrCascadeLimit) {
				t.Fatalf("reported %v, want one ErrCascadeLimit", sink.get())
			}
			if hes[0].Kind != mb.KindEvent || hes[0].Name != "mb_test.Ping" {
				t.Errorf("cascade error %+v", hes[0])
			}
			wantUUIDv7(t, hes[0].ID)
		})
	}
}

// Two events emitted at the same depth by different handlers each cascade
// to the limit independently; events from Publish start at depth 0.
func TestCascadeLimitPublish(t *testing.T) {
	t.Parallel()
	var sink errSink
	var count atomic.Int32
	bus := mb.New(&mb.Options{MaxCascadeDepth: 2, ErrorHandler: sink.handle})
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error {
		count.Add(1)
		return mb.Emit(ctx, Ping{e.N + 1})
	})
	noErr(t, mb.Publish(context.Background(), bus, Ping{}, Ping{}))
	if count.Load() != 6 || len(sink.get()) != 2 {
		t.Fatalf("handled %d, reported %d; want 6 and 2", count.Load(), len(sink.get()))
	}
}

func TestFailingEventHandler(t *testing.T) {
	t.Parallel()
	var sink errSink
	var log recorder
	tr := &mbtest.Transactor{}
	errH := errors.New("smtp down")
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: sink.handle})
	mb.HandleCommand(bus, createAccount)
	var eventID string
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		touch(t, ctx)
		md, _ := mb.MetadataFrom(ctx)
		eventID = md.ID
		log.add("failing")
		noErr(t, mb.Emit(ctx, Note{"from failing handler"}))
		noErr(t, mb.AfterCommit(ctx, func(context.Context) { t.Error("after-commit of a failed event handler ran") }))
		return fmt.Errorf("send mail: %w", errH)
	}, mb.WithName("mailer"))
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { log.add("other"); return nil })
	mb.Subscribe(bus, func(ctx context.Context, e Note) error {
		t.Errorf("event %q of a failed event handler dispatched", e.Text)
		return nil
	})

	acc, err := mb.Send[Account](context.Background(), bus, CreateAccount{"f"})
	noErr(t, err)
	if acc.Name != "f" {
		t.Fatalf("got %+v", acc)
	}
	wantSeq(t, log.get(), []string{"failing", "other"})
	hes := handlerErrors(t, sink.get())
	if len(hes) != 1 {
		t.Fatalf("reported %v", sink.get())
	}
	he := hes[0]
	if !errors.Is(he, errH) || he.Kind != mb.KindEvent || he.Name != "mb_test.AccountCreated" || he.Handler != "mailer" || he.ID != eventID {
		t.Fatalf("HandlerError %+v (event id %q)", he, eventID)
	}
	for _, s := range []string{"mailer", "mb_test.AccountCreated", "smtp down"} {
		if !strings.Contains(he.Error(), s) {
			t.Errorf("%q does not contain %q", he.Error(), s)
		}
	}
	// Only the handler that used a transaction had one.
	wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 rollback"})
}

func TestPanickingEventHandler(t *testing.T) {
	t.Parallel()
	var sink errSink
	var ran atomic.Bool
	bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { panic("event boom") })
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { ran.Store(true); return nil })
	noErr(t, mb.Publish(context.Background(), bus, Note{}))
	if !ran.Load() {
		t.Fatal("the handler after a panicking one did not run")
	}
	hes := handlerErrors(t, sink.get())
	var pe *mb.PanicError
	if len(hes) != 1 || !errors.Is(hes[0], mb.ErrPanic) || !errors.As(hes[0], &pe) || pe.Value != "event boom" {
		t.Fatalf("reported %v", sink.get())
	}
}

func TestEmitOutsideUnit(t *testing.T) {
	t.Parallel()
	var nilCtx context.Context
	wantErr(t, mb.Emit(context.Background(), Note{}), mb.ErrNoUnitOfWork)
	wantErr(t, mb.Emit(nilCtx, Note{}), mb.ErrInvalidArgument)
	wantErr(t, mb.BeforeCommit(context.Background(), func(context.Context) error { return nil }), mb.ErrNoUnitOfWork)
	wantErr(t, mb.AfterCommit(context.Background(), func(context.Context) {}), mb.ErrNoUnitOfWork)
	wantErr(t, mb.BeforeCommit(nilCtx, func(context.Context) error { return nil }), mb.ErrInvalidArgument)
	if _, err := mb.TxFrom(context.Background()); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Fatalf("TxFrom outside any unit: %v, want ErrNoUnitOfWork", err)
	}
	if _, err := mb.TxFrom(nilCtx); !errors.Is(err, mb.ErrInvalidArgument) {
		t.Fatalf("TxFrom(nil): %v, want ErrInvalidArgument", err)
	}
}

func TestEmitAfterHandlerReturned(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	var retained, retainedInner, retainedEvent context.Context
	mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
		retained = ctx
		if _, err := mb.Send[Account](ctx, bus, GetAccountCmd{}); err != nil {
			return Account{}, err
		}
		// The nested handler has returned, the outer one has not.
		wantErr(t, mb.Emit(retainedInner, Note{"late inner"}), mb.ErrNoUnitOfWork)
		wantErr(t, mb.AfterCommit(retainedInner, func(context.Context) {}), mb.ErrNoUnitOfWork)
		return Account(c), mb.Emit(ctx, AccountCreated(c))
	})
	mb.HandleCommand(bus, func(ctx context.Context, c GetAccountCmd) (Account, error) {
		retainedInner = ctx
		return Account{}, nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { retainedEvent = ctx; return nil })
	var notes atomic.Int32
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { notes.Add(1); return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"r"})
	noErr(t, err)
	for name, ctx := range map[string]context.Context{"command": retained, "event": retainedEvent} {
		if err := mb.Emit(ctx, Note{"late"}); !errors.Is(err, mb.ErrNoUnitOfWork) {
			t.Errorf("%s: Emit after return: %v", name, err)
		}
		if err := mb.BeforeCommit(ctx, func(context.Context) error { return nil }); !errors.Is(err, mb.ErrNoUnitOfWork) {
			t.Errorf("%s: BeforeCommit after return: %v", name, err)
		}
	}
	if notes.Load() != 0 {
		t.Fatal("a late event was dispatched")
	}
	// A retained context is still a valid parent for a new Send.
	_, err = mb.Send[Account](retained, bus, GetAccountCmd{})
	noErr(t, err)
}

func TestEmitInvalid(t *testing.T) {
	t.Parallel()
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		for _, bad := range [][]any{
			{Note{"valid"}, 42},
			{Note{"valid"}, &Note{"pointer"}},
			{Note{"valid"}, nil},
			{"string"},
			{[]Note{{"slice"}}},
			{map[string]int{}},
		} {
			if err := mb.Emit(ctx, bad...); !errors.Is(err, mb.ErrInvalidMessage) {
				t.Errorf("Emit(%v): got %v, want ErrInvalidMessage", bad, err)
			}
		}
		noErr(t, mb.Emit(ctx)) // nothing to record
		return nil
	})
	mb.Subscribe(bus, func(ctx context.Context, e any) error {
		t.Errorf("event %#v dispatched after an invalid Emit", e)
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
}

// Events emitted from goroutines the handler waits for are recorded.
func TestEmitFromHandlerGoroutines(t *testing.T) {
	t.Parallel()
	var count atomic.Int32
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range 20 {
			wg.Go(func() { errs[i] = mb.Emit(ctx, Ping{i}) })
		}
		wg.Wait()
		return errors.Join(errs...)
	})
	mb.Subscribe(bus, func(ctx context.Context, e Ping) error { count.Add(1); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	if count.Load() != 20 {
		t.Fatalf("dispatched %d, want 20", count.Load())
	}
}

func TestBeforeCommitFailure(t *testing.T) {
	t.Parallel()
	errHook := errors.New("outbox write failed")
	for _, mode := range []string{"error", "panic"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			tr := &mbtest.Transactor{}
			bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
			mb.HandleCommand(bus, func(ctx context.Context, c CreateAccount) (Account, error) {
				noErr(t, mb.Emit(ctx, AccountCreated(c)))
				noErr(t, mb.AfterCommit(ctx, func(context.Context) { t.Error("after-commit hook ran after a rollback") }))
				return Account(c), mb.BeforeCommit(ctx, func(ctx context.Context) error {
					touch(t, ctx) // the first use: the transaction begins here
					if mode == "panic" {
						panic(errHook)
					}
					return errHook
				})
			})
			mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
				t.Error("event dispatched after a before-commit failure")
				return nil
			})
			_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"h"})
			wantErr(t, err, errHook)
			if mode == "panic" {
				wantErr(t, err, mb.ErrPanic)
			}
			wantSeq(t, tr.Calls(), []string{"tx1 begin", "tx1 rollback"})
		})
	}
}

// Before-commit hooks may emit events and register further hooks.
func TestBeforeCommitEmits(t *testing.T) {
	t.Parallel()
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		noErr(t, mb.Emit(ctx, Note{"handler"}))
		return mb.BeforeCommit(ctx, func(ctx context.Context) error {
			log.add("hook 1")
			noErr(t, mb.BeforeCommit(ctx, func(ctx context.Context) error {
				log.add("hook 2")
				return nil
			}))
			return mb.Emit(ctx, Note{"hook"})
		})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("event " + e.Text); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	wantSeq(t, log.get(), []string{"hook 1", "hook 2", "event handler", "event hook"})
}

func TestHookNilFunc(t *testing.T) {
	t.Parallel()
	bus := mb.New()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		wantErr(t, mb.BeforeCommit(ctx, nil), mb.ErrInvalidArgument)
		wantErr(t, mb.AfterCommit(ctx, nil), mb.ErrInvalidArgument)
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
}

func TestAfterCommitPanicReported(t *testing.T) {
	t.Parallel()
	var sink errSink
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: sink.handle})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		noErr(t, mb.AfterCommit(ctx, func(context.Context) { panic("after boom") }))
		noErr(t, mb.AfterCommit(ctx, func(ctx context.Context) {
			// A Send from an after-commit hook starts a new unit, whose
			// events are dispatched when it commits.
			log.add("second hook")
			noErr(t, mb.Exec(ctx, bus, GetAccountCmd{"again"}))
			log.add("second hook returns")
		}))
		return nil
	})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c GetAccountCmd) error {
		return mb.Emit(ctx, Note{c.Name})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.add("note " + e.Text); return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{"x"}))
	wantSeq(t, log.get(), []string{"second hook", "note again", "second hook returns"})
	errs := sink.get()
	if len(errs) != 1 || !errors.Is(errs[0], mb.ErrPanic) || !strings.Contains(errs[0].Error(), "after boom") {
		t.Fatalf("reported %v, want one ErrPanic", errs)
	}
}

// Each event handler runs in a unit of its own: its hooks, nested sends and
// transaction belong to it.
func TestEventHandlerUnit(t *testing.T) {
	t.Parallel()
	var log recorder
	tr := &mbtest.Transactor{}
	tr.OnCall(log.add)
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	mb.HandleCommand(bus, createAccount)
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		log.add("nested " + c.What)
		return mb.Emit(ctx, Note{c.What})
	})
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error {
		touch(t, ctx)
		noErr(t, mb.BeforeCommit(ctx, func(context.Context) error { log.add("event before-commit"); return nil }))
		noErr(t, mb.AfterCommit(ctx, func(context.Context) { log.add("event after-commit") }))
		return mb.Exec(ctx, bus, DoIt{"from event"})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { touch(t, ctx); log.add("note " + e.Text); return nil })
	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"u"})
	noErr(t, err)
	// Where the event handler's after-commit hook runs relative to the
	// events that handler emitted is not pinned here; only that it follows
	// its own commit.
	got := log.get()
	i := slices.Index(got, "event after-commit")
	if i < 0 || slices.Index(got, "tx1 commit") > i {
		t.Fatalf("after-commit hook missing or before the commit: %q", got)
	}
	got = slices.Delete(got, i, i+1)
	// The command used no transaction, so it began none.
	wantSeq(t, got, []string{
		"tx1 begin",
		"tx1 savepoint mb_sp_1", "nested from event", "tx1 release mb_sp_1",
		"event before-commit",
		"tx1 commit",
		"tx2 begin", "note from event", "tx2 commit",
	})
}

// The context given to Send reaches the handlers: values and cancellation.
func TestContextPropagation(t *testing.T) {
	t.Parallel()
	type key struct{}
	ctx := context.WithValue(context.Background(), key{}, "v")
	var log recorder
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error {
		log.addf("command %v", ctx.Value(key{}))
		noErr(t, mb.AfterCommit(ctx, func(ctx context.Context) { log.addf("after %v", ctx.Value(key{})) }))
		return mb.Emit(ctx, Note{})
	})
	mb.Subscribe(bus, func(ctx context.Context, e Note) error { log.addf("event %v", ctx.Value(key{})); return nil })
	noErr(t, mb.Exec(ctx, bus, DoIt{}))
	wantSeq(t, log.get(), []string{"command v", "event v", "after v"})

	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c GetAccountCmd) error { return ctx.Err() })
	wantErr(t, mb.Exec(cctx, bus, GetAccountCmd{}), context.Canceled)
}

// Two buses do not share units: a Send to another bus from a handler starts
// its own unit there.
func TestSendToOtherBus(t *testing.T) {
	t.Parallel()
	var log recorder
	busA := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	busB := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(busA, func(ctx context.Context, c DoIt) error {
		noErr(t, mb.Exec(ctx, busB, DoIt{"b"}))
		log.add("A returns")
		return errors.New("A fails")
	})
	mb.HandleCommandNoResult(busB, func(ctx context.Context, c DoIt) error { return mb.Emit(ctx, Note{"b"}) })
	mb.Subscribe(busB, func(ctx context.Context, e Note) error { log.add("B event"); return nil })
	mb.Subscribe(busA, func(ctx context.Context, e Note) error { log.add("A event"); return nil })
	if err := mb.Exec(context.Background(), busA, DoIt{"a"}); err == nil {
		t.Fatal("want A's error")
	}
	wantSeq(t, log.get(), []string{"B event", "A returns"})
}

// A handler that sends a command of its own type nests a new message: it
// gets its own id, caused by the outer one.
func TestNestedSendSameCommandType(t *testing.T) {
	t.Parallel()
	type step struct{ N int }
	var mu sync.Mutex
	mds := map[int]mb.Metadata{}
	bus := mb.New(&mb.Options{ErrorHandler: noErrors(t)})
	mb.HandleCommandNoResult(bus, func(ctx context.Context, s step) error {
		md, _ := mb.MetadataFrom(ctx)
		mu.Lock()
		mds[s.N] = md
		mu.Unlock()
		if s.N < 2 {
			return mb.Exec(ctx, bus, step{s.N + 1})
		}
		return nil
	})
	noErr(t, mb.Exec(context.Background(), bus, step{0}))
	if len(mds) != 3 {
		t.Fatalf("metadata of %d steps", len(mds))
	}
	for n := 1; n <= 2; n++ {
		outer, inner := mds[n-1], mds[n]
		if inner.ID == outer.ID {
			t.Errorf("step %d shares the id %q of step %d", n, inner.ID, n-1)
		}
		if inner.CausationID != outer.ID {
			t.Errorf("step %d: causation %q, want step %d's id %q", n, inner.CausationID, n-1, outer.ID)
		}
		if inner.CorrelationID != mds[0].ID {
			t.Errorf("step %d: correlation %q, want %q", n, inner.CorrelationID, mds[0].ID)
		}
	}
}

// Transactions begin on first use: units that never ask for one begin
// none, and one that begins inside nested units sets their savepoints then.
func TestLazyTransaction(t *testing.T) {
	t.Parallel()
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr, ErrorHandler: noErrors(t)})
	type level struct{ N int }
	errDeep := errors.New("level 2 fails")
	mb.HandleCommandNoResult(bus, func(ctx context.Context, l level) error {
		switch l.N {
		case 2: // the first and only user of the transaction
			touch(t, ctx)
			return errDeep
		case 0, 1:
			if err := mb.Exec(ctx, bus, level{l.N + 1}); l.N == 1 {
				return err
			}
		}
		return nil
	})
	mb.HandleCommand(bus, createAccount)
	mb.Subscribe(bus, func(ctx context.Context, e AccountCreated) error { return nil })

	_, err := mb.Send[Account](context.Background(), bus, CreateAccount{"a"})
	noErr(t, err)
	if calls := tr.Calls(); len(calls) != 0 {
		t.Fatalf("units that did not use a transaction began one: %q", calls)
	}

	noErr(t, mb.Exec(context.Background(), bus, level{0}))
	wantSeq(t, tr.Calls(), []string{
		"tx1 begin",
		"tx1 savepoint mb_sp_1", // level 1, set when level 2 began the transaction
		"tx1 savepoint mb_sp_2", // level 2
		"tx1 rollback to mb_sp_2",
		"tx1 rollback to mb_sp_1", // level 1 returned level 2's error
		"tx1 commit",              // level 0 carried on
	})
}

// TxFrom fails once the handler has returned, and on a bus without a
// Transactor.
func TestTxFromErrors(t *testing.T) {
	t.Parallel()
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr})
	var kept context.Context
	mb.HandleCommandNoResult(bus, func(ctx context.Context, c DoIt) error { kept = ctx; return nil })
	noErr(t, mb.Exec(context.Background(), bus, DoIt{}))
	if _, err := mb.TxFrom(kept); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Fatalf("TxFrom after the handler returned: %v", err)
	}
	if calls := tr.Calls(); len(calls) != 0 {
		t.Fatalf("calls %q", calls)
	}

	plain := mb.New()
	var txErr error
	mb.HandleCommandNoResult(plain, func(ctx context.Context, c DoIt) error { _, txErr = mb.TxFrom(ctx); return nil })
	noErr(t, mb.Exec(context.Background(), plain, DoIt{}))
	wantErr(t, txErr, mb.ErrNoTransactor)
}
