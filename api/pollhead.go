package api

import (
	"bytes"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// headEnd returns the length of the request head at the start of data,
// without its final empty line: -1 when the head is not all there, -2 when
// its lines do not all end in CRLF (net/http takes a bare LF too).
func headEnd(data []byte) int {
	i := bytes.Index(data, crlf2)
	scan := data
	if i >= 0 {
		scan = data[:i+4]
	}
	if bytes.Count(scan, crlf[1:]) != bytes.Count(scan, crlf) {
		return -2
	}
	if i < 0 {
		return -1
	}
	return i + 2
}

var crlf, crlf2 = []byte("\r\n"), []byte("\r\n\r\n")

// pollRequest is what the fast path reads of a poll.
type pollRequest struct {
	// head is the request's head without its final empty line; the
	// other fields are substrings of it.
	head                              string
	token, sessionID, cursor, timeout string
	requestID, userAgent, query       string
	// close: the client asked to close the connection after the answer.
	close bool
}

// parsePoll reads a request head; ok is false when it is not a poll the
// fast path serves exactly as the router would. The fields are substrings
// of head.
func parsePoll(head string) (r pollRequest, ok bool) {
	line, rest, _ := strings.Cut(head, "\r\n")
	target, found := strings.CutPrefix(line, "GET ")
	if !found {
		return r, false
	}
	if target, found = strings.CutSuffix(target, " HTTP/1.1"); !found {
		return r, false
	}
	path, query, _ := strings.Cut(target, "?")
	// Escapes, and anything net/http or gin might read differently, are
	// theirs.
	if path != pollRoute || !plainQuery(query) {
		return r, false
	}
	r.head, r.query = head, query
	// The first of each header counts, as net/http's Header.Get reads
	// it, even when it is empty.
	var auth, cookie string
	var host, seenAuth, seenCookie, seenUA, seenID bool
	for rest != "" {
		line, rest, _ = strings.Cut(rest, "\r\n")
		name, value, found := strings.Cut(line, ":")
		if !found || !isToken(name) || !isFieldValue(value) {
			return r, false
		}
		value = strings.Trim(value, " \t")
		switch {
		case strings.EqualFold(name, "Host"):
			if host || !httpguts.ValidHostHeader(value) {
				return r, false // net/http's 400
			}
			host = true
		case strings.EqualFold(name, "Authorization"):
			if !seenAuth {
				auth, seenAuth = value, true
			}
		case strings.EqualFold(name, "Cookie"):
			if !seenCookie {
				cookie, seenCookie = value, true
			}
		case strings.EqualFold(name, "User-Agent"):
			if !seenUA {
				r.userAgent, seenUA = value, true
			}
		case strings.EqualFold(name, "X-Request-Id"):
			if !seenID {
				r.requestID, seenID = value, true
			}
		case strings.EqualFold(name, "Connection"):
			for _, opt := range strings.Split(value, ",") {
				switch opt = strings.TrimSpace(opt); {
				case strings.EqualFold(opt, "close"):
					r.close = true
				case strings.EqualFold(opt, "upgrade"):
					return r, false
				}
			}
		case strings.EqualFold(name, "Content-Length"):
			if value != "0" {
				return r, false // a body
			}
		case strings.EqualFold(name, "Transfer-Encoding"), strings.EqualFold(name, "Expect"),
			strings.EqualFold(name, "Upgrade"), strings.EqualFold(name, "Origin"),
			// The address the router would find behind a proxy.
			strings.EqualFold(name, "X-Forwarded-For"), strings.EqualFold(name, "X-Real-Ip"):
			return r, false
		}
	}
	if !host {
		return r, false
	}
	r.sessionID = queryValue(nil, query, "session_id")
	r.cursor = queryValue(nil, query, "cursor")
	r.timeout = queryValue(nil, query, "timeout")
	// The token as streamAuth finds it: bearer, then cookie, then query.
	if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
		r.token = strings.TrimSpace(auth[7:])
	}
	if r.token == "" && cookie != "" {
		return r, false
	}
	if r.token == "" {
		r.token = queryValue(nil, query, "access_token")
	}
	// A poll without its session or cursor is a client's first: it is
	// the router's (it may need the client's address).
	return r, r.token != "" && r.sessionID != "" && r.cursor != ""
}

// plainQuery reports whether a query is printable ASCII with no escapes,
// and short: queryValue reads it as url.ParseQuery would.
func plainQuery(q string) bool {
	if len(q) > 2048 {
		return false
	}
	for i := 0; i < len(q); i++ {
		if c := q[i]; c <= ' ' || c >= 0x7f || c == '%' || c == '+' || c == ';' || c == '#' {
			return false
		}
	}
	return true
}

// isToken reports whether s is a header name net/http accepts as it is.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// isFieldValue reports whether s has no control characters but tabs.
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
