package mbtest_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mb-go/mb"
	"github.com/mb-go/mb/mbtest"
)

func checkCalls(t *testing.T, tr *mbtest.Transactor, want ...string) {
	t.Helper()
	if got := tr.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls:\n    %s\nwant:\n    %s", strings.Join(got, "\n    "), strings.Join(want, "\n    "))
	}
}

func TestTransactorUnitOfWork(t *testing.T) {
	tests := []struct {
		name    string
		cmd     Outer
		wantErr error
		calls   []string
	}{
		{"nested success releases the savepoint", Outer{}, nil, []string{
			"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 commit",
		}},
		{"inner failure rolls back to the savepoint", Outer{FailInner: true}, nil, []string{
			"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 rollback to mb_sp_1", "tx1 commit",
		}},
		{"outer failure rolls back", Outer{FailOuter: true}, errOuter, []string{
			"tx1 begin", "tx1 savepoint mb_sp_1", "tx1 release mb_sp_1", "tx1 rollback",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &mbtest.Transactor{}
			bus := mb.New(&mb.Options{Transactor: tr})
			registerNested(bus)
			if _, err := mb.Send[string](t.Context(), bus, tt.cmd); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Send error = %v, want %v", err, tt.wantErr)
			}
			checkCalls(t, tr, tt.calls...)
		})
	}
}

func TestTransactorEventHandlersGetTheirOwn(t *testing.T) {
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr})
	var ids []int
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		tx, err := mb.TxFrom(ctx)
		if err != nil {
			return User{}, err
		}
		ids = append(ids, tx.(*mbtest.Tx).ID())
		return createUser(ctx, c)
	})
	mb.Subscribe(bus, func(ctx context.Context, e UserCreated) error {
		tx, err := mb.TxFrom(ctx)
		if err != nil {
			return err
		}
		ids = append(ids, tx.(*mbtest.Tx).ID())
		return nil
	})
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); err != nil {
		t.Fatal(err)
	}
	checkCalls(t, tr, "tx1 begin", "tx1 commit", "tx2 begin", "tx2 commit")
	if !slices.Equal(ids, []int{1, 2}) {
		t.Errorf("handlers saw transactions %v, want [1 2]", ids)
	}
}

func TestTransactorCommitErr(t *testing.T) {
	errCommit := errors.New("serialization failure")
	tr := &mbtest.Transactor{CommitErr: errCommit}
	bus, rec := mbtest.NewBus(t, &mb.Options{Transactor: tr})
	mb.HandleCommand(bus, createUser)
	_, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"})
	if !errors.Is(err, errCommit) || !strings.Contains(err.Error(), "mb: commit") {
		t.Fatalf("Send error = %v, want the commit error", err)
	}
	checkCalls(t, tr, "tx1 begin", "tx1 commit")
	mbtest.AssertNoEvents(t, rec) // never committed: never dispatched
	if cmds := rec.Commands(); len(cmds) != 1 || !errors.Is(cmds[0].Err, errCommit) || cmds[0].Committed {
		t.Errorf("commands = %+v, want a handling that failed to commit", cmds)
	}
}

func TestTransactorBeginErr(t *testing.T) {
	errBegin := errors.New("too many connections")
	tr := &mbtest.Transactor{BeginErr: errBegin}
	bus, rec := mbtest.NewBus(t, &mb.Options{Transactor: tr})
	mb.HandleCommand(bus, createUser)
	if _, err := mb.Send[User](t.Context(), bus, CreateUser{Username: "me"}); !errors.Is(err, errBegin) {
		t.Fatalf("Send error = %v, want %v", err, errBegin)
	}
	checkCalls(t, tr, "tx1 begin")
	if cmds := rec.Commands(); len(cmds) != 1 || !errors.Is(cmds[0].Err, errBegin) || cmds[0].Committed {
		t.Errorf("commands = %+v, want the handler failing with the begin error", cmds)
	}
}

func TestTransactorRollbackErr(t *testing.T) {
	errRollback := errors.New("connection lost")
	tr := &mbtest.Transactor{RollbackErr: errRollback}
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommand(bus, createUser)
	_, err := mb.Send[User](t.Context(), bus, CreateUser{})
	if !errors.Is(err, errNoUsername) || !errors.Is(err, errRollback) {
		t.Fatalf("Send error = %v, want the handler's error joined with the rollback error", err)
	}
	checkCalls(t, tr, "tx1 begin", "tx1 rollback")
}

func TestTxSavepoints(t *testing.T) {
	ctx := t.Context()
	tr := &mbtest.Transactor{}
	btx, err := tr.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tx := btx.(*mbtest.Tx)
	if tx.ID() != 1 {
		t.Errorf("ID = %d, want 1", tx.ID())
	}
	mustOK := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}
	mustFail := func(what string, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", what, err, want)
		}
	}
	mustFail("rollback to unknown", tx.RollbackToSavepoint(ctx, "nope"), `tx1: savepoint "nope" does not exist`)
	mustFail("release unknown", tx.ReleaseSavepoint(ctx, "nope"), `savepoint "nope" does not exist`)
	mustOK("savepoint a", tx.Savepoint(ctx, "a"))
	mustOK("savepoint b", tx.Savepoint(ctx, "b"))
	mustOK("rollback to a", tx.RollbackToSavepoint(ctx, "a")) // destroys b, keeps a
	mustFail("release b after rollback to a", tx.ReleaseSavepoint(ctx, "b"), `savepoint "b" does not exist`)
	mustOK("rollback to a again", tx.RollbackToSavepoint(ctx, "a"))
	mustOK("release a", tx.ReleaseSavepoint(ctx, "a"))
	mustFail("rollback to released a", tx.RollbackToSavepoint(ctx, "a"), `savepoint "a" does not exist`)
	mustOK("commit", tx.Commit(ctx))
	mustFail("commit again", tx.Commit(ctx), "tx1 commit after the transaction ended")
	mustFail("rollback after commit", tx.Rollback(ctx), "tx1 rollback after the transaction ended")
	mustFail("savepoint after commit", tx.Savepoint(ctx, "c"), "tx1 savepoint c after the transaction ended")
	// Every call is recorded, failed ones included.
	checkCalls(t, tr,
		"tx1 begin",
		"tx1 rollback to nope", "tx1 release nope",
		"tx1 savepoint a", "tx1 savepoint b", "tx1 rollback to a", "tx1 release b",
		"tx1 rollback to a", "tx1 release a", "tx1 rollback to a",
		"tx1 commit", "tx1 commit", "tx1 rollback", "tx1 savepoint c",
	)
}

func TestTransactorOnCallAndReset(t *testing.T) {
	ctx := t.Context()
	tr := &mbtest.Transactor{}
	var log []string
	tr.OnCall(func(call string) { log = append(log, "hook: "+call) })
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
		log = append(log, "handler")
		return User{}, useDB(ctx)
	})
	if _, err := mb.Send[User](ctx, bus, CreateUser{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"handler", "hook: tx1 begin", "hook: tx1 commit"}
	if !slices.Equal(log, want) {
		t.Errorf("log = %q, want %q", log, want)
	}
	tr.Reset()
	checkCalls(t, tr)
	if _, err := mb.Send[User](ctx, bus, CreateUser{}); err != nil {
		t.Fatal(err)
	}
	checkCalls(t, tr, "tx1 begin", "tx1 commit") // numbering restarted
}

func TestTransactorConcurrent(t *testing.T) {
	tr := &mbtest.Transactor{}
	bus := mb.New(&mb.Options{Transactor: tr})
	mb.HandleCommand(bus, createUser)
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, err := mb.Send[User](context.Background(), bus, CreateUser{Username: fmt.Sprint(i)}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	calls := tr.Calls()
	if len(calls) != 2*n {
		t.Fatalf("got %d calls, want %d", len(calls), 2*n)
	}
	for i := 1; i <= n; i++ {
		for _, what := range []string{"begin", "commit"} {
			if c := fmt.Sprintf("tx%d %s", i, what); !slices.Contains(calls, c) {
				t.Errorf("missing %q", c)
			}
		}
	}
}
