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

// maxPollBatch bounds the events one poll answer waits for; the client
// polls again from the returned cursor for the rest.
const maxPollBatch = 500

type pollEvent struct {
	Seq  int64           `json:"seq"`
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

type pollResponse struct {
	Events    []pollEvent     `json:"events"`
	Cursor    int64           `json:"cursor"`
	Typing    []events.Typing `json:"typing"`
	Reset     bool            `json:"reset"`
	SessionID string          `json:"session_id"`
}

// poll serves GET /v1/events/poll: the long-poll transport. It answers at
// once when events after the cursor exist, else waits up to timeout seconds;
// a typing change also answers early so pollers see indicators.
//
// A poller that carries its session_id from poll to poll keeps one
// subscription across its polls (events.PollFeed): a poll that continues
// where the session's last answer ended reads nothing from the database.
// Any other poll checks its cursor against the stream's bounds first.
func (s *Server) poll(c *gin.Context) {
	cursor, given, err := parseCursor(c.Query("cursor"))
	if err != nil {
		problem(c, http.StatusBadRequest, CodeInvalidCursor, "cursor must be a non-negative integer")
		return
	}
	timeout := 25
	if v := c.Query("timeout"); v != "" {
		if timeout, err = strconv.Atoi(v); err != nil || timeout < 0 || timeout > maxPollTimeout {
			problem(c, http.StatusBadRequest, CodeInvalidField, "timeout must be an integer from 0 to 60")
			return
		}
	}
	ctx, uid := c.Request.Context(), userID(c)
	asked := c.Query("session_id")
	sessionID, done, err := s.broker.PollSession(ctx, uid, asked, c.Request.UserAgent())
	if err != nil {
		s.fail(c, err)
		return
	}
	defer done()
	// A poll that goes on with its session may find the feed the session's
	// last poll kept. A session that ended takes its feed with it: the
	// poll starts afresh.
	var feed *events.PollFeed
	if given {
		feed = s.broker.TakePollFeed(asked, uid, cursor)
	}
	if feed != nil && sessionID != asked {
		feed.Close()
		feed = nil
	}
	// Whatever path the poll takes, a feed it holds is kept or closed.
	defer func() {
		if feed != nil {
			feed.Close()
		}
	}()
	start, last, reset := cursor, cursor, false
	if feed == nil {
		var ok bool
		if start, last, reset, ok = s.startCursor(c, cursor, given); !ok {
			return
		}
	}
	out := pollResponse{Events: []pollEvent{}, Cursor: start, Reset: reset, SessionID: sessionID}
	if given && !reset {
		wait := time.Duration(timeout) * time.Second
		if start < last {
			// Events exist: answer as soon as the hub hands them over,
			// whatever the timeout.
			wait = max(wait, 10*time.Second)
		}
		if feed == nil {
			feed = s.broker.NewPollFeed(uid, start)
		}
		out.Events, out.Cursor = s.wait(c, feed, start, wait, last)
		// Back in its slot before the answer is written: the client asks
		// again as soon as it reads it. Only a client that came back with
		// its session shows it will; the feed of any other poll (a
		// one-off catch-up, a client without session_id) is closed.
		if sessionID == asked {
			s.broker.KeepPollFeed(sessionID, feed)
			feed = nil
		}
	}
	if out.Typing, err = s.broker.TypingFor(ctx, uid); err != nil {
		s.fail(c, err)
		return
	}
	c.Header("Cache-Control", "no-store")
	// The answer may come a minute after the request: its write gets a
	// deadline of its own, like a stream's.
	http.NewResponseController(c.Writer).SetWriteDeadline(time.Now().Add(s.cfg.StreamWriteTimeout)) //nolint:errcheck // best effort
	buf := pollBuffers.Get().(*bytes.Buffer)
	defer pollBuffers.Put(buf)
	buf.Reset()
	out.encode(buf)
	c.Data(http.StatusOK, "application/json; charset=utf-8", buf.Bytes())
}

// pollBuffers hold answers while they are written.
var pollBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode writes r as encoding/json would, the events' data verbatim: it is
// JSON already (the SSE stream writes it as it is too), and encoding/json
// re-validated and compacted every event's data of every answer, a tenth
// of a long-poller's CPU.
func (r *pollResponse) encode(buf *bytes.Buffer) {
	b := buf.AvailableBuffer()
	b = append(b, `{"events":[`...)
	for i, ev := range r.Events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"seq":`...)
		b = strconv.AppendInt(b, ev.Seq, 10)
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
	b = strconv.AppendInt(b, r.Cursor, 10)
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

// wait collects the events after cursor, waiting up to timeout for the
// first one; it shares the hub's subscription path with the SSE stream.
// head is the stream's last seq when the poll began, if known (else the
// cursor): events up to it exist, so the answer waits for them (a typing
// change does not answer first).
func (s *Server) wait(c *gin.Context, f *events.PollFeed, cursor int64, timeout time.Duration, head int64) ([]pollEvent, int64) {
	out := []pollEvent{}
	// What the session's earlier polls read but the client has not
	// acknowledged yet (an answer lost on its way) comes first.
	for _, ev := range f.Backlog(cursor) {
		if len(out) == maxPollBatch {
			return out, cursor
		}
		out = append(out, pollEvent{Seq: ev.Seq, Type: ev.Type, Data: ev.Data})
		cursor = ev.Seq
	}
	open := s.broker.Metrics.Open.WithLabelValues(events.TransportLongPoll)
	open.Inc()
	defer open.Dec()
	delivered := s.broker.Metrics.Delivered.WithLabelValues(events.TransportLongPoll)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(out) < maxPollBatch {
		var ev *events.Event
		// What is queued already is taken before anything else, so a poll
		// with timeout 0 answers with it rather than racing its timer.
		select {
		case ev = <-f.Events():
		default:
			if len(out) > 0 && cursor >= head {
				return out, cursor
			}
			if timer == nil {
				timer = time.NewTimer(timeout)
			}
			// Everything up to the head known when the poll began is
			// committed: wait for it (the hub may hand it over in more than
			// one batch).
			select {
			case ev = <-f.Events():
			case <-timer.C:
				return out, cursor
			case <-f.Done():
				return out, cursor
			case <-c.Request.Context().Done():
				return out, cursor
			}
		}
		f.Received()
		switch {
		case ev.Seq > 0:
			// Kept in the feed before anything else can end the poll: an
			// event read is never dropped.
			f.Took(ev)
			out = append(out, pollEvent{Seq: ev.Seq, Type: ev.Type, Data: ev.Data})
			cursor = ev.Seq
			s.observe(ev, delivered)
		case ev.Type == events.TypeTyping && cursor >= head:
			// The answer carries the typing state. While events are on
			// their way it waits for them, and carries typing too.
			return out, cursor
		}
		// Presence is not part of the poll answer.
	}
	return out, cursor
}
