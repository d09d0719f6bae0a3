package repository

import (
	"context"
	"fmt"

	"github.com/confab-chat/confab/migrations"
	"github.com/uptrace/bun/migrate"
)

func (s *Store) migrator() (*migrate.Migrator, error) {
	fsys, err := migrations.FS(s.Dialect())
	if err != nil {
		return nil, err
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(fsys); err != nil {
		return nil, fmt.Errorf("repository: discover migrations: %w", err)
	}
	return migrate.NewMigrator(s.db, ms, migrate.WithMarkAppliedOnSuccess(true)), nil
}

// MigrationStatus describes one migration.
type MigrationStatus struct {
	Name    string
	Comment string
	Applied bool
}

// Migrate applies every pending migration and returns the names applied.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("repository: init migrations: %w", err)
	}
	if err := m.Lock(ctx); err != nil {
		return nil, fmt.Errorf("repository: lock migrations: %w", err)
	}
	defer m.Unlock(ctx) //nolint:errcheck // the lock row is best effort
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("repository: migrate: %w", err)
	}
	var names []string
	for _, mg := range group.Migrations {
		names = append(names, mg.Name+"_"+mg.Comment)
	}
	return names, nil
}

// Rollback reverts the last group of migrations.
func (s *Store) Rollback(ctx context.Context) ([]string, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, err
	}
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	defer m.Unlock(ctx) //nolint:errcheck // the lock row is best effort
	group, err := m.Rollback(ctx)
	if err != nil {
		return nil, fmt.Errorf("repository: rollback: %w", err)
	}
	var names []string
	for _, mg := range group.Migrations {
		names = append(names, mg.Name+"_"+mg.Comment)
	}
	return names, nil
}

// MigrationStatuses lists every known migration and whether it is applied.
func (s *Store) MigrationStatuses(ctx context.Context) ([]MigrationStatus, error) {
	m, err := s.migrator()
	if err != nil {
		return nil, err
	}
	if err := m.Init(ctx); err != nil {
		return nil, err
	}
	ms, err := m.MigrationsWithStatus(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]MigrationStatus, 0, len(ms))
	for _, mg := range ms {
		out = append(out, MigrationStatus{Name: mg.Name, Comment: mg.Comment, Applied: mg.IsApplied()})
	}
	return out, nil
}

// CheckSchema returns an error unless every migration this binary knows is
// applied and the database has none this binary does not know: serving on a
// schema we do not understand risks corrupting it.
func (s *Store) CheckSchema(ctx context.Context) error {
	m, err := s.migrator()
	if err != nil {
		return err
	}
	if err := m.Init(ctx); err != nil {
		return err
	}
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
}
