// Package mbpgx binds mb's units of work to PostgreSQL transactions
// through pgx v5 (a pgxpool.Pool and pgx.Tx), and gives consumers an
// inbox in the same database, so that a handler's writes, its events and
// the record that a message was handled commit or roll back together. It
// is package mbsql's PostgreSQL dialect for programs that use pgx's own
// interface rather than database/sql.
//
// # Usage
//
// Create a [Transactor] over the pool and set it as the bus's
// Transactor. A handler takes its unit's transaction with [Tx]:
//
//	pool, err := pgxpool.New(ctx, "postgres://app@db/app")
//	tr, err := mbpgx.New(pool, nil)
//	bus := mb.New(&mb.Options{Transactor: tr})
//
//	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
//		tx, err := mbpgx.Tx(ctx)
//		if err != nil {
//			return User{}, err
//		}
//		if _, err := tx.Exec(ctx, "INSERT INTO users (name) VALUES ($1)", c.Name); err != nil {
//			return User{}, err
//		}
//		return User{c.Name}, mb.Emit(ctx, UserCreated{c.Name})
//	})
//
// The transaction begins when a handler first asks for it (a unit that
// never does takes no connection from the pool), commits when the unit
// succeeds, before its events are dispatched, and rolls back when the
// handler fails or panics or a before-commit hook fails. Each event
// handler runs in a unit, so in a transaction, of its own. A unit holds
// one connection of the pool from its first [Tx] to its end: size the
// pool (pool_max_conns) for the units that run at once.
//
// For a consumer, add an [Inbox] of the same Transactor.
//
// # Dialects
//
// PostgreSQL only; the SQL is the same as mbsql's PostgreSQL dialect,
// and both share one schema.
//
// # Transactions and savepoints
//
// [Options] set the isolation level and read-only mode of every
// transaction of a Transactor; make two Transactors (two buses) for units
// that need different ones.
//
// A Send from inside a handler joins the outer unit's transaction; the
// bus sets a SAVEPOINT for it and, if the inner handler fails, rolls back
// to it, so the inner writes are undone while the outer handler goes on;
// on success it releases it. The statements are explicit SQL on the
// unit's pgx.Tx with the name as a quoted identifier; do not use pgx's
// nested transactions (pgx.Tx.Begin) on that Tx alongside.
//
// PostgreSQL aborts a whole transaction on a serialization failure
// (40001) or a deadlock (40P01): only running the unit again in a fresh
// transaction repairs it, which [Transactor.IsConflict] tells. A handler
// that ignores such an error finds its unit's commit turned into a
// rollback: pgx reports it as pgx.ErrTxCommitRollback.
//
// # Inbox
//
// [Inbox] implements [mb.Inbox] with a table: set it as
// [mb.ConsumerOptions.Inbox] of a Consumer whose bus has the same
// Transactor. The Consumer calls Claim in each handler's unit of work,
// before the handler runs; Claim inserts the key (consumer group, handler
// name, message source, message id: [mb.InboxKey]) with its time of
// receipt, with INSERT ... ON CONFLICT DO NOTHING in the unit's
// transaction, and reports whether a row was inserted. The key is
// recorded if and only if the handler's writes commit. A second claim of
// a key whose first claim's transaction is still open waits for its row
// lock; when that transaction ends, it inserts nothing if it committed,
// or the row if it rolled back. So the inbox never answers
// [mb.ErrInFlight].
//
// Rows stay until [Inbox.Cleanup] deletes those received before a given
// time. Keep them longer than the broker may deliver a message again
// (its redelivery of unacknowledged messages, the consumer's retries and
// their backoff, the time a consumer group may be stopped): a message
// redelivered after its row was deleted is handled again.
//
// # Schema
//
// [Inbox.Migrate] creates the inbox table and its index if they do not
// exist, in one transaction under an advisory lock: idempotent, and safe
// to run at every start of every process. Applications with a migration
// tool of their own take the statements from [Inbox.Schema] (with the
// configured table name), or the plain file
// internal/sqlstore/schema/postgres/inbox.sql of the repository (default
// name mb_inbox), which mbsql uses too. [InboxOptions.Table] names the
// table: an identifier or "schema.table"; anything else is refused.
//
// # Errors
//
// Constructors return every problem of their arguments at once, each
// wrapping [mb.ErrInvalidArgument]. [Tx] and [Inbox.Claim] return the
// errors of [mb.TxFrom] (outside a unit of work: [mb.ErrNoUnitOfWork])
// and [ErrForeignTx] when the unit's transaction is not this package's.
// Everything else is pgx's error (*pgconn.PgError for the server's),
// unwrapped: the bus wraps it once.
//
// # What was verified where
//
// The conformance suites of package mbstoretest pass on PostgreSQL 15
// with pgx v5.12 and -race: commit, rollback on error, panic and hook,
// savepoints of nested units, savepoint names, lazy begin, concurrent
// units, read-only units, READ COMMITTED, REPEATABLE READ and
// SERIALIZABLE; inbox claims, rollback, key fields, concurrent claims
// (the second seen waiting on a lock in pg_stat_activity) and a Consumer
// with a duplicated message. [Transactor.IsConflict] was checked against a
// real serialization failure.
package mbpgx
