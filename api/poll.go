package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/gin-gonic/gin"
)

const maxPollTimeout = 60

// pollRoute is the long-poll endpoint as gin names its route (FullPath),
// for requestLog; TestPollLogging fails if the two part.
const pollRoute = "/v1/events/poll"

// poll serves GET /v1/events/poll: the long-poll transport. The wait, the
// session and the cursor are the real-time core's (events.Broker.Poll);
// the handler parses the request and writes the answer.
func (s *Server) poll(c *gin.Context) {
	raw := c.Request.URL.RawQuery
	timeout, ok := pollTimeout(queryValue(c, raw, "timeout"))
	if !ok {
		problem(c, http.StatusBadRequest, CodeInvalidField, "timeout must be an integer from 0 to 60")
		return
	}
	ans, err := s.broker.Poll(c.Request.Context(), events.PollRequest{
		UserID: userID(c), UserAgent: c.Request.UserAgent(), Client: c, SessionID: queryValue(c, raw, "session_id"),
		Cursor: queryValue(c, raw, "cursor"), Timeout: timeout,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	// The answer may come a minute after the request: its write gets the
	// deadline any other response gets, from now (or at least half of it).
	s.answerDeadline(c)
	buf := pollBuffers.Get().(*bytes.Buffer)
	defer pollBuffers.Put(buf)
	buf.Reset()
	encodePoll(buf, ans)
	// Cache-Control: no-store is noStore's, as for every /v1 response.
	h := c.Writer.Header()
	h["Content-Type"] = jsonContentType
	takeOver := s.polls != nil && s.pollsFast(c, raw)
	if takeOver {
		// Framed by its length, so that the connection is the client's
		// next request's once the answer is flushed.
		h["Content-Length"] = []string{strconv.Itoa(buf.Len())}
	}
	c.Status(http.StatusOK)
	c.Writer.Write(buf.Bytes()) //nolint:errcheck // the client went away
	if takeOver && http.NewResponseController(c.Writer).Flush() == nil {
		s.takeOverPoll(c)
	}
}

// pollsFast reports whether the poller's next polls on this connection
// will be served by the fast path (pollconn.go), so that taking the
// connection over pays: a client that carries its session on plain
// HTTP/1.1, with a bearer or query token and no Origin or proxy headers
// (those polls would be handed back every time).
func (s *Server) pollsFast(c *gin.Context, raw string) bool {
	r := c.Request
	// A request with a body (or one announced) may leave bytes net/http
	// has not read: they are not the start of the next request.
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.TLS != nil || r.Close || r.ContentLength != 0 || r.TransferEncoding != nil || r.Header["Expect"] != nil || !plainQuery(raw) ||
		queryValue(c, raw, "session_id") == "" || queryValue(c, raw, "cursor") == "" {
		return false
	}
	h := r.Header
	if h.Get("Origin") != "" || h.Get("X-Forwarded-For") != "" || h.Get("X-Real-Ip") != "" {
		return false
	}
	return bearerToken(c) != "" || (h.Get("Cookie") == "" && queryValue(c, raw, "access_token") != "")
}

// pollTimeout reads a poll's timeout parameter ("": the default, 25 s);
// ok is false unless it is an integer from 0 to maxPollTimeout.
func pollTimeout(v string) (d time.Duration, ok bool) {
	if v == "" {
		return 25 * time.Second, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxPollTimeout {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// connStateKey holds a connection's *connState in its context (see
// Server.HTTPServer).
type connStateKey struct{}

// connState is what the API remembers of an HTTP/1.1 connection between
// its requests, which it serves one at a time.
type connState struct {
	// writeDeadline is the write deadline a poll last set on it.
	writeDeadline time.Time
}

// answerDeadline gives a poll's answer its write deadline. Setting one
// costs a lock and a timer change in the runtime's poller, and a poller
// makes one request per delivery on the same connection: the deadline a
// previous poll set is kept while at least half of WriteTimeout is left.
// Nothing sets an earlier one on a connection that serves another request
// after it (writeDeadline sets a later one; a stream's connection ends
// with the stream). HTTP/2 streams share their connection's context and
// have deadlines of their own: theirs is set every time.
func (s *Server) answerDeadline(c *gin.Context) {
	now := time.Now()
	cs, _ := c.Request.Context().Value(connStateKey{}).(*connState)
	if cs != nil && c.Request.ProtoMajor == 1 {
		if cs.writeDeadline.Sub(now) >= s.cfg.WriteTimeout/2 {
			return
		}
		cs.writeDeadline = now.Add(s.cfg.WriteTimeout)
	}
	http.NewResponseController(c.Writer).SetWriteDeadline(now.Add(s.cfg.WriteTimeout)) //nolint:errcheck // best effort
}

// jsonContentType is the Content-Type of a poll's answer, one slice for
// every answer: net/http copies a response's header values when it
// writes them, and nothing changes them in place.
var jsonContentType = []string{"application/json; charset=utf-8"}

// queryValue is c.Query(key) without the map gin parses the query into:
// for a query without escapes (what clients send a poll), the value is a
// substring of raw. Anything else is gin's, which parses it as
// url.ParseQuery does.
func queryValue(c *gin.Context, raw, key string) string {
	if strings.ContainsAny(raw, "%+;") || strings.Count(raw, "&") >= 10000 {
		return c.Query(key) // 10,000: url.ParseQuery's limit
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if k, v, _ := strings.Cut(pair, "="); k == key {
			return v
		}
	}
	return ""
}

// pollBuffers hold answers while they are written.
var pollBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encodePoll writes a poll's answer as encoding/json would, the events'
// data verbatim: it is JSON already (the SSE stream writes it as it is
// too), and encoding/json re-validated and compacted every event's data of
// every answer, a tenth of a long-poller's CPU.
func encodePoll(buf *bytes.Buffer, r *events.PollAnswer) {
	b := buf.AvailableBuffer()
	b = append(b, `{"events":[`...)
	for i, ev := range r.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"position":`...)
		b = appendJSONString(b, ev.ID)
		b = append(b, `,"type":`...)
		b = appendJSONString(b, ev.Type)
		b = append(b, `,"data":`...)
		if len(ev.Data) == 0 {
			b = append(b, "null"...)
		} else {
			b = append(b, ev.Data...)
		}
		b = append(b, '}')
	}
	b = append(b, `],"cursor":`...)
	b = appendJSONString(b, r.Cursor)
	b = append(b, `,"typing":`...)
	if len(r.Typing) == 0 {
		b = append(b, "[]"...)
	} else {
		typing, _ := json.Marshal(r.Typing)
		b = append(b, typing...)
	}
	b = append(b, `,"reset":`...)
	b = strconv.AppendBool(b, r.Reset)
	b = append(b, `,"session_id":`...)
	b = appendJSONString(b, r.SessionID)
	b = append(b, '}')
	buf.Write(b)
}

// appendJSONString appends s as a JSON string, as encoding/json writes it.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
