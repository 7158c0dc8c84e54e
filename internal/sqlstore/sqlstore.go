// Package sqlstore is what mb's SQL adapters (the mbsql and mbpgx modules)
// share: the schema files of each dialect, the statements of the inbox,
// the rules for table and savepoint names, and the SQL lexer that applies
// configured names to the schema files. It depends on the standard
// library and package mb only.
package sqlstore

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"time"

	"github.com/mb-go/mb"
)

// Dialect is a SQL dialect.
type Dialect uint8

// The dialects.
const (
	Postgres Dialect = iota + 1
	MySQL
	SQLite
)

func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "PostgreSQL"
	case MySQL:
		return "MySQL"
	case SQLite:
		return "SQLite"
	}
	return fmt.Sprintf("Dialect(%d)", uint8(d))
}

// dir is the directory of d's schema files.
func (d Dialect) dir() string {
	switch d {
	case Postgres:
		return "schema/postgres"
	case MySQL:
		return "schema/mysql"
	case SQLite:
		return "schema/sqlite"
	}
	return ""
}

//go:embed schema
var schemaFS embed.FS

// DefaultInboxTable is the default name of the inbox table.
const DefaultInboxTable = "mb_inbox"

// maxIdent is the longest identifier every dialect accepts (PostgreSQL's
// 63 bytes; MySQL allows 64).
const maxIdent = 63

// indexSuffix makes the name of the inbox's index from the table's.
const indexSuffix = "_received_at"

// CheckTable returns nil when name is a table name the dialect d accepts
// for the inbox, or an error wrapping [mb.ErrInvalidArgument] that names
// field and the fix. A table name is an identifier (an ASCII letter or
// '_', then letters, digits and '_'), qualified by a schema (PostgreSQL)
// or database (MySQL) name as "schema.table" where the dialect has them;
// SQLite takes a plain name. The name of the table's index, the table's
// followed by "_received_at", must fit in 63 bytes too.
func CheckTable(d Dialect, field, name string) error {
	parts := strings.Split(name, ".")
	bad := func(why string) error {
		return fmt.Errorf("%w: %s is %q: %s", mb.ErrInvalidArgument, field, name, why)
	}
	switch {
	case name == "":
		return bad("use a table name such as " + DefaultInboxTable + ", or leave it empty for the default")
	case len(parts) > 2 || len(parts) == 2 && d == SQLite:
		if d == SQLite {
			return bad("SQLite takes a plain table name (letters, digits and '_'), with no schema")
		}
		return bad("use table or schema.table")
	}
	for _, p := range parts {
		if !isIdent(p) {
			return bad("each part must be an identifier: an ASCII letter or '_', then letters, digits and '_'")
		}
	}
	if t := parts[len(parts)-1]; len(t)+len(indexSuffix) > maxIdent {
		return bad(fmt.Sprintf("the table part may have at most %d bytes (its index is named after it)", maxIdent-len(indexSuffix)))
	}
	return nil
}

func isIdent(s string) bool {
	if s == "" || len(s) > maxIdent || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '_' && !(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// quoteIdent quotes an identifier of d: with backquotes for MySQL and
// double quotes otherwise, the quote doubled inside.
func quoteIdent(d Dialect, s string) string {
	q := `"`
	if d == MySQL {
		q = "`"
	}
	return q + strings.ReplaceAll(s, q, q+q) + q
}

// quoteTable quotes a table name that [CheckTable] accepted.
func quoteTable(d Dialect, name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(d, p)
	}
	return strings.Join(parts, ".")
}

// QuoteSavepoint returns the savepoint name as a quoted identifier of d,
// or an error for a name no identifier can hold: an empty one, or one with
// a NUL byte or invalid UTF-8.
func QuoteSavepoint(d Dialect, name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("empty savepoint name")
	case strings.IndexByte(name, 0) >= 0:
		return "", fmt.Errorf("savepoint name %q holds a NUL byte", name)
	case !isUTF8(name):
		return "", fmt.Errorf("savepoint name %q is not valid UTF-8", name)
	}
	return quoteIdent(d, name), nil
}

func isUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

// Inbox holds the statements of one inbox table in one dialect. Arguments
// are numbered $1... for PostgreSQL and are ? otherwise.
type Inbox struct {
	// Claim inserts a key, reporting one affected row when it is new.
	// Its arguments are those of [Inbox.ClaimArgs].
	Claim string
	// Cleanup deletes up to [CleanupBatch] rows received before its one
	// argument ([Inbox.Time]).
	Cleanup string
	// Schema creates the table and its index.
	Schema []string

	d Dialect
}

// PostgresMigrateLock serialises migrations on PostgreSQL, where
// concurrent CREATE TABLE IF NOT EXISTS statements of one table can fail:
// run it first in the migration's transaction. The key is arbitrary and
// fixed, shared by every mb adapter.
const PostgresMigrateLock = "SELECT pg_advisory_xact_lock(7161574185486439)"

// CleanupBatch is how many rows one Cleanup statement deletes at most, so
// that each statement holds its locks briefly.
const CleanupBatch = 1000

// NewInbox returns the statements of the inbox table named table, which
// [CheckTable] accepted, in dialect d.
func NewInbox(d Dialect, table string) (*Inbox, error) {
	raw, err := fs.ReadFile(schemaFS, path.Join(d.dir(), "inbox.sql"))
	if err != nil {
		return nil, fmt.Errorf("%w: unknown dialect %v", mb.ErrInvalidArgument, d)
	}
	parts := strings.Split(table, ".")
	names := map[string]string{
		DefaultInboxTable:               quoteTable(d, table),
		DefaultInboxTable + indexSuffix: quoteIdent(d, parts[len(parts)-1]+indexSuffix),
	}
	q := names[DefaultInboxTable]
	in := &Inbox{Schema: Split(Rename(string(raw), names)), d: d}
	cols := "consumer_group, handler, source, message_id"
	switch d {
	case Postgres:
		in.Claim = "INSERT INTO " + q + " (" + cols + ", received_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (" + cols + ") DO NOTHING"
		in.Cleanup = fmt.Sprintf("DELETE FROM %s WHERE ctid = ANY (ARRAY (SELECT ctid FROM %[1]s WHERE received_at < $1 LIMIT %d))", q, CleanupBatch)
	case MySQL:
		// IGNORE turns only the duplicate key into a warning here: the
		// other columns cannot fail (TEXT holds any key of mb).
		in.Claim = "INSERT IGNORE INTO " + q + " (key_hash, " + cols + ", received_at) VALUES (?, ?, ?, ?, ?, ?)"
		in.Cleanup = fmt.Sprintf("DELETE FROM %s WHERE received_at < ? LIMIT %d", q, CleanupBatch)
	case SQLite:
		in.Claim = "INSERT INTO " + q + " (" + cols + ", received_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (" + cols + ") DO NOTHING"
		in.Cleanup = fmt.Sprintf("DELETE FROM %s WHERE rowid IN (SELECT rowid FROM %[1]s WHERE received_at < ? LIMIT %d)", q, CleanupBatch)
	}
	return in, nil
}

// ClaimArgs returns the arguments of Claim for key, received at now.
func (in *Inbox) ClaimArgs(key mb.InboxKey, now time.Time) []any {
	args := []any{key.Group, key.Handler, key.Source, key.MessageID, in.Time(now)}
	if in.d == MySQL {
		args = append([]any{KeyHash(key)}, args...)
	}
	return args
}

// Time returns t as the received_at column of the dialect takes it: in
// UTC, or as microseconds since 1970 for SQLite.
func (in *Inbox) Time(t time.Time) any {
	if in.d == SQLite {
		return t.UnixMicro()
	}
	return t.UTC()
}

// KeyHash returns the SHA-256 of key's four fields, each preceded by its
// length, so that no two keys share a hash input.
func KeyHash(key mb.InboxKey) []byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, f := range []string{key.Group, key.Handler, key.Source, key.MessageID} {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(f)))])
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// IsPostgresConflict reports whether err carries the SQLSTATE of a
// serialization failure (40001) or a deadlock (40P01): PostgreSQL has then
// aborted the whole transaction, and only a fresh one can succeed. The
// SQLSTATE is read from the SQLState method of pgx's *pgconn.PgError (and
// of lib/pq's *pq.Error) anywhere in err's chain.
func IsPostgresConflict(err error) bool {
	var s interface{ SQLState() string }
	if !errors.As(err, &s) {
		return false
	}
	switch s.SQLState() {
	case "40001", "40P01":
		return true
	}
	return false
}

// UnitTx returns the transaction of the unit of work ctx belongs to as a
// T, the transaction type of an adapter, looking through transactions of
// decorating Transactors that have an Unwrap() mb.Tx method. It returns
// the error of [mb.TxFrom], or one wrapping foreign that names the type
// found and tells to use newFn (e.g. "mbsql.New").
func UnitTx[T mb.Tx](ctx context.Context, foreign error, newFn string) (T, error) {
	var zero T
	mt, err := mb.TxFrom(ctx)
	if err != nil {
		return zero, err
	}
	for m := mt; m != nil; {
		if x, ok := m.(T); ok {
			return x, nil
		}
		u, ok := m.(interface{ Unwrap() mb.Tx })
		if !ok {
			break
		}
		m = u.Unwrap()
	}
	return zero, fmt.Errorf("%w: it is a %T; set mb.Options.Transactor to the Transactor of %s", foreign, mt, newFn)
}

// OpenInbox returns the statements of the inbox table named table (the
// default when empty) in dialect d, for the NewInbox of package pkg
// ("mbsql", "mbpgx"). It returns the problems of NewInbox's arguments
// joined, each wrapping [mb.ErrInvalidArgument]: no Transactor
// (hasTransactor false) and a table name d does not take.
func OpenInbox(d Dialect, pkg string, hasTransactor bool, table string) (*Inbox, error) {
	if table == "" {
		table = DefaultInboxTable
	}
	var errs []error
	if !hasTransactor {
		errs = append(errs, fmt.Errorf("%w: %s.NewInbox: the Transactor is nil; create one with %[2]s.New", mb.ErrInvalidArgument, pkg))
	}
	errs = append(errs, CheckTable(d, pkg+": InboxOptions.Table", table))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewInbox(d, table)
}

// RunCleanup deletes the rows received before the given time in batches of
// [CleanupBatch], each with one call of exec (which runs in.Cleanup with
// its arguments and returns the rows it affected), until a batch is not
// full or exec fails. It returns how many rows were deleted.
func (in *Inbox) RunCleanup(ctx context.Context, before time.Time, exec func(ctx context.Context, sql string, arg any) (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := exec(ctx, in.Cleanup, in.Time(before))
		total += n
		if err != nil || n < CleanupBatch {
			return total, err
		}
	}
}
