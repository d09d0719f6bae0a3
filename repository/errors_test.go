package repository

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
)

// TestSQLiteErrorCodes: SQLite failures are recognised by the driver's
// result codes: a unique or primary-key clash is a unique violation (other
// constraints are not), and a held write lock is a retryable "unavailable".
func TestSQLiteErrorCodes(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "codes.db")
	db, err := openSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER NOT NULL CHECK (n > 0))`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO t VALUES (1, 'a', 1)`); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		stmt   string
		unique bool
	}{
		{`INSERT INTO t VALUES (2, 'a', 1)`, true},  // UNIQUE
		{`INSERT INTO t VALUES (1, 'b', 1)`, true},  // PRIMARY KEY
		{`INSERT INTO t VALUES (3, 'c', 0)`, false}, // CHECK
		{`INSERT INTO t VALUES (4, 'd', NULL)`, false},
	} {
		_, err := db.ExecContext(ctx, tc.stmt)
		if err == nil {
			t.Fatalf("%s succeeded", tc.stmt)
		}
		if got := isUniqueViolation(err); got != tc.unique {
			t.Errorf("%s: isUniqueViolation(%v) = %v", tc.stmt, err, got)
		}
		if IsUnavailable(err) {
			t.Errorf("%s: %v reported as unavailable", tc.stmt, err)
		}
	}
	if isUniqueViolation(errors.New("UNIQUE constraint failed: t.name")) {
		t.Error("a bare message was taken for a driver error")
	}

	// One connection holds the write lock; another that will not wait
	// gets SQLITE_BUSY.
	holder, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if _, err := holder.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	defer holder.ExecContext(ctx, `ROLLBACK`)
	impatient, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(0)")
	if err != nil {
		t.Fatal(err)
	}
	defer impatient.Close()
	_, err = impatient.ExecContext(ctx, `INSERT INTO t VALUES (5, 'e', 1)`)
	if !isSQLiteBusy(err) || !IsUnavailable(err) || isUniqueViolation(err) {
		t.Fatalf("a locked database: %v (busy %v, unavailable %v)", err, isSQLiteBusy(err), IsUnavailable(err))
	}
}
