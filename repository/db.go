// Package repository owns confab's storage: the Bun models and every SQL
// query, over Postgres (pgdialect on pgx) or the embedded SQLite store.
package repository

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver
)

// Store is confab's storage. It is safe for concurrent use.
type Store struct {
	db  *bun.DB
	url string
	// now is the clock; tests may replace it.
	now func() time.Time
	// prepare runs the hot statements as cached prepared statements (see
	// pgArgs).
	prepare bool
	// presenceMaxMembers: see Options.PresenceMaxMembers.
	presenceMaxMembers int
	// onCommit: see OnCommit.
	onCommit func([]LogEvent)
}

// Options configures Open.
type Options struct {
	// URL selects Postgres when it starts with postgres:// or postgresql://.
	// Empty means the embedded SQLite store at SQLitePath.
	URL        string
	SQLitePath string
	// MaxOpenConns bounds the Postgres pool (0: a default).
	MaxOpenConns int
	// PresenceMaxMembers bounds the conversations presence is shared
	// through (0: DefaultPresenceMaxMembers). Every member of a group
	// learns when any other comes or goes, so a group's presence costs
	// the square of its size: ten thousand members reconnecting after a
	// deploy would be a hundred million frames. Members of bigger groups
	// still see each other online through any smaller conversation they
	// share.
	PresenceMaxMembers int
}

// DefaultPresenceMaxMembers is the largest conversation presence is shared
// through by default: a team's channel, not a broadcast audience.
const DefaultPresenceMaxMembers = 250

// Open connects to the store Options describe. It does not migrate.
func Open(ctx context.Context, opts Options) (*Store, error) {
	var db *bun.DB
	switch {
	case opts.URL == "":
		sqldb, err := openSQLite(opts.SQLitePath)
		if err != nil {
			return nil, err
		}
		db = bun.NewDB(sqldb, sqlitedialect.New())
	case strings.HasPrefix(opts.URL, "postgres://"), strings.HasPrefix(opts.URL, "postgresql://"):
		cfg, err := pgConfig(opts.URL, "confab")
		if err != nil {
			return nil, err
		}
		sqldb := sql.OpenDB(stdlib.GetConnector(*cfg))
		n := opts.MaxOpenConns
		if n <= 0 {
			n = 20
		}
		sqldb.SetMaxOpenConns(n)
		sqldb.SetMaxIdleConns(n)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		db = bun.NewDB(sqldb, pgdialect.New())
	default:
		return nil, fmt.Errorf("repository: unsupported database URL scheme (want postgres:// or empty for SQLite)")
	}
	// Postgres keeps microseconds; truncating here makes a time read back
	// equal to the one written, on both stores.
	s := &Store{db: db, url: opts.URL, now: func() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }}
	s.prepare = s.IsPostgres() && !strings.Contains(opts.URL, "default_query_exec_mode")
	s.presenceMaxMembers = cmp.Or(opts.PresenceMaxMembers, DefaultPresenceMaxMembers)
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("repository: connect: %w", err)
	}
	return s, nil
}

func openSQLite(path string) (*sql.DB, error) {
	if path == "" {
		path = "confab.db"
	}
	// WAL lets readers run beside the writer; _txlock=immediate takes the
	// write lock at BEGIN so two writers queue on busy_timeout instead of
	// failing with SQLITE_BUSY when a read upgrades to a write.
	q := url.Values{}
	q.Add("_pragma", "busy_timeout(10000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Set("_txlock", "immediate")
	q.Set("_time_format", "sqlite")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("repository: open sqlite: %w", err)
	}
	// SQLite has one writer at a time; a small pool keeps readers concurrent
	// without piling up writers that only wait on the lock.
	sqldb.SetMaxOpenConns(4)
	sqldb.SetMaxIdleConns(4)
	return sqldb, nil
}

// Dialect names the store's SQL dialect: "postgres" or "sqlite".
func (s *Store) Dialect() string {
	if s.db.Dialect().Name() == dialect.PG {
		return "postgres"
	}
	return "sqlite"
}

// URL is the Postgres URL the store was opened with ("" on SQLite).
func (s *Store) URL() string { return s.url }

// IsPostgres reports whether the store is Postgres.
func (s *Store) IsPostgres() bool { return s.db.Dialect().Name() == dialect.PG }

// DB exposes the Bun handle for code that needs raw access (migrations).
func (s *Store) DB() *bun.DB { return s.db }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// Close closes the pool.
func (s *Store) Close() error { return s.db.Close() }

// Stats returns the pool statistics.
func (s *Store) Stats() sql.DBStats { return s.db.DB.Stats() }

// SetClock replaces the store's clock (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

func (s *Store) tx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	return s.db.RunInTx(ctx, nil, fn)
}

// Sentinel errors; api maps them to problem responses.
var (
	ErrNotFound           = errors.New("not found")
	ErrUsernameTaken      = errors.New("username taken")
	ErrInvalidCredentials = errors.New("invalid credentials")
	ErrInvalidToken       = errors.New("invalid refresh token")
	ErrNotGroup           = errors.New("not a group conversation")
	ErrGroupFull          = errors.New("group full")
	ErrClientMsgConflict  = errors.New("client_msg_id reused for a different message")
	ErrInvalid            = errors.New("invalid")
	// ErrUnknownUser: a valid access token names a user that no longer
	// exists.
	ErrUnknownUser   = errors.New("unknown user")
	ErrInvalidCursor = errors.New("invalid cursor")
)

// InvalidError is a validation failure the client can fix.
type InvalidError struct{ Field, Reason string }

func (e *InvalidError) Error() string { return e.Field + ": " + e.Reason }

// Unwrap lets errors.Is(err, ErrInvalid) match.
func (e *InvalidError) Unwrap() error { return ErrInvalid }
