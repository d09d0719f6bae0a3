package repository

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// CreateUser stores a new account.
func (s *Store) CreateUser(ctx context.Context, username, displayName, passwordHash string) (*User, error) {
	u := &User{
		ID:           newID(),
		Username:     username,
		DisplayName:  displayName,
		PasswordHash: passwordHash,
		CreatedAt:    s.now(),
	}
	if _, err := s.db.NewInsert().Model(u).Exec(ctx); err != nil {
		if isUniqueViolation(err) {
			return nil, ErrUsernameTaken
		}
		return nil, err
	}
	return u, nil
}

// UserByUsername returns the account with that username.
func (s *Store) UserByUsername(ctx context.Context, username string) (*User, error) {
	u := new(User)
	err := s.db.NewSelect().Model(u).Where("username = ?", username).Scan(ctx)
	return u, notFound(err)
}

// UserExists reports whether an account with that id exists.
func (s *Store) UserExists(ctx context.Context, id string) (bool, error) {
	return s.db.NewSelect().Model((*User)(nil)).Where("id = ?", id).Exists(ctx)
}

// UserByID returns the account with that id.
func (s *Store) UserByID(ctx context.Context, id string) (*User, error) {
	u := new(User)
	err := s.db.NewSelect().Model(u).Where("id = ?", id).Scan(ctx)
	return u, notFound(err)
}

// SearchUsers lists up to limit users whose username starts with prefix.
func (s *Store) SearchUsers(ctx context.Context, prefix string, limit int) ([]User, error) {
	users := []User{}
	err := s.db.NewSelect().Model(&users).
		Where("username LIKE ? ESCAPE '\\'", escapeLike(prefix)+"%").
		Order("username").Limit(int64(limit)).Scan(ctx)
	return users, err
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// notFound turns "no rows" into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}
