package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
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
	timeout := 25
	if v := c.Query("timeout"); v != "" {
		var err error
		if timeout, err = strconv.Atoi(v); err != nil || timeout < 0 || timeout > maxPollTimeout {
			problem(c, http.StatusBadRequest, CodeInvalidField, "timeout must be an integer from 0 to 60")
			return
		}
	}
	ans, err := s.broker.Poll(c.Request.Context(), events.PollRequest{
		UserID: userID(c), UserAgent: c.Request.UserAgent(), Client: c, SessionID: c.Query("session_id"),
		Cursor: c.Query("cursor"), Timeout: time.Duration(timeout) * time.Second,
	})
	if err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	// The answer may come a minute after the request: its write gets the
	// deadline any other response gets, from now.
	http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)) //nolint:errcheck // best effort
	buf := pollBuffers.Get().(*bytes.Buffer)
	defer pollBuffers.Put(buf)
	buf.Reset()
	encodePoll(buf, ans)
	c.Data(http.StatusOK, "application/json; charset=utf-8", buf.Bytes())
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
