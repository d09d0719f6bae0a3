package repository

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun/dialect/pgdialect"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// pgConfig parses a Postgres URL and names the connection for
// pg_stat_activity unless the URL already does.
//
// Bun writes every argument into the SQL text itself, so each statement
// reaches pgx without parameters and with text no other statement shares.
// In pgx's default mode a query would be prepared first (a round trip of
// its own) and cached though it never repeats; the simple protocol runs it
// in one round trip. A URL that sets default_query_exec_mode keeps its
// choice.
func pgConfig(url, appName string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("repository: parse database URL: %w", err)
	}
	if _, ok := cfg.RuntimeParams["application_name"]; !ok {
		cfg.RuntimeParams["application_name"] = appName
	}
	if !strings.Contains(url, "default_query_exec_mode") {
		cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	return cfg, nil
}

// pgArgs prepares the arguments of a hot statement: one written with $n
// parameters (not through Bun, which writes its arguments into the text)
// and run through database/sql, on Postgres only. pgx then keeps it as a
// prepared statement per connection, so Postgres plans it once instead of
// on every call: planning was 0.45 ms of a 1.1 ms send. A URL that sets
// default_query_exec_mode, as a transaction pooler without prepared
// statements needs, keeps that mode for these statements too.
func (s *Store) pgArgs(args ...any) []any {
	if !s.prepare {
		return args
	}
	return append([]any{pgx.QueryExecModeCacheStatement}, args...)
}

// isUniqueViolation reports a unique constraint failure on either store.
func isUniqueViolation(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code == "23505" // unique_violation
	}
	if sqliteErr, ok := errors.AsType[*sqlite.Error](err); ok {
		// The driver reports extended result codes.
		code := sqliteErr.Code()
		return code == sqlite3.SQLITE_CONSTRAINT_UNIQUE || code == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	return false
}

// isForeignKeyViolation reports a foreign key failure on either store: a
// row that names a user (or anything else) that does not exist.
func isForeignKeyViolation(err error) bool {
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pgErr.Code == "23503" // foreign_key_violation
	}
	sqliteErr, ok := errors.AsType[*sqlite.Error](err)
	return ok && sqliteErr.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// isSQLiteBusy reports SQLite's "database is locked": the write lock was
// not free within busy_timeout (any SQLITE_BUSY extended code).
func isSQLiteBusy(err error) bool {
	sqliteErr, ok := errors.AsType[*sqlite.Error](err)
	return ok && sqliteErr.Code()&0xff == sqlite3.SQLITE_BUSY
}

// IsUnavailable reports an error that means the database could not be
// reached or is restarting, rather than a bug: the request may be retried.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// 08: connection exception; 57P: operator intervention (shutdown,
		// restart, cannot connect now); 53300: too many connections.
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57P") || pgErr.Code == "53300"
	}
	var connErr *pgconn.ConnectError
	if errors.As(err, &connErr) {
		return true
	}
	var netErr net.Error
	if errors.As(err, &netErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) || pgconn.SafeToRetry(err) || isClosedConn(err) || isSQLiteBusy(err)
}

func isClosedConn(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "conn closed") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "broken pipe")
}

// Notify sends payloads on a Postgres channel in one statement. It is a
// no-op on SQLite, whose single node needs no bus.
func (s *Store) Notify(ctx context.Context, channel string, payloads []string) error {
	if !s.IsPostgres() || len(payloads) == 0 {
		return nil
	}
	_, err := s.db.NewRaw("SELECT pg_notify(?, p) FROM unnest(?::text[]) AS p", channel, pgdialect.Array(payloads)).Exec(ctx)
	return err
}
