package api

import (
	"errors"
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
}

func newTokens(secret []byte, issuer, audience string, ttl time.Duration) *tokens {
	return &tokens{
		secret:   secret,
		issuer:   issuer,
		audience: audience,
		ttl:      ttl,
		// Every check is explicit: the method is pinned (no "none", no
		// RSA/HMAC confusion), exp is required, iat may not be in the
		// future, and iss/aud must be ours.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithLeeway(5*time.Second),
		),
	}
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

var errNoSubject = errors.New("token has no subject")

// parse checks a token and returns its user and expiry.
func (t *tokens) parse(raw string) (userID string, exp time.Time, err error) {
	var claims jwt.RegisteredClaims
	if _, err := t.parser.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return t.secret, nil }); err != nil {
		return "", time.Time{}, err
	}
	if claims.Subject == "" {
		return "", time.Time{}, errNoSubject
	}
	return claims.Subject, claims.ExpiresAt.Time, nil
}
