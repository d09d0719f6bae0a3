package api

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokens issues and checks access tokens: short-lived HS256 JWTs.
type tokens struct {
	secret   []byte
	issuer   string
	audience string
	ttl      time.Duration
	parser   *jwt.Parser
	now      func() time.Time
	// exists reports whether a user still exists (nil: not checked). A
	// token is checked against it once, before it is remembered.
	exists func(ctx context.Context, userID string) (bool, error)

	// verified remembers tokens that passed every check, until they
	// expire: a client sends the same token with every request for its
	// lifetime, and its signature, issuer and audience cannot change, so
	// only the expiry needs checking again. It saves an HMAC and a JSON
	// decode per request (a long-poller makes one per delivery).
	mu       sync.Mutex
	verified map[string]verifiedToken
}

type verifiedToken struct {
	userID string
	exp    time.Time
	// userID and exp as the request context stores them (any): boxed
	// once per token, not once per request.
	user, expiry any
}

func newVerifiedToken(userID string, exp time.Time) verifiedToken {
	return verifiedToken{userID: userID, exp: exp, user: userID, expiry: exp}
}

const (
	tokenLeeway = 5 * time.Second
	// maxVerified bounds the remembered tokens; when full they are all
	// forgotten (and verified again as they come back).
	maxVerified = 1 << 14
)

func newTokens(secret []byte, issuer, audience string, ttl time.Duration) *tokens {
	t := &tokens{
		secret:   secret,
		issuer:   issuer,
		audience: audience,
		ttl:      ttl,
		now:      time.Now,
		verified: map[string]verifiedToken{},
	}
	// Every check is explicit: the method is pinned (no "none", no
	// RSA/HMAC confusion), exp is required, iat may not be in the future,
	// and iss/aud must be ours.
	t.parser = jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithIssuer(issuer),
		jwt.WithAudience(audience),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(func() time.Time { return t.now() }),
	)
	return t
}

// issue returns a signed access token for userID and its expiry.
func (t *tokens) issue(userID string) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(t.ttl)
	claims := jwt.RegisteredClaims{
		Subject:   userID,
		Issuer:    t.issuer,
		Audience:  jwt.ClaimStrings{t.audience},
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(exp),
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(t.secret)
	return s, exp, err
}

var (
	errNoSubject   = errors.New("token has no subject")
	errUnknownUser = errors.New("token of a user that no longer exists")
)

// parse checks a token and returns its user and expiry. A token whose user
// no longer exists is refused too (checked when the token is first seen: a
// user deleted since is refused where a session or a row would name them).
func (t *tokens) parse(ctx context.Context, raw string) (verifiedToken, error) {
	if v, ok := t.cached(raw); ok {
		return v, nil
	}
	var claims jwt.RegisteredClaims
	if _, err := t.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return t.secret, nil }); err != nil {
		return verifiedToken{}, err
	}
	if claims.Subject == "" {
		return verifiedToken{}, errNoSubject
	}
	if t.exists != nil {
		ok, err := t.exists(ctx, claims.Subject)
		if err != nil {
			return verifiedToken{}, err
		}
		if !ok {
			return verifiedToken{}, errUnknownUser
		}
	}
	v := newVerifiedToken(claims.Subject, claims.ExpiresAt.Time)
	t.mu.Lock()
	if len(t.verified) >= maxVerified {
		clear(t.verified)
	}
	t.verified[raw] = v
	t.mu.Unlock()
	return v, nil
}

// cached returns what parse returns for a token it verified before and
// that has not expired, without verifying anything (ok false: parse has
// work to do, perhaps a look in the database).
func (t *tokens) cached(raw string) (verifiedToken, bool) {
	t.mu.Lock()
	v, ok := t.verified[raw]
	t.mu.Unlock()
	return v, ok && !t.now().After(v.exp.Add(tokenLeeway))
}
