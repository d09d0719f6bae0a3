package repository

import (
	"context"
	"fmt"

	"github.com/confab-chat/confab/migrations"
	"github.com/uptrace/bun/migrate"
)

// MigrationStatus describes one migration.
type MigrationStatus struct {
	Name    string
	Comment string
	Applied bool
}

// withMigrator runs fn with the migrator of the store's dialect, its
// bookkeeping tables created. Nodes starting together take turns on a
// Postgres advisory lock (held on one connection, so a crashed node cannot
// leave it behind): even CREATE TABLE IF NOT EXISTS fails when two run at
// once. SQLite serves one node.
func (s *Store) withMigrator(ctx context.Context, fn func(*migrate.Migrator) error) error {
	fsys, err := migrations.FS(s.Dialect())
	if err != nil {
		return err
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return fmt.Errorf("repository: discover migrations: %w", err)
	}
	m := migrate.NewMigrator(s.db, ms, migrate.WithMarkAppliedOnSuccess(true))
	if s.IsPostgres() {
		conn, err := s.db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrationLockID); err != nil {
			return fmt.Errorf("repository: lock migrations: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", migrationLockID) //nolint:errcheck // closing the connection releases it too
	}
	if err := m.Init(ctx); err != nil {
		return fmt.Errorf("repository: init migrations: %w", err)
	}
	return fn(m)
}

// migrationLockID names confab's advisory lock (any constant will do).
const migrationLockID = 0x636f6e666162 // "confab"

// Migrate applies every pending migration and returns the names applied.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	var names []string
	err := s.withMigrator(ctx, func(m *migrate.Migrator) error {
		group, err := m.Migrate(ctx)
		if err != nil {
			return fmt.Errorf("repository: migrate: %w", err)
		}
		for _, mg := range group.Migrations {
			names = append(names, mg.Name+"_"+mg.Comment)
		}
		return nil
	})
	return names, err
}

// Rollback reverts the last group of migrations.
func (s *Store) Rollback(ctx context.Context) ([]string, error) {
	var names []string
	err := s.withMigrator(ctx, func(m *migrate.Migrator) error {
		group, err := m.Rollback(ctx)
		if err != nil {
			return fmt.Errorf("repository: rollback: %w", err)
		}
		for _, mg := range group.Migrations {
			names = append(names, mg.Name+"_"+mg.Comment)
		}
		return nil
	})
	return names, err
}

// MigrationStatuses lists every known migration and whether it is applied.
func (s *Store) MigrationStatuses(ctx context.Context) ([]MigrationStatus, error) {
	var out []MigrationStatus
	err := s.withMigrator(ctx, func(m *migrate.Migrator) error {
		ms, err := m.MigrationsWithStatus(ctx)
		for _, mg := range ms {
			out = append(out, MigrationStatus{Name: mg.Name, Comment: mg.Comment, Applied: mg.IsApplied()})
		}
		return err
	})
	return out, err
}

// CheckSchema returns an error unless every migration this binary knows is
// applied and the database has none this binary does not know: serving on a
// schema we do not understand risks corrupting it.
func (s *Store) CheckSchema(ctx context.Context) error {
	return s.withMigrator(ctx, func(m *migrate.Migrator) error {
		ms, err := m.MigrationsWithStatus(ctx)
		if err != nil {
			return err
		}
		if unapplied := ms.Unapplied(); len(unapplied) > 0 {
			return fmt.Errorf("repository: schema is behind: %d migration(s) pending (run `confab migrate up`)", len(unapplied))
		}
		applied, err := m.AppliedMigrations(ctx)
		if err != nil {
			return err
		}
		known := map[string]bool{}
		for _, mg := range ms {
			known[mg.Name] = true
		}
		for _, mg := range applied {
			if !known[mg.Name] {
				return fmt.Errorf("repository: schema has migration %s_%s that this binary does not know (newer confab?)", mg.Name, mg.Comment)
			}
		}
		return nil
	})
}
