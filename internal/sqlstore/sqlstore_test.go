package sqlstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/mb-go/mb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" ;; -- only a comment\n ; /* and another */", nil},
		{"SELECT 1", []string{"SELECT 1"}},
		{"SELECT 1;SELECT 2;", []string{"SELECT 1", "SELECT 2"}},
		{"-- lead\nCREATE TABLE t (a int); -- trail\n", []string{"CREATE TABLE t (a int)"}},
		{"SELECT ';', \"a;b\", `c;d` /* ; */ -- ;\n FROM t; x", []string{"SELECT ';', \"a;b\", `c;d` /* ; */ -- ;\n FROM t", "x"}},
		{"SELECT 'it''s;' ; y", []string{"SELECT 'it''s;'", "y"}},
		{"SELECT 'unterminated; still", []string{"SELECT 'unterminated; still"}},
		{"a /* open", []string{"a"}},
	} {
		if got := Split(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("Split(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestRename(t *testing.T) {
	names := map[string]string{"mb_inbox": `"s"."t"`, "mb_inbox_received_at": `"t_received_at"`}
	in := "CREATE INDEX mb_inbox_received_at ON mb_inbox (received_at); -- mb_inbox\n'mb_inbox' \"mb_inbox\" xmb_inbox mb_inbox2 mb_inbox"
	want := "CREATE INDEX \"t_received_at\" ON \"s\".\"t\" (received_at); -- mb_inbox\n'mb_inbox' \"mb_inbox\" xmb_inbox mb_inbox2 \"s\".\"t\""
	if got := Rename(in, names); got != want {
		t.Errorf("Rename:\n got %q\nwant %q", got, want)
	}
}

// FuzzLex checks the lexer's invariants on any input: it never panics,
// renaming nothing changes nothing, no statement Split returns is empty
// or splits again, and text without quotes, comments or ';' is one
// statement.
func FuzzLex(f *testing.F) {
	for _, s := range []string{"", "a;b", "'x;'", "\"q", "/* c */ d -- e\n;", "`a``b`;c", "mb_inbox mb_inbox_x", "\xff;\x00"} {
		f.Add(s)
	}
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		raw, err := schemaFS.ReadFile(d.dir() + "/inbox.sql")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(raw))
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got := Rename(s, nil); got != s {
			t.Fatalf("Rename(%q, nil) = %q", s, got)
		}
		if got := Rename(s, map[string]string{"a": "a"}); got != s {
			t.Fatalf("Rename(%q, a→a) = %q", s, got)
		}
		for _, st := range Split(s) {
			if st == "" {
				t.Fatalf("Split(%q) returned an empty statement", s)
			}
			if again := Split(st); len(again) != 1 || again[0] != st {
				t.Fatalf("statement %q of %q splits again into %q", st, s, again)
			}
		}
		if !strings.ContainsAny(s, "'\"`;-/") {
			got := Split(s)
			trimmed := strings.Trim(s, " \t\n\r\f\v")
			if trimmed == "" && len(got) != 0 || trimmed != "" && (len(got) != 1 || got[0] != trimmed) {
				t.Fatalf("Split(%q) = %q, want the trimmed text", s, got)
			}
		}
	})
}

func TestCheckTable(t *testing.T) {
	long := strings.Repeat("a", maxIdent-len(indexSuffix))
	for _, tc := range []struct {
		d    Dialect
		name string
		ok   bool
	}{
		{Postgres, "mb_inbox", true},
		{Postgres, "app.mb_inbox", true},
		{MySQL, "db1.Inbox_2", true},
		{SQLite, "_inbox", true},
		{SQLite, long, true},
		{SQLite, long + "a", false},
		{SQLite, "main.mb_inbox", false},
		{Postgres, "a.b.c", false},
		{Postgres, "", false},
		{Postgres, "1inbox", false},
		{Postgres, "in-box", false},
		{Postgres, `in"box`, false},
		{MySQL, "in`box", false},
		{Postgres, "inbox; DROP TABLE x", false},
		{Postgres, "app.", false},
		{Postgres, ".inbox", false},
		{Postgres, "ïnbox", false},
	} {
		err := CheckTable(tc.d, "InboxOptions.Table", tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("CheckTable(%v, %q) = %v, want ok=%v", tc.d, tc.name, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, mb.ErrInvalidArgument) || !strings.Contains(err.Error(), "InboxOptions.Table")) {
			t.Errorf("CheckTable(%v, %q) = %v; want an ErrInvalidArgument naming the field", tc.d, tc.name, err)
		}
	}
}

func TestQuoteSavepoint(t *testing.T) {
	for _, tc := range []struct {
		d          Dialect
		name, want string
	}{
		{Postgres, "mb_sp_1", `"mb_sp_1"`},
		{SQLite, `a"b`, `"a""b"`},
		{MySQL, "a`b", "`a``b`"},
		{MySQL, `a"b`, "`a\"b`"},
	} {
		got, err := QuoteSavepoint(tc.d, tc.name)
		if err != nil || got != tc.want {
			t.Errorf("QuoteSavepoint(%v, %q) = %q, %v; want %q", tc.d, tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "a\x00b", "\xff"} {
		if _, err := QuoteSavepoint(Postgres, bad); err == nil {
			t.Errorf("QuoteSavepoint(%q) succeeded", bad)
		}
	}
}

func TestKeyHash(t *testing.T) {
	keys := []mb.InboxKey{
		{Group: "g", Handler: "h", Source: "s", MessageID: "id"},
		{Group: "gh", Handler: "", Source: "s", MessageID: "id"},
		{Group: "g", Handler: "hs", Source: "", MessageID: "id"},
		{Group: "g", Handler: "h", Source: "sid", MessageID: ""},
		{Group: "g", Handler: "h", Source: "S", MessageID: "id"},
	}
	seen := map[string]mb.InboxKey{}
	for _, k := range keys {
		h := KeyHash(k)
		if len(h) != 32 || !bytes.Equal(h, KeyHash(k)) {
			t.Fatalf("KeyHash(%+v) = %x", k, h)
		}
		if o, ok := seen[string(h)]; ok {
			t.Errorf("keys %+v and %+v share a hash", k, o)
		}
		seen[string(h)] = k
	}
}

func TestNewInbox(t *testing.T) {
	for _, d := range []Dialect{Postgres, MySQL, SQLite} {
		in, err := NewInbox(d, "app_inbox")
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(in.Schema, "\n") + in.Claim + in.Cleanup
		if strings.Contains(all, DefaultInboxTable) || !strings.Contains(all, "app_inbox_received_at") {
			t.Errorf("%v: the configured names are not applied:\n%s", d, all)
		}
		wantStatements := 2
		if d == MySQL {
			wantStatements = 1 // the index is part of CREATE TABLE
		}
		if len(in.Schema) != wantStatements {
			t.Errorf("%v: %d schema statements, want %d: %q", d, len(in.Schema), wantStatements, in.Schema)
		}
	}
	if _, err := NewInbox(Dialect(9), "t"); !errors.Is(err, mb.ErrInvalidArgument) {
		t.Errorf("NewInbox of an unknown dialect: %v", err)
	}
}

type nopTx struct{}

func (nopTx) Commit(context.Context) error   { return nil }
func (nopTx) Rollback(context.Context) error { return nil }

type ownTx struct{ nopTx }

type wrappedTx struct{ mb.Tx }

func (w wrappedTx) Unwrap() mb.Tx { return w.Tx }

type txFunc func(ctx context.Context) (mb.Tx, error)

func (f txFunc) Begin(ctx context.Context) (mb.Tx, error) { return f(ctx) }

var errForeign = errors.New("foreign")

// UnitTx finds the adapter's transaction, also through decorators, and
// names what it found otherwise.
func TestUnitTx(t *testing.T) {
	own := &ownTx{}
	for _, tc := range []struct {
		begun mb.Tx
		ok    bool
	}{
		{own, true},
		{wrappedTx{wrappedTx{own}}, true},
		{wrappedTx{nopTx{}}, false},
		{nopTx{}, false},
	} {
		bus := mb.New(&mb.Options{Transactor: txFunc(func(context.Context) (mb.Tx, error) { return tc.begun, nil })})
		mb.HandleCommandNoResult(bus, func(ctx context.Context, c struct{}) error {
			got, err := UnitTx[*ownTx](ctx, errForeign, "x.New")
			switch {
			case tc.ok && (err != nil || got != own):
				t.Errorf("UnitTx in a unit with %T = %v, %v", tc.begun, got, err)
			case !tc.ok && (!errors.Is(err, errForeign) || !strings.Contains(err.Error(), "x.New")):
				t.Errorf("UnitTx in a unit with %T = %v; want the foreign error naming x.New", tc.begun, err)
			}
			return nil
		})
		if err := mb.Exec(context.Background(), bus, struct{}{}); err != nil {
			t.Error(err)
		}
	}
	if _, err := UnitTx[*ownTx](context.Background(), errForeign, "x.New"); !errors.Is(err, mb.ErrNoUnitOfWork) {
		t.Errorf("UnitTx outside a unit = %v", err)
	}
}

// FuzzCheckTable: a table name CheckTable accepts yields schema
// statements that are exactly the file's, however the name is spelled:
// nothing in a name can end a statement or open a quote or comment.
func FuzzCheckTable(f *testing.F) {
	for _, s := range []string{"mb_inbox", "a.b", "x;DROP TABLE y", `a"b`, "a`b", "a--b", "a/*b", "a.b.c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, d := range []Dialect{Postgres, MySQL, SQLite} {
			if CheckTable(d, "Table", name) != nil {
				continue
			}
			in, err := NewInbox(d, name)
			if err != nil {
				t.Fatalf("NewInbox(%v, %q): %v", d, name, err)
			}
			def, _ := NewInbox(d, DefaultInboxTable)
			if len(in.Schema) != len(def.Schema) {
				t.Fatalf("%v: the name %q makes %d statements, the default %d", d, name, len(in.Schema), len(def.Schema))
			}
			for _, s := range append(in.Schema, in.Claim, in.Cleanup) {
				if strings.ContainsAny(s, ";") || strings.Contains(s, "--") || strings.Contains(s, "/*") {
					t.Fatalf("%v: the name %q makes the statement %q", d, name, s)
				}
			}
		}
	})
}
