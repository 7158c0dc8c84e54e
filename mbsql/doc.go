// Package mbsql is mb's adapter for database/sql.
package mbsql
