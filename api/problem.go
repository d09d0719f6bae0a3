package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/repository"
	"github.com/gin-gonic/gin"
)

// Problem is an RFC 9457 problem document with confab's stable code.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Code   string `json:"code"`
}

// Stable problem codes. Clients switch on these, never on the text.
const (
	CodeInvalidJSON         = "invalid_json"
	CodeInvalidUTF8         = "invalid_utf8"
	CodeInvalidField        = "invalid_field"
	CodeInvalidCursor       = "invalid_cursor"
	CodeBodyTooLarge        = "body_too_large"
	CodeUnsupportedMedia    = "unsupported_media_type"
	CodeCrossOrigin         = "cross_origin"
	CodeUnauthorized        = "unauthorized"
	CodeInvalidCredentials  = "invalid_credentials"
	CodeInvalidRefreshToken = "invalid_refresh_token"
	CodeNotFound            = "not_found"
	CodeMethodNotAllowed    = "method_not_allowed"
	CodeUsernameTaken       = "username_taken"
	CodeNotGroup            = "not_a_group"
	CodeGroupFull           = "group_full"
	CodeClientMsgConflict   = "client_msg_id_conflict"
	CodeRateLimited         = "rate_limited"
	CodeInternal            = "internal"
	CodeUnavailable         = "unavailable"
)

var titles = map[string]string{
	CodeInvalidJSON:         "Request body is not valid JSON",
	CodeInvalidUTF8:         "Request body is not valid UTF-8",
	CodeInvalidField:        "A field is missing or invalid",
	CodeInvalidCursor:       "Invalid cursor",
	CodeBodyTooLarge:        "Request body too large",
	CodeUnsupportedMedia:    "Request body must be application/json",
	CodeCrossOrigin:         "Cross-origin request refused",
	CodeUnauthorized:        "Authentication required",
	CodeInvalidCredentials:  "Invalid username or password",
	CodeInvalidRefreshToken: "Invalid refresh token",
	CodeNotFound:            "Not found",
	CodeMethodNotAllowed:    "Method not allowed",
	CodeUsernameTaken:       "Username already taken",
	CodeNotGroup:            "Not a group conversation",
	CodeGroupFull:           "Group is full",
	CodeClientMsgConflict:   "client_msg_id already used for another message",
	CodeRateLimited:         "Too many requests",
	CodeInternal:            "Internal server error",
	CodeUnavailable:         "Service unavailable",
}

// problem writes a problem+json response and aborts the chain.
func problem(c *gin.Context, status int, code, detail string) {
	c.Header("Content-Type", "application/problem+json")
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, Problem{
		Type:   "https://confab.dev/problems/" + code,
		Title:  titles[code],
		Status: status,
		Detail: detail,
		Code:   code,
	})
}

// tooMany answers 429 with the Retry-After clients must honour.
func tooMany(c *gin.Context, retryAfterSeconds int) {
	if retryAfterSeconds < 1 {
		retryAfterSeconds = 1
	}
	c.Header("Retry-After", strconv.Itoa(retryAfterSeconds))
	problem(c, http.StatusTooManyRequests, CodeRateLimited, "retry after "+strconv.Itoa(retryAfterSeconds)+"s")
}

// fail is the one place that turns an error from below into HTTP. Known
// errors become their 4xx; anything else is logged and becomes a 500 that
// says nothing about the cause.
func (s *Server) fail(c *gin.Context, err error) {
	var invalid *repository.InvalidError
	switch {
	case errors.As(err, &invalid):
		problem(c, http.StatusBadRequest, CodeInvalidField, invalid.Error())
	case errors.Is(err, repository.ErrNotFound):
		problem(c, http.StatusNotFound, CodeNotFound, "")
	case errors.Is(err, repository.ErrUsernameTaken):
		problem(c, http.StatusConflict, CodeUsernameTaken, "")
	case errors.Is(err, repository.ErrUnknownUser):
		c.Header("WWW-Authenticate", `Bearer realm="confab", error="invalid_token"`)
		problem(c, http.StatusUnauthorized, CodeUnauthorized, "the account no longer exists")
	case errors.Is(err, repository.ErrInvalidToken):
		problem(c, http.StatusUnauthorized, CodeInvalidRefreshToken, "")
	case errors.Is(err, repository.ErrNotGroup):
		problem(c, http.StatusConflict, CodeNotGroup, "direct conversations have exactly their two members")
	case errors.Is(err, repository.ErrGroupFull):
		problem(c, http.StatusConflict, CodeGroupFull, "at most "+strconv.Itoa(s.cfg.MaxGroupMembers)+" members")
	case errors.Is(err, events.ErrInvalidCursor):
		problem(c, http.StatusBadRequest, CodeInvalidCursor, "a cursor is the position an event or answer carried, as it was sent")
	case errors.Is(err, repository.ErrInvalidCursor):
		problem(c, http.StatusBadRequest, CodeInvalidCursor, "use the next_cursor of an earlier page")
	case errors.Is(err, repository.ErrClientMsgConflict):
		problem(c, http.StatusConflict, CodeClientMsgConflict, "")
	case c.Request.Context().Err() != nil:
		// The client went away; nothing to answer.
		c.Abort()
	case repository.IsUnavailable(err):
		s.log.WarnContext(c.Request.Context(), "database unavailable",
			slog.String("request_id", requestID(c)), slog.String("path", c.FullPath()), slog.Any("err", err))
		c.Header("Retry-After", "1")
		problem(c, http.StatusServiceUnavailable, CodeUnavailable, "the database is unavailable; retry (sends are idempotent with client_msg_id)")
	default:
		s.log.ErrorContext(c.Request.Context(), "request failed",
			slog.String("request_id", requestID(c)), slog.String("path", c.FullPath()), slog.Any("err", err))
		problem(c, http.StatusInternalServerError, CodeInternal, "request id "+requestID(c))
	}
}
