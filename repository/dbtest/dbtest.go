// Package dbtest gives each test a fresh database: a SQLite file in the
// test's temporary directory, or a new schema in the Postgres that
// CONFAB_TEST_DATABASE_URL names, dropped when the test ends. Tests on both
// stores can run in parallel.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// DefaultURL is the Postgres the tests use when CONFAB_TEST_DATABASE_URL is unset.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Dialects are the stores every repository and API test runs on.
var Dialects = []string{"sqlite", "postgres"}

// PostgresURL returns the test server's URL.
func PostgresURL() string {
	if u := os.Getenv("CONFAB_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultURL
}

var (
	pgOnce sync.Once
	pgErr  error
)

// RequirePostgres skips the test when Postgres is unreachable, loudly, or
// fails it under CI=true, where an unreachable Postgres is a broken run.
func RequirePostgres(tb testing.TB) {
	tb.Helper()
	pgOnce.Do(func() {
		db, err := sql.Open("pgx", PostgresURL())
		if err != nil {
			pgErr = err
			return
		}
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		pgErr = db.PingContext(ctx)
	})
	if pgErr == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("Postgres at CONFAB_TEST_DATABASE_URL is unreachable under CI=true: %v", pgErr)
	}
	tb.Skipf("\n\n*** SKIPPING POSTGRES TEST: %v\n*** set CONFAB_TEST_DATABASE_URL or start Postgres on 127.0.0.1:5432 ***\n", pgErr)
}

// Schema creates a fresh Postgres schema, drops it at cleanup, and returns
// its name and a URL whose connections use it.
func Schema(tb testing.TB) (name, dsn string) {
	tb.Helper()
	RequirePostgres(tb)
	b := make([]byte, 6)
	rand.Read(b)
	name = "t_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", PostgresURL())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.Exec("CREATE SCHEMA " + name); err != nil {
		admin.Close()
		tb.Fatalf("create schema: %v", err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP SCHEMA " + name + " CASCADE"); err != nil {
			tb.Logf("drop schema %s: %v", name, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		tb.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return name, u.String()
}

// Database creates a fresh, empty database on the test server, drops it
// (with whoever is still connected) at cleanup, and returns its URL. Tests
// of what happens across the databases of one cluster use it.
func Database(tb testing.TB) (dsn string) {
	tb.Helper()
	RequirePostgres(tb)
	b := make([]byte, 6)
	rand.Read(b)
	name := "confab_t_" + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", PostgresURL())
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := admin.Exec("CREATE DATABASE " + name); err != nil {
		admin.Close()
		tb.Fatalf("create database: %v", err)
	}
	tb.Cleanup(func() {
		defer admin.Close()
		if _, err := admin.Exec("DROP DATABASE " + name + " WITH (FORCE)"); err != nil {
			tb.Logf("drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(PostgresURL())
	if err != nil {
		tb.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

// Options says where a fresh store of dialect lives: a Postgres URL with its
// own schema, or a SQLite file in a temporary directory.
func Options(tb testing.TB, dialect string) repository.Options {
	tb.Helper()
	switch dialect {
	case "sqlite":
		return repository.Options{SQLitePath: filepath.Join(tb.TempDir(), "confab.db")}
	case "postgres":
		_, dsn := Schema(tb)
		return repository.Options{URL: dsn, MaxOpenConns: 20}
	}
	tb.Fatalf("unknown dialect %q", dialect)
	return repository.Options{}
}

// Open returns a migrated, empty store of dialect, closed at cleanup.
func Open(tb testing.TB, dialect string) *repository.Store {
	tb.Helper()
	return OpenWith(tb, Options(tb, dialect))
}

// OpenWith opens and migrates the store opts names, closed at cleanup.
func OpenWith(tb testing.TB, opts repository.Options) *repository.Store {
	tb.Helper()
	ctx := context.Background()
	s, err := repository.Open(ctx, opts)
	if err != nil {
		tb.Fatalf("open store: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	return s
}

// snapshotTables are the tables whose rows are client data, each with the
// order that makes a dump deterministic.
var snapshotTables = []struct{ name, order string }{
	{"users", "id"},
	{"refresh_tokens", "id"},
	{"conversations", "id"},
	{"members", "conversation_id, user_id"},
	{"messages", "id"},
	{"log", "xid, id"},
	{"memberships", "user_id, conversation_id, join_xid, join_id"},
}

// Snapshot dumps every row of the client-data tables as text. Two equal
// snapshots mean nothing was stored, changed or lost in between: tests of
// bad input and of authorization compare one taken before with one after.
func Snapshot(tb testing.TB, s *repository.Store) string {
	tb.Helper()
	var b strings.Builder
	for _, t := range snapshotTables {
		var rows []map[string]any
		if err := s.DB().NewRaw("SELECT * FROM "+t.name+" ORDER BY "+t.order).Scan(context.Background(), &rows); err != nil {
			tb.Fatalf("snapshot %s: %v", t.name, err)
		}
		fmt.Fprintf(&b, "%s: %d rows\n", t.name, len(rows))
		for _, r := range rows {
			fmt.Fprintf(&b, "  %v\n", r)
		}
	}
	return b.String()
}
