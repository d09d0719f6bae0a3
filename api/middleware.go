package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
)

const (
	ctxRequestID    = "confab.request_id"
	ctxRequestStart = "confab.request_start"
	ctxUserID       = "confab.user_id"
	ctxTokenExp     = "confab.token_exp"
	// ctxStreamLogged: the request is a stream that logs its own line
	// when it ends (see takeOver).
	ctxStreamLogged = "confab.stream_logged"
)

func requestID(c *gin.Context) string { return c.GetString(ctxRequestID) }

// userID is the authenticated caller; set by the auth middleware.
func userID(c *gin.Context) string { return c.GetString(ctxUserID) }

// requestLog assigns a request id and logs one line per request. The query
// string is logged with access_token redacted; bodies and headers never are.
//
// A long-poller makes one request per delivery, so a line per successful
// poll would be most of what a busy node logs, and writing it was 6-14% of
// a long-poll's CPU. Those lines are at Debug; the poll session logs one
// line at Info when it ends, with its number of polls and events
// (events.Broker). Failed polls (4xx, 5xx) keep their line at Info or
// Error, like every other request.
func (s *Server) requestLog(c *gin.Context) {
	id := c.GetHeader("X-Request-Id")
	if id == "" || len(id) > 64 {
		b := make([]byte, 8)
		rand.Read(b)
		id = hex.EncodeToString(b)
	}
	c.Set(ctxRequestID, id)
	c.Header("X-Request-Id", id)
	start := time.Now()
	c.Set(ctxRequestStart, start)
	c.Next()
	if c.GetBool(ctxStreamLogged) {
		return
	}
	status := c.Writer.Status()
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status < 400 && c.FullPath() == pollRoute:
		level = slog.LevelDebug
	}
	ctx := c.Request.Context()
	if !s.log.Enabled(ctx, level) {
		return // nothing below is computed for a line nobody reads
	}
	s.logRequest(ctx, level, requestLine{
		id: id, method: c.Request.Method, path: c.Request.URL.Path,
		query: redactQuery(c.Request.URL.RawQuery), userID: userID(c), start: start,
	}, status)
}

// requestLine is what a request's log line says besides its status.
type requestLine struct {
	id, method, path, query, userID string
	start                           time.Time
}

func (s *Server) logRequest(ctx context.Context, level slog.Level, r requestLine, status int, extra ...slog.Attr) {
	attrs := append([]slog.Attr{
		slog.String("request_id", r.id),
		slog.String("method", r.method),
		slog.String("path", r.path),
		slog.String("query", r.query),
		slog.Int("status", status),
		slog.Duration("duration", time.Since(r.start)),
		slog.String("user_id", r.userID),
	}, extra...)
	s.log.LogAttrs(ctx, level, "request", attrs...)
}

// redactQuery hides secrets that may ride in the query string.
func redactQuery(raw string) string {
	if raw == "" {
		return ""
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return "(unparsable)"
	}
	for k := range q {
		if strings.Contains(strings.ToLower(k), "token") {
			q[k] = []string{"REDACTED"}
		}
	}
	return q.Encode()
}

// securityHeaders go on every response: no MIME sniffing (a message body
// served as JSON must never run as HTML), and no Referer, which could carry
// the access_token query parameter of a stream URL to another site.
func securityHeaders(c *gin.Context) {
	h := c.Writer.Header()
	h["X-Content-Type-Options"] = nosniff
	h["Referrer-Policy"] = noReferrer
	c.Next()
}

// The values of securityHeaders, one slice for every response: net/http
// copies a response's header values when it writes them, and nothing
// changes them in place.
var nosniff, noReferrer, noStoreValue = []string{"nosniff"}, []string{"no-referrer"}, []string{"no-store"}

// noStore keeps every API response, which carries a user's data or tokens,
// out of browser and proxy caches. The SSE stream sets its own no-cache.
func noStore(c *gin.Context) {
	c.Writer.Header()["Cache-Control"] = noStoreValue
	c.Next()
}

// recoverer turns a panic into a logged 500 problem.
func (s *Server) recoverer(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic", slog.String("request_id", requestID(c)), slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
			if !c.Writer.Written() {
				problem(c, http.StatusInternalServerError, CodeInternal, "request id "+requestID(c))
			}
		}
	}()
	c.Next()
}

// limitBody caps every request body; decode turns the overflow into 413.
func (s *Server) limitBody(c *gin.Context) {
	if c.Request.ContentLength > s.cfg.MaxBodyBytes {
		problem(c, http.StatusRequestEntityTooLarge, CodeBodyTooLarge, fmt.Sprintf("at most %d bytes", s.cfg.MaxBodyBytes))
		return
	}
	if c.Request.Body != http.NoBody { // a GET's: nothing to read
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, s.cfg.MaxBodyBytes)
	}
	c.Next()
}

// cors allows the configured browser origins to call the API with a bearer
// token. Cookies are never allowed cross-origin.
func (s *Server) cors(c *gin.Context) {
	origin := c.GetHeader("Origin")
	if origin == "" || !(slices.Contains(s.cfg.CORSOrigins, origin) || slices.Contains(s.cfg.CORSOrigins, "*")) {
		c.Next()
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	h.Set("Access-Control-Expose-Headers", "Retry-After, X-Request-Id")
	if c.Request.Method == http.MethodOptions && c.GetHeader("Access-Control-Request-Method") != "" {
		h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Last-Event-ID, X-Request-Id")
		h.Set("Access-Control-Max-Age", "600")
		c.AbortWithStatus(http.StatusNoContent)
		return
	}
	c.Next()
}

// newOriginCheck builds the cross-site check of the auth endpoints. The
// configured CORS origins are trusted; "*" trusts every origin (nil: no
// check), since a client served from anywhere must be able to log in.
func newOriginCheck(corsOrigins []string, log *slog.Logger) *http.CrossOriginProtection {
	if slices.Contains(corsOrigins, "*") {
		return nil
	}
	p := http.NewCrossOriginProtection()
	for _, o := range corsOrigins {
		if err := p.AddTrustedOrigin(o); err != nil {
			log.Warn("ignoring a CORS origin", slog.String("origin", o), slog.Any("err", err))
		}
	}
	return p
}

// sameOrigin refuses cross-site browser requests (Sec-Fetch-Site, or Origin
// against Host for older browsers) to the auth endpoints, which set the
// token cookie: a page elsewhere must not sign the victim's browser in to
// the attacker's account (login CSRF). Clients that send neither header,
// such as curl, are not browsers and pass.
func (s *Server) sameOrigin(c *gin.Context) {
	if s.origins != nil {
		if err := s.origins.Check(c.Request); err != nil {
			problem(c, http.StatusForbidden, CodeCrossOrigin, "this endpoint accepts browser requests only from the site itself or a configured CORS origin")
			return
		}
	}
	c.Next()
}

// requireBearer authenticates state-changing and data endpoints by the
// Authorization header only: accepting the cookie here would open CSRF.
func (s *Server) requireBearer(c *gin.Context) {
	s.authenticate(c, bearerToken(c))
}

func bearerToken(c *gin.Context) string {
	h := c.GetHeader("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func (s *Server) authenticate(c *gin.Context, raw string) {
	if raw == "" {
		c.Header("WWW-Authenticate", `Bearer realm="confab"`)
		problem(c, http.StatusUnauthorized, CodeUnauthorized, "missing access token")
		return
	}
	tok, err := s.tokens.parse(c.Request.Context(), raw)
	if err != nil && !errors.Is(err, errUnknownUser) && !errors.Is(err, errNoSubject) && repository.IsUnavailable(err) {
		s.fail(c, err) // the user could not be looked up: 503, not 401
		return
	}
	if err != nil {
		c.Header("WWW-Authenticate", `Bearer realm="confab", error="invalid_token"`)
		problem(c, http.StatusUnauthorized, CodeUnauthorized, "invalid or expired access token")
		return
	}
	c.Set(ctxUserID, tok.user)
	c.Set(ctxTokenExp, tok.expiry)
	// Path ids are opaque, but one that is not text names nothing.
	for _, p := range c.Params {
		if !isText(p.Value) {
			problem(c, http.StatusNotFound, CodeNotFound, "")
			return
		}
	}
	c.Next()
}

// writeDeadline bounds the time a response may take to write, so a client
// that stops reading cannot hold a handler forever. The server has no
// WriteTimeout (it would cut streams); the stream endpoints set deadlines
// per write instead.
func (s *Server) writeDeadline(c *gin.Context) {
	if !strings.HasPrefix(c.Request.URL.Path, "/v1/events") {
		http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) //nolint:errcheck // best effort
	}
	c.Next()
}
