package mbsql

import (
	"testing"

	"github.com/mb-go/mb/mbstoretest"
)

func runConformance(t *testing.T, d Dialect) {
	t.Parallel()
	e := newEnv(t, d)
	h := e.harness()
	t.Run("Transactor", func(t *testing.T) { mbstoretest.RunTransactor(t, h) })
	t.Run("Inbox", func(t *testing.T) { mbstoretest.RunInbox(t, h) })
}

func TestPostgresConformance(t *testing.T) { runConformance(t, Postgres) }

func TestMySQLConformance(t *testing.T) { runConformance(t, MySQL) }

func TestSQLiteConformance(t *testing.T) { runConformance(t, SQLite) }
