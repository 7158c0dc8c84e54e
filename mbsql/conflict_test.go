package mbsql

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mb-go/mb"
)

type insertRow struct{ Key string }

// Two units that each read the whole table and then insert a row conflict
// at SERIALIZABLE: PostgreSQL aborts one with a serialization failure,
// MariaDB with a deadlock. With Options.ConflictRetry the bus runs the
// aborted one again in a fresh transaction, and both commit.
func TestConflictRetry(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL} {
		t.Run(d.String(), func(t *testing.T) {
			e := newEnv(t, d)
			tr := e.transactor(t, &Options{Isolation: sql.LevelSerializable})
			bus := mb.New(&mb.Options{Transactor: tr, ConflictRetry: &mb.RetryOptions{
				MaxAttempts: 10, Backoff: mb.Backoff{Min: time.Millisecond, Max: 20 * time.Millisecond},
			}})
			var tries atomic.Int32
			var bothRead sync.WaitGroup
			bothRead.Add(2)
			insert := "INSERT INTO " + e.rows + " (k) VALUES ($1)"
			if d == MySQL {
				insert = "INSERT INTO " + e.rows + " (k) VALUES (?)"
			}
			mb.HandleCommandNoResult(bus, func(ctx context.Context, c insertRow) error {
				tx, err := Tx(ctx)
				if err != nil {
					return err
				}
				var n int
				if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+e.rows).Scan(&n); err != nil {
					return err
				}
				if tries.Add(1) <= 2 {
					// The first two tries read before either writes.
					bothRead.Done()
					bothRead.Wait()
				}
				_, err = tx.ExecContext(ctx, insert, c.Key)
				return err
			}, mb.WithName("insert"))
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, k := range []string{"a", "b"} {
				wg.Go(func() { errs[i] = mb.Exec(context.Background(), bus, insertRow{k}) })
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatalf("a unit failed despite ConflictRetry: %v", err)
				}
			}
			if n := tries.Load(); n < 3 {
				t.Fatalf("%d tries: the units did not conflict, so this test shows nothing", n)
			}
			var n int
			if err := e.db.QueryRow("SELECT count(*) FROM " + e.rows).Scan(&n); err != nil || n != 2 {
				t.Fatalf("%d rows (%v), want 2", n, err)
			}
		})
	}
}
