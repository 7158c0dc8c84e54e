// Package mbsql binds mb's units of work to database/sql transactions, on
// PostgreSQL, MariaDB/MySQL and SQLite, and gives consumers an inbox in
// the same database, so that a handler's writes, its events and the
// record that a message was handled commit or roll back together.
//
// # Usage
//
// Open the database with its driver, create a [Transactor] for it and set
// it as the bus's Transactor. A handler takes its unit's transaction with
// [Tx]:
//
//	db, err := sql.Open("pgx", "postgres://app@db/app") // github.com/jackc/pgx/v5/stdlib
//	tr, err := mbsql.New(db, mbsql.Postgres, nil)
//	bus := mb.New(&mb.Options{Transactor: tr})
//
//	mb.HandleCommand(bus, func(ctx context.Context, c CreateUser) (User, error) {
//		tx, err := mbsql.Tx(ctx)
//		if err != nil {
//			return User{}, err
//		}
//		_, err = tx.ExecContext(ctx, "INSERT INTO users (name) VALUES ($1)", c.Name)
//		if err != nil {
//			return User{}, err
//		}
//		return User{c.Name}, mb.Emit(ctx, UserCreated{c.Name})
//	})
//
// The transaction begins when a handler first asks for it (a unit that
// never does costs the database nothing), commits when the unit succeeds,
// before its events are dispatched, and rolls back when the handler fails
// or panics or a before-commit hook fails. Each event handler runs in a
// unit, so in a transaction, of its own.
//
// For a consumer, add an [Inbox] of the same Transactor (see "Inbox").
//
// # Dialects
//
// The [Dialect] names the database and so its SQL. A program imports the
// driver it uses; mbsql itself imports only go-sql-driver/mysql (for its
// error type, which also registers that driver):
//
//   - [Postgres]: github.com/jackc/pgx/v5/stdlib (driver name "pgx"); any
//     driver whose errors have a SQLState() string method works. Package
//     mbpgx is the same over pgx's own interface.
//   - [MySQL]: MariaDB or MySQL through github.com/go-sql-driver/mysql.
//     Add parseTime=true to the DSN if the application scans times.
//   - [SQLite]: modernc.org/sqlite (driver name "sqlite"), pure Go, no
//     server: the embedded default.
//
// Pools. PostgreSQL and MariaDB take as many connections as units run at
// once (db.SetMaxOpenConns bounds it; a unit holds one from its first
// [Tx] to its end). SQLite has one writer at a time: open the file in WAL
// mode, so that readers never wait for the writer nor it for them, and
// with a busy_timeout, so that a second writer waits for the first
// instead of failing at once, e.g.
// "file:app.db?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)".
// Units that read before they write can then still fail with
// SQLITE_BUSY (a snapshot older than another writer's commit, which no
// waiting repairs; [Transactor.IsConflict] reports it); "_txlock=immediate"
// in the DSN makes every transaction take the write lock when it begins,
// which avoids that at the price of serialising all units, readers
// included. db.SetMaxOpenConns(1) serialises everything in the pool
// instead: simplest for a small service, and then no unit waits in SQLite
// at all, only for the connection.
//
// # Transactions and savepoints
//
// [Options] set the isolation level and read-only mode of every
// transaction of a Transactor; make two Transactors (two buses) for units
// that need different ones. SQLite's transactions are always
// serializable; its read-only transactions run on a connection in
// query_only mode for their length.
//
// A Send from inside a handler joins the outer unit's transaction; the
// bus sets a SAVEPOINT for it and, if the inner handler fails, rolls back
// to it (ROLLBACK TO SAVEPOINT), so the inner writes are undone while the
// outer handler goes on; on success it releases it (RELEASE SAVEPOINT).
// Savepoint names are quoted identifiers (double quotes, backquotes on
// MySQL), so any name without a NUL byte is safe.
//
// Some errors mean that the database gave up the whole transaction
// because of concurrent ones: a serialization failure or deadlock. Only
// running the unit again in a fresh transaction repairs them (not mb's
// Retry middleware, whose tries are savepoints in the same transaction).
// [Transactor.IsConflict] tells them apart for each dialect.
//
// # Inbox
//
// [Inbox] implements [mb.Inbox] with a table: set it as
// [mb.ConsumerOptions.Inbox] of a Consumer whose bus has the same
// Transactor. For each handler of a received message, the Consumer calls
// Claim in the handler's unit of work, before the handler runs; Claim
// inserts the key (consumer group, handler name, message source, message
// id: [mb.InboxKey]) with its time of receipt, in the unit's transaction
// — INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite, INSERT
// IGNORE on MariaDB and MySQL — and reports whether a row was inserted.
// The key is recorded if and only if the handler's writes commit; a
// redelivered message whose handling committed finds its key and is
// acknowledged without a second effect.
//
// Two claims of one key at once (a redelivery while the first handling
// is still running) do not both win: the second insert waits for the
// first transaction's row lock and, when that transaction ends, inserts
// nothing if it committed, or the row if it rolled back. So the inbox
// never answers [mb.ErrInFlight]. On SQLite the second claim waits for
// the write lock instead (busy_timeout) or, with one connection in the
// pool, for the connection; if busy_timeout runs out first, Claim fails
// with SQLITE_BUSY, the handling fails and the Consumer retries the
// message after its backoff, when the first handling has ended.
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
// exist; it is idempotent and safe to run at every start. Applications
// with a migration tool of their own take the statements from
// [Inbox.Schema] (with the configured table name), or the plain files in
// the repository's internal/sqlstore/schema directory, one per dialect
// (postgres/inbox.sql, mysql/inbox.sql, sqlite/inbox.sql) with the
// default name mb_inbox. [InboxOptions.Table] names the table: an
// identifier, or "schema.table" on PostgreSQL and MySQL; anything else is
// refused by [NewInbox]. MariaDB and MySQL key the table by the SHA-256
// of the four key fields, because an index over the fields would exceed
// InnoDB's key size, and store the fields with a binary collation so
// that keys differing in case or trailing spaces stay apart.
//
// # Errors
//
// Constructors return every problem of their arguments at once, each
// wrapping [mb.ErrInvalidArgument]: a nil *sql.DB or Transactor, an
// unknown dialect, an isolation level the dialect does not have, a table
// name that is not an identifier. [Tx] and [Inbox.Claim] return the
// errors of [mb.TxFrom] (outside a unit of work: [mb.ErrNoUnitOfWork])
// and [ErrForeignTx] when the unit's transaction is not this package's.
// Everything else is the driver's error, unwrapped, for errors.As: the
// bus wraps it once.
//
// # What was verified where
//
// The conformance suites of package mbstoretest (commit, rollback on
// error, panic and hook, savepoints of nested units, savepoint names,
// lazy begin, concurrent units, read-only units, isolation levels; inbox
// claims, rollback, key fields, concurrent claims that wait, and a
// Consumer with a duplicated message) pass on PostgreSQL 15 through pgx's
// stdlib driver, MariaDB 10.11 through go-sql-driver/mysql and SQLite
// through modernc.org/sqlite (WAL, busy_timeout), with -race. The
// isolation subtests show READ COMMITTED, REPEATABLE READ and
// SERIALIZABLE on PostgreSQL, READ COMMITTED and REPEATABLE READ on
// MariaDB, SERIALIZABLE on SQLite. The concurrent-claim subtests check on
// PostgreSQL (pg_stat_activity) and MariaDB (innodb_trx) that the second
// claim waits on a lock; on SQLite they show the outcome, and a test
// without busy_timeout shows that the second claim contends for the
// first one's write lock (SQLITE_BUSY at once, a conflict) rather than
// answering.
// [Transactor.IsConflict] was checked against a real serialization
// failure (PostgreSQL), deadlock (MariaDB) and stale snapshot
// (SQLITE_BUSY_SNAPSHOT). MySQL itself was not tested.
package mbsql
