package repository_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/confab-chat/confab/repository/dbtest"
)

// TestMigrations runs the schema up, down and up again on each store, and
// checks that CheckSchema (what serve consults before serving) accepts
// exactly the schema this binary knows.
func TestMigrations(t *testing.T) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			store, err := repository.Open(ctx, dbtest.Options(t, d))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()

			if err := store.CheckSchema(ctx); err == nil {
				t.Fatal("CheckSchema accepts an empty database")
			}
			applied, err := store.Migrate(ctx)
			if err != nil || len(applied) == 0 {
				t.Fatalf("migrate: %v %v", applied, err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatalf("CheckSchema after migrating: %v", err)
			}
			if again, err := store.Migrate(ctx); err != nil || len(again) != 0 {
				t.Fatalf("migrating twice applied %v (%v)", again, err)
			}
			statuses, err := store.MigrationStatuses(ctx)
			if err != nil || len(statuses) != len(applied) {
				t.Fatalf("statuses %+v (%v)", statuses, err)
			}
			for _, s := range statuses {
				if !s.Applied {
					t.Fatalf("%s_%s not applied", s.Name, s.Comment)
				}
			}
			if _, err := store.CreateUser(ctx, "alice", "Alice", "x"); err != nil {
				t.Fatal(err)
			}

			// Down: the schema is gone and CheckSchema says so.
			rolled, err := store.Rollback(ctx)
			if err != nil || len(rolled) != len(applied) {
				t.Fatalf("rollback: %v (%v)", rolled, err)
			}
			if err := store.CheckSchema(ctx); err == nil || !strings.Contains(err.Error(), "behind") {
				t.Fatalf("CheckSchema after rollback: %v", err)
			}
			if _, err := store.UserByUsername(ctx, "alice"); err == nil {
				t.Fatal("the users table survived the rollback")
			}

			// Up again from nothing.
			if _, err := store.Migrate(ctx); err != nil {
				t.Fatal(err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := store.CreateUser(ctx, "alice", "Alice", "x"); err != nil {
				t.Fatalf("the schema after down and up: %v", err)
			}

			// A migration this binary does not know (a newer confab ran
			// here): refuse to serve on it.
			if _, err := store.DB().NewRaw("INSERT INTO bun_migrations (name, group_id, migrated_at) VALUES (?, ?, ?)",
				"99991231235959", 99, time.Now().UTC()).Exec(ctx); err != nil {
				t.Fatal(err)
			}
			err = store.CheckSchema(ctx)
			if err == nil || !strings.Contains(err.Error(), "99991231235959") {
				t.Fatalf("CheckSchema with an unknown migration applied: %v", err)
			}
			if _, err := store.DB().NewRaw("DELETE FROM bun_migrations WHERE name = ?", "99991231235959").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if err := store.CheckSchema(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestNodesMigrateTogether: nodes starting at once on one empty database
// take turns; every one of them starts.
func TestNodesMigrateTogether(t *testing.T) {
	_, dsn := dbtest.Schema(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			s, err := repository.Open(context.Background(), repository.Options{URL: dsn})
			if err != nil {
				errs <- err
				return
			}
			defer s.Close()
			if _, err := s.Migrate(context.Background()); err != nil {
				errs <- err
				return
			}
			errs <- s.CheckSchema(context.Background())
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
