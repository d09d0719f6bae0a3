package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// TestMigrateCommand: `confab migrate up|status|down` on a fresh SQLite
// file, and `serve -no-migrate` refuses the schema once it is rolled back.
func TestMigrateCommand(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "m.db")
	for _, action := range []string{"up", "status", "up", "down", "status"} {
		if err := run(ctx, []string{"migrate", action, "-sqlite-path", db}); err != nil {
			t.Fatalf("migrate %s: %v", action, err)
		}
	}
	if err := run(ctx, []string{"migrate", "sideways", "-sqlite-path", db}); err == nil {
		t.Fatal("an unknown action was accepted")
	}
	err := run(ctx, []string{"serve", "-no-migrate", "-addr", "127.0.0.1:0", "-sqlite-path", db, "-log-level", "error"})
	if err == nil || !strings.Contains(err.Error(), "schema is behind") {
		t.Fatalf("serve on a schema that is behind: %v", err)
	}
}
