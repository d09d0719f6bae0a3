package repository

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/uptrace/bun"
)

// hashToken is how refresh tokens are stored: a leaked table does not yield
// usable tokens. The tokens are 256 random bits, so a plain SHA-256 suffices.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func newRefreshToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// CreateRefreshToken starts a new token family for a fresh login and returns
// the opaque token.
func (s *Store) CreateRefreshToken(ctx context.Context, userID string, ttl time.Duration) (string, error) {
	return s.insertRefreshToken(ctx, s.db, userID, newID(), ttl)
}

func (s *Store) insertRefreshToken(ctx context.Context, db bun.IDB, userID, family string, ttl time.Duration) (string, error) {
	token := newRefreshToken()
	now := s.now()
	_, err := db.NewInsert().Model(&refreshToken{
		ID:        newID(),
		UserID:    userID,
		FamilyID:  family,
		TokenHash: hashToken(token),
		CreatedAt: now,
		ExpiresAt: now.Add(ttl),
	}).Exec(ctx)
	if err != nil {
		return "", err
	}
	return token, nil
}

// RotateRefreshToken spends a refresh token and returns its user and a new
// token of the same family. A token presented twice means it leaked: the
// whole family is revoked and ErrInvalidToken returned.
func (s *Store) RotateRefreshToken(ctx context.Context, token string, ttl time.Duration) (userID, next string, err error) {
	h := hashToken(token)
	err = s.tx(ctx, func(ctx context.Context, tx bun.Tx) error {
		now := s.now()
		var rt refreshToken
		// The conditional update is the atomic "spend": of two concurrent
		// uses, exactly one matches.
		err := tx.NewUpdate().Model(&rt).
			Set("used_at = ?", now).
			Where("token_hash = ?", h).
			Where("used_at IS NULL AND revoked_at IS NULL").
			Where("expires_at > ?", now).
			Returning("user_id, family_id").
			Scan(ctx)
		if err != nil {
			return notFound(err)
		}
		userID = rt.UserID
		next, err = s.insertRefreshToken(ctx, tx, rt.UserID, rt.FamilyID, ttl)
		return err
	})
	if err == ErrNotFound {
		// Unknown, expired, revoked or reused. Reuse of a spent token revokes
		// the family; the revocation must commit, so it runs on its own.
		if rerr := s.revokeFamilyOf(ctx, h, true); rerr != nil {
			return "", "", rerr
		}
		return "", "", ErrInvalidToken
	}
	return userID, next, err
}

// RevokeRefreshToken ends the token's family (logout). Unknown tokens are
// ignored so logout is idempotent.
func (s *Store) RevokeRefreshToken(ctx context.Context, token string) error {
	return s.revokeFamilyOf(ctx, hashToken(token), false)
}

func (s *Store) revokeFamilyOf(ctx context.Context, hash string, onlyIfUsed bool) error {
	var rt refreshToken
	q := s.db.NewSelect().Model(&rt).Column("family_id").Where("token_hash = ?", hash)
	if onlyIfUsed {
		q = q.Where("used_at IS NOT NULL")
	}
	if err := q.Scan(ctx); err != nil {
		if notFound(err) == ErrNotFound {
			return nil
		}
		return err
	}
	_, err := s.db.NewUpdate().Model((*refreshToken)(nil)).
		Set("revoked_at = ?", s.now()).
		Where("family_id = ? AND revoked_at IS NULL", rt.FamilyID).
		Exec(ctx)
	return err
}

// PruneRefreshTokens deletes refresh tokens that expired before now: past
// expiry even a reused one is refused without its family.
func (s *Store) PruneRefreshTokens(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.NewDelete().Model((*refreshToken)(nil)).Where("expires_at < ?", now).Exec(ctx)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
