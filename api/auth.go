package api

import (
	"errors"
	"math"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
)

// tokenCookie carries the access token to the stream endpoints, for
// EventSource, which cannot send headers. It is scoped to /v1/events and
// SameSite=Strict, and no state-changing endpoint reads it.
const tokenCookie = "confab_token"

var usernameRE = regexp.MustCompile(`^[a-z0-9_.-]{3,32}$`)

type credentials struct {
	Username    string `json:"username"`
	Password    string `json:"password"`
	DisplayName string `json:"display_name"`
}

type tokensResponse struct {
	User         *repository.User `json:"user"`
	AccessToken  string           `json:"access_token"`
	RefreshToken string           `json:"refresh_token"`
	ExpiresIn    int              `json:"expires_in"`
}

// register creates an account and logs it in. Everything cheap comes
// before the password hash: the input checks, the per-address limit, and
// whether the name is free.
func (s *Server) register(c *gin.Context) {
	var in credentials
	if !decode(c, &in) {
		return
	}
	if msg := validateCredentials(in); msg != "" {
		problem(c, http.StatusBadRequest, CodeInvalidField, msg)
		return
	}
	if s.registers != nil {
		if ok, retry := s.registers.allow(c.ClientIP()); !ok {
			tooMany(c, retry)
			return
		}
	}
	ctx := c.Request.Context()
	if _, err := s.store.UserByUsername(ctx, in.Username); err == nil {
		s.fail(c, repository.ErrUsernameTaken)
		return
	} else if !errors.Is(err, repository.ErrNotFound) {
		s.fail(c, err)
		return
	}
	if in.DisplayName == "" {
		in.DisplayName = in.Username
	}
	hash, err := s.passwords.hash(ctx, in.Password)
	if err != nil {
		s.fail(c, err)
		return
	}
	// A concurrent registration of the same name still loses here, on the
	// unique index.
	u, err := s.store.CreateUser(ctx, in.Username, in.DisplayName, hash)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.pairFails.succeed(pairKey(u.Username, c.ClientIP()))
	s.issueTokens(c, http.StatusCreated, u, "")
}

func validateCredentials(in credentials) string {
	switch {
	case !usernameRE.MatchString(in.Username):
		return "username must be 3-32 characters of a-z, 0-9, '_', '.', '-'"
	case len(in.Password) < 8 || len(in.Password) > 256:
		return "password must be 8-256 bytes"
	case strings.IndexFunc(in.Password, unicode.IsControl) >= 0:
		return "password must not contain control characters (NUL, tab, newline, ...)"
	case strings.TrimSpace(in.Password) == "":
		return "password must not be only spaces"
	case utf8.RuneCountInString(in.DisplayName) > 64:
		return "display_name must be at most 64 characters"
	}
	return validateDisplayName(in.DisplayName)
}

// validateDisplayName refuses what would let a name pass for another or
// disturb the text around it: control characters, bidirectional controls
// (U+202E turns "alice" + "txt.exe" around), and names with nothing
// visible (only spaces, zero-width characters or combining marks). Other
// format characters stay allowed: the zero-width joiner builds emoji and
// some scripts need it.
const brailleBlank = '\u2800'

func validateDisplayName(name string) string {
	visible := name == "" // empty: the username is used
	for _, r := range name {
		switch {
		case unicode.IsControl(r):
			return "display_name must not contain control characters"
		case unicode.Is(unicode.Bidi_Control, r):
			return "display_name must not contain bidirectional control characters"
		case unicode.In(r, unicode.L, unicode.N, unicode.P, unicode.S) &&
			!unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) && r != brailleBlank:
			// Letters such as U+3164 HANGUL FILLER render as nothing.
			visible = true
		}
	}
	if !visible {
		return "display_name must contain a visible character"
	}
	return ""
}

// login exchanges a username and password for tokens. An unknown username
// and a wrong password get the same answer in about the same time, and
// failures are throttled per (username, address) and per address.
func (s *Server) login(c *gin.Context) {
	var in struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if !decode(c, &in) {
		return
	}
	if in.Username == "" || in.Password == "" || len(in.Password) > 256 {
		problem(c, http.StatusBadRequest, CodeInvalidField, "username and password are required")
		return
	}
	valid := usernameRE.MatchString(in.Username)
	end, admitted := s.admitLogin(c, in.Username, valid)
	if !admitted {
		return
	}
	failed := false
	defer func() { end(failed) }()
	ctx := c.Request.Context()
	// A name register would refuse cannot exist: it is not looked up (it
	// may not even be storable text), but still costs a hash.
	u, err := &repository.User{}, repository.ErrNotFound
	if valid {
		u, err = s.store.UserByUsername(ctx, in.Username)
	}
	hash := u.PasswordHash
	if err == repository.ErrNotFound {
		hash = "" // verify against the dummy: same cost as a real check
	} else if err != nil {
		s.fail(c, err)
		return
	}
	ok, err := s.passwords.verify(ctx, hash, in.Password)
	failed = err == nil && !ok
	if err != nil {
		s.fail(c, err)
		return
	}
	if !ok {
		problem(c, http.StatusUnauthorized, CodeInvalidCredentials, "")
		return
	}
	s.pairFails.succeed(pairKey(in.Username, c.ClientIP()))
	s.issueTokens(c, http.StatusOK, u, "")
}

func pairKey(username, addr string) string { return username + " " + addr }

// admitLogin applies the failure throttles (OWASP: per username and
// address, and per address, with growing delays rather than a lockout).
// There is no limit per username alone: guessing from elsewhere must not
// lock the owner out. An address that is guessing cannot slow a
// (username, address) that logged in before, so one attacker behind an
// office NAT does not lock the office out. The throttles hold the attempt
// as a failure while the slow password check runs, and end(failed) settles
// it. Junk names get no (username, address) entry, so they cannot grow
// its map. A refused attempt has been answered with a 429.
func (s *Server) admitLogin(c *gin.Context, username string, valid bool) (end func(failed bool), ok bool) {
	addr := c.ClientIP()
	type throttle struct {
		b   *backoff
		key string
	}
	var throttles []throttle
	if valid {
		throttles = append(throttles, throttle{s.pairFails, pairKey(username, addr)})
	}
	if !valid || !s.pairFails.trusted(pairKey(username, addr)) {
		throttles = append(throttles, throttle{s.addrFails, addr})
	}
	var ends []func(failed bool)
	end = func(failed bool) {
		for _, e := range ends {
			e(failed)
		}
	}
	for _, t := range throttles {
		ok, retry, e := t.b.begin(t.key)
		if !ok {
			end(false)
			tooMany(c, int(math.Ceil(retry.Seconds())))
			return nil, false
		}
		ends = append(ends, e)
	}
	return end, true
}

// refresh rotates a refresh token.
func (s *Server) refresh(c *gin.Context) {
	token, ok := decodeRefreshToken(c)
	if !ok {
		return
	}
	uid, next, err := s.store.RotateRefreshToken(c.Request.Context(), token, s.cfg.RefreshTTL)
	if err != nil {
		s.fail(c, err)
		return
	}
	u, err := s.store.UserByID(c.Request.Context(), uid)
	if err != nil {
		s.fail(c, err)
		return
	}
	s.issueTokens(c, http.StatusOK, u, next)
}

// decodeRefreshToken reads the {"refresh_token"} body of refresh and logout.
func decodeRefreshToken(c *gin.Context) (string, bool) {
	var in struct {
		RefreshToken string `json:"refresh_token"`
	}
	if !decode(c, &in) {
		return "", false
	}
	if in.RefreshToken == "" {
		problem(c, http.StatusBadRequest, CodeInvalidField, "refresh_token is required")
		return "", false
	}
	return in.RefreshToken, true
}

// logout revokes the refresh token's family and clears the cookie.
func (s *Server) logout(c *gin.Context) {
	token, ok := decodeRefreshToken(c)
	if !ok {
		return
	}
	if err := s.store.RevokeRefreshToken(c.Request.Context(), token); err != nil {
		s.fail(c, err)
		return
	}
	s.setTokenCookie(c, "", -1)
	c.Status(http.StatusNoContent)
}

// issueTokens answers with a fresh access token and the given refresh token
// (a new family when empty), and sets the stream cookie.
func (s *Server) issueTokens(c *gin.Context, status int, u *repository.User, refresh string) {
	access, exp, err := s.tokens.issue(u.ID)
	if err != nil {
		s.fail(c, err)
		return
	}
	if refresh == "" {
		if refresh, err = s.store.CreateRefreshToken(c.Request.Context(), u.ID, s.cfg.RefreshTTL); err != nil {
			s.fail(c, err)
			return
		}
	}
	ttl := int(time.Until(exp).Seconds())
	s.setTokenCookie(c, access, ttl)
	c.Header("Cache-Control", "no-store")
	c.JSON(status, tokensResponse{User: u, AccessToken: access, RefreshToken: refresh, ExpiresIn: ttl})
}

func (s *Server) setTokenCookie(c *gin.Context, value string, maxAge int) {
	http.SetCookie(c.Writer, &http.Cookie{
		Name:     tokenCookie,
		Value:    value,
		Path:     "/v1/events",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   s.cfg.SecureCookies || c.Request.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}
