package mbstoretest

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mb-go/mb"
)

// RunTransactor runs the Transactor subtests against the stores h opens.
func RunTransactor(t *testing.T, h Harness) {
	t.Helper()
	s := newSuite(t, h)
	tests := []testCase{
		{"Commit", s.testCommit},
		{"RollbackError", func(t *testing.T) { s.testRollback(t, "error") }},
		{"RollbackPanic", func(t *testing.T) { s.testRollback(t, "panic") }},
		{"RollbackBeforeCommit", func(t *testing.T) { s.testRollback(t, "hook") }},
		{"NestedRollback", s.testNestedRollback},
		{"NestedBegin", s.testNestedBegin},
		{"SavepointNames", s.testSavepointNames},
		{"Lazy", s.testLazy},
		{"Concurrent", s.testConcurrent},
	}
	if h.ReadOnly {
		tests = append(tests, testCase{"ReadOnly", s.testReadOnly})
	}
	for _, l := range h.Isolation {
		tests = append(tests, testCase{"Isolation/" + levelName(l), func(t *testing.T) { s.testIsolation(t, l) }})
	}
	runAll(t, tests)
}

// Commit: a row written in a unit is visible in the unit's transaction at
// once, to nobody else before the commit, and to everybody after it.
func (s *suite) testCommit(t *testing.T) {
	st, ctx, bus := s.setup(t, Config{})
	k := key(t, "row")
	err := unit(ctx, bus, func(ctx context.Context) error {
		if err := st.insert(ctx, k); err != nil {
			return err
		}
		if n, err := st.count(ctx, k); err != nil || n != 1 {
			return errorf("the unit's own transaction counts %d rows (%v) after its insert, want 1", n, err)
		}
		if n, err := st.Count(ctx, nil, k); err != nil || n != 0 {
			return errorf("outside the unit, %d rows (%v) are visible before its commit, want 0", n, err)
		}
		return nil
	})
	must(t, "the unit", err)
	st.wantCommitted(t, ctx, map[string]int{k: 1})
}

// RollbackError, RollbackPanic, RollbackBeforeCommit: a unit whose handler
// fails, panics, or whose before-commit hook fails leaves no row.
func (s *suite) testRollback(t *testing.T, how string) {
	st, ctx, bus := s.setup(t, Config{})
	k := key(t, "row")
	err := unit(ctx, bus, func(ctx context.Context) error {
		if err := st.insert(ctx, k); err != nil {
			return err
		}
		switch how {
		case "panic":
			panic(errPlanned)
		case "hook":
			return mb.BeforeCommit(ctx, func(ctx context.Context) error {
				// The hook writes too: its row goes with the unit's.
				if err := st.insert(ctx, k+"-hook"); err != nil {
					return err
				}
				return errPlanned
			})
		}
		return errPlanned
	})
	want := errPlanned
	if how == "panic" {
		want = mb.ErrPanic
	}
	if !errors.Is(err, want) {
		t.Fatalf("Send = %v, want the planned failure (%v)", err, want)
	}
	st.wantCommitted(t, ctx, map[string]int{k: 0, k + "-hook": 0})
}

// NestedRollback: a nested unit that fails rolls back to its savepoint:
// its row is gone, in the transaction and after the commit, while the rows
// the outer unit wrote before and after it commit, as does the row of a
// nested unit that succeeded.
func (s *suite) testNestedRollback(t *testing.T) {
	st, ctx, bus := s.setup(t, Config{})
	before, inner, after, ok := key(t, "before"), key(t, "inner"), key(t, "after"), key(t, "ok")
	err := unit(ctx, bus, func(ctx context.Context) error {
		if err := st.insert(ctx, before); err != nil {
			return err
		}
		if err := failNested(ctx, st, bus, inner); err != nil {
			return err
		}
		if n, err := st.count(ctx, inner); err != nil || n != 0 {
			return errorf("after the nested unit failed, its row is visible %d times (%v), want 0: not rolled back to its savepoint", n, err)
		}
		if err := unit(ctx, bus, func(ctx context.Context) error { return st.insert(ctx, ok) }); err != nil {
			return errorf("the succeeding nested Send: %v", err)
		}
		return st.insert(ctx, after)
	})
	must(t, "the outer unit", err)
	st.wantCommitted(t, ctx, map[string]int{before: 1, inner: 0, after: 1, ok: 1})
}

// failNested runs a nested unit that writes key and fails, and returns an
// error if Send does not return that failure.
func failNested(ctx context.Context, st Store, bus *mb.Bus, key string) error {
	err := unit(ctx, bus, func(ctx context.Context) error {
		if err := st.insert(ctx, key); err != nil {
			return err
		}
		return errPlanned
	})
	if !errors.Is(err, errPlanned) {
		return errorf("the failing nested Send returned %v, want the planned failure", err)
	}
	return nil
}

// NestedBegin: when the transaction begins inside a nested unit (the outer
// unit has not used it yet), the nested unit still rolls back alone.
func (s *suite) testNestedBegin(t *testing.T) {
	st, ctx, bus := s.setup(t, Config{})
	inner, after := key(t, "inner"), key(t, "after")
	err := unit(ctx, bus, func(ctx context.Context) error {
		if err := failNested(ctx, st, bus, inner); err != nil {
			return err
		}
		return st.insert(ctx, after)
	})
	must(t, "the outer unit", err)
	st.wantCommitted(t, ctx, map[string]int{inner: 0, after: 1})
}

// SavepointNames: the transaction's savepoints work with any name a
// caller may give, quotes and dots included: rolling back to one undoes
// what was written after it, releasing one keeps it.
func (s *suite) testSavepointNames(t *testing.T) {
	st := s.open(t, Config{})
	ctx := s.ctx(t)
	tx, err := st.Transactor.Begin(ctx)
	must(t, "Begin", err)
	defer func() { _ = tx.Rollback(ctx) }()
	sp, ok := tx.(mb.Savepointer)
	if !ok {
		t.Fatalf("the transaction (%T) does not implement mb.Savepointer", tx)
	}
	want := map[string]int{}
	for i, name := range []string{"mb_sp_1", `odd "name"`, "odd `name`", "odd 'name'", "with.dots", "Ünïcode", "select"} {
		undone, kept := key(t, "undone"), key(t, "kept")
		must(t, "Savepoint "+name, sp.Savepoint(ctx, name))
		must(t, "Insert", st.Insert(ctx, tx, undone))
		must(t, "RollbackToSavepoint "+name, sp.RollbackToSavepoint(ctx, name))
		must(t, "Insert", st.Insert(ctx, tx, kept))
		must(t, "ReleaseSavepoint "+name, sp.ReleaseSavepoint(ctx, name))
		if n, err := st.Count(ctx, tx, undone); err != nil || n != 0 {
			t.Fatalf("savepoint %d (%q): the row written after it counts %d (%v) after the rollback to it, want 0", i, name, n, err)
		}
		want[undone], want[kept] = 0, 1
	}
	must(t, "Commit", tx.Commit(ctx))
	st.wantCommitted(t, ctx, want)
}

// countingTransactor counts the transactions its Transactor begins.
type countingTransactor struct {
	mb.Transactor
	n atomic.Int64
}

func (c *countingTransactor) Begin(ctx context.Context) (mb.Tx, error) {
	c.n.Add(1)
	return c.Transactor.Begin(ctx)
}

// Lazy: a unit whose handlers never ask for the transaction begins none,
// nor do its event handlers; a unit that asks several times, also from
// nested units, begins one.
func (s *suite) testLazy(t *testing.T) {
	st := s.open(t, Config{})
	ctx := s.ctx(t)
	ct := &countingTransactor{Transactor: st.Transactor}
	bus := newBus(t, ct)
	handleCmd(bus)
	type noted struct{}
	mb.Subscribe(bus, func(context.Context, noted) error { return nil }, mb.WithName("mbstoretest.noted"))
	must(t, "a unit without database work", unit(ctx, bus, func(ctx context.Context) error { return mb.Emit(ctx, noted{}) }))
	if n := ct.n.Load(); n != 0 {
		t.Fatalf("units that never asked for a transaction began %d", n)
	}
	k := key(t, "row")
	err := unit(ctx, bus, func(ctx context.Context) error {
		if _, err := st.count(ctx, k); err != nil {
			return err
		}
		if err := unit(ctx, bus, func(ctx context.Context) error { return st.insert(ctx, k) }); err != nil {
			return err
		}
		_, err := st.count(ctx, k)
		return err
	})
	must(t, "the unit", err)
	if n := ct.n.Load(); n != 1 {
		t.Fatalf("a unit that asked for its transaction three times, once nested, began %d, want 1", n)
	}
	st.wantCommitted(t, ctx, map[string]int{k: 1})
}

// Concurrent: units running at once are independent: each commits or
// rolls back its own rows, and none sees another's uncommitted row.
func (s *suite) testConcurrent(t *testing.T) {
	st, ctx, bus := s.setup(t, Config{})

	// A unit holds an uncommitted row while another looks for it.
	held := key(t, "held")
	inserted, release := make(chan struct{}), make(chan struct{})
	done := make(chan result, 1)
	go func() {
		err := unit(ctx, bus, func(ctx context.Context) error {
			if err := st.insert(ctx, held); err != nil {
				return err
			}
			close(inserted)
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		done <- result{err: err}
	}()
	select {
	case <-inserted:
	case r := <-done:
		t.Fatalf("the unit holding a row ended early: %v", r.err)
	}
	err := unit(ctx, bus, func(ctx context.Context) error {
		if n, err := st.count(ctx, held); err != nil || n != 0 {
			return errorf("a concurrent unit counts %d (%v) of another unit's uncommitted row, want 0", n, err)
		}
		return nil
	})
	close(release)
	must(t, "the looking unit", err)
	must(t, "the holding unit", s.await(t, done, "the holding unit").err)

	// Many units at once, every other one failing.
	const units = 8
	keys := make([]string, units)
	var wg sync.WaitGroup
	errs := make([]error, units)
	for i := range units {
		keys[i] = key(t, "unit")
		wg.Go(func() {
			errs[i] = unit(ctx, bus, func(ctx context.Context) error {
				if err := st.insert(ctx, keys[i]); err != nil {
					return err
				}
				if i%2 == 1 {
					return errPlanned
				}
				return nil
			})
		})
	}
	wg.Wait()
	want := map[string]int{held: 1}
	for i, err := range errs {
		if i%2 == 1 {
			if !errors.Is(err, errPlanned) {
				t.Errorf("unit %d returned %v, want the planned failure", i, err)
			}
			want[keys[i]] = 0
			continue
		}
		if err != nil {
			t.Errorf("unit %d: %v", i, err)
		}
		want[keys[i]] = 1
	}
	st.wantCommitted(t, ctx, want)
}

// ReadOnly: in a read-only unit a write fails, and fails the unit, while
// reads work.
func (s *suite) testReadOnly(t *testing.T) {
	st, ctx, bus := s.setup(t, Config{ReadOnly: true})
	k := key(t, "row")
	var insertErr error
	err := unit(ctx, bus, func(ctx context.Context) error {
		if _, err := st.count(ctx, k); err != nil {
			return errorf("a read in a read-only unit: %v", err)
		}
		insertErr = st.insert(ctx, k)
		return insertErr
	})
	if insertErr == nil {
		t.Fatal("a write in a read-only unit succeeded")
	}
	if err == nil {
		t.Fatal("the read-only unit whose write failed committed")
	}
	st.wantCommitted(t, ctx, map[string]int{k: 0})
	// The read-only mode ends with the unit: a read-write store of the
	// same database writes (a pooled connection may be reused).
	rw, _, rwBus := s.setup(t, Config{})
	k2 := key(t, "after")
	must(t, "a read-write unit after a read-only one", unit(ctx, rwBus, func(ctx context.Context) error { return rw.insert(ctx, k2) }))
	rw.wantCommitted(t, ctx, map[string]int{k2: 1})
}

// Isolation/<level>: a unit counts a key, another transaction inserts it
// and commits, the unit counts again: below REPEATABLE READ it sees the
// new row, at REPEATABLE READ and above it does not.
func (s *suite) testIsolation(t *testing.T, level sql.IsolationLevel) {
	st, ctx, bus := s.setup(t, Config{Isolation: level})
	k := key(t, "row")
	want := 0
	if level == sql.LevelReadUncommitted || level == sql.LevelReadCommitted {
		want = 1
	}
	err := unit(ctx, bus, func(ctx context.Context) error {
		if n, err := st.count(ctx, k); err != nil || n != 0 {
			return errorf("first count = %d (%v), want 0", n, err)
		}
		tx, err := st.Transactor.Begin(ctx)
		if err != nil {
			return errorf("Begin of the writer: %v", err)
		}
		if err := st.Insert(ctx, tx, k); err != nil {
			_ = tx.Rollback(ctx)
			return errorf("the writer's insert: %v", err)
		}
		if err := tx.Commit(ctx); err != nil {
			return errorf("the writer's commit: %v", err)
		}
		if n, err := st.count(ctx, k); err != nil || n != want {
			return errorf("at %v, after another transaction committed the row, the unit counts %d (%v), want %d", level, n, err, want)
		}
		return nil
	})
	must(t, "the unit", err)
}
