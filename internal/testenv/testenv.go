// Package testenv is how mb's tests, in every module of the repository,
// find the services they run against: one environment variable per
// service with a local default, and one rule for a service that cannot be
// reached — skip, or fail when MB_REQUIRE_SERVICES=1 (CI). Package
// redistest, a module of its own below this one (so that the root module
// keeps to the standard library), builds on it the Redis clients of the
// tests.
package testenv

import (
	"os"
	"testing"
)

// RequireServices is the variable that turns a skipped service test into a
// failure when set to "1".
const RequireServices = "MB_REQUIRE_SERVICES"

// The services' variables and their defaults.
const (
	RedisURLVar     = "MB_TEST_REDIS_URL"
	DefaultRedisURL = "redis://127.0.0.1:6379/0"

	PostgresURLVar     = "MB_TEST_POSTGRES_URL"
	DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

	// MySQLURLVar holds a DSN of github.com/go-sql-driver/mysql (MariaDB
	// or MySQL), not a URL.
	MySQLURLVar     = "MB_TEST_MYSQL_URL"
	DefaultMySQLURL = "root@tcp(127.0.0.1:3306)/test?parseTime=true"
)

// URL returns the value of the environment variable name, or def when it is
// unset or empty.
func URL(name, def string) string {
	if u := os.Getenv(name); u != "" {
		return u
	}
	return def
}

// RedisURL returns the Redis the tests use.
func RedisURL() string { return URL(RedisURLVar, DefaultRedisURL) }

// PostgresURL returns the PostgreSQL the tests use.
func PostgresURL() string { return URL(PostgresURLVar, DefaultPostgresURL) }

// MySQLURL returns the DSN of the MariaDB (or MySQL) the tests use.
func MySQLURL() string { return URL(MySQLURLVar, DefaultMySQLURL) }

// Unavailable reports that a service the test needs cannot be reached: it
// skips the test, or fails it when MB_REQUIRE_SERVICES=1. The message should
// name the variable that points at the service.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv(RequireServices) == "1" {
		t.Fatalf(format, args...)
		return
	}
	t.Skipf(format, args...)
}
