package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/gin-gonic/gin"
)

// streamAuth authenticates the stream endpoints: the Authorization header,
// else the confab_token cookie (EventSource cannot send headers), else the
// access_token query parameter as a last resort (redacted from logs).
func (s *Server) streamAuth(c *gin.Context) {
	raw := bearerToken(c)
	if raw == "" {
		if ck, err := c.Cookie(tokenCookie); err == nil {
			raw = ck
		}
	}
	if raw == "" {
		raw = c.Query("access_token")
	}
	s.authenticate(c, raw)
}

// events serves GET /v1/events: the user's Server-Sent Events stream.
func (s *Server) events(c *gin.Context) {
	cursor := c.GetHeader("Last-Event-ID")
	if cursor == "" {
		cursor = c.Query("last_event_id")
	}
	start, reset, err := s.broker.Resume(c.Request.Context(), cursor)
	if err != nil {
		s.fail(c, err)
		return
	}
	ctx, uid := c.Request.Context(), userID(c)
	sessionID, closeSession, err := s.broker.OpenSession(ctx, uid, events.TransportSSE, c.Request.UserAgent())
	if err != nil {
		s.fail(c, err)
		return
	}
	defer closeSession()
	sub := s.broker.Subscribe(uid, start)
	defer sub.Close()
	open := s.broker.Metrics.Open.WithLabelValues(events.TransportSSE)
	open.Inc()
	defer open.Dec()

	w := newSSEWriter(c.Writer, s.cfg.StreamWriteTimeout)
	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if c.Request.ProtoMajor == 1 {
		// No chunked encoding: the body ends when the connection does,
		// as the EventSource spec suggests, and net/http writes each
		// flush as it is instead of framing it as a chunk.
		h.Set("Transfer-Encoding", "identity")
	}
	c.Status(http.StatusOK)
	// The server's ReadTimeout would end the stream: a stream reads nothing
	// after its headers.
	w.rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not supported by every writer; harmless

	marshal := func(v any) []byte { b, _ := json.Marshal(v); return b }
	w.retry(s.cfg.StreamRetry)
	// ready carries the cursor as its id too, so an EventSource that
	// reconnects by itself before any durable event resumes from here
	// rather than from whatever the head is then.
	w.id(start.String())
	w.event("", events.TypeReady, marshal(gin.H{"cursor": start.String(), "session_id": sessionID}))
	if reset {
		w.event("", events.TypeReset, marshal(gin.H{"cursor": start.String()}))
	}
	// Presence events only tell changes; a new stream first learns who is
	// online now.
	online, err := s.broker.OnlineContacts(ctx, uid)
	if err != nil {
		s.log.WarnContext(ctx, "presence snapshot", slog.Any("err", err))
	}
	// A group of a thousand is a thousand frames: build them in place and
	// flush as the buffer fills, so the snapshot costs no garbage per frame.
	var frame []byte
	for _, u := range online {
		frame = appendPresence(frame[:0], u)
		w.event("", events.TypePresence, frame)
		if w.buffered() >= flushAt && w.flush() != nil {
			return
		}
	}
	if w.flush() != nil {
		return
	}

	// A stream ends with its token; the client reconnects with a fresh one.
	exp, _ := c.Get(ctxTokenExp)
	expires := exp.(time.Time)
	// One timer serves the heartbeat and the token's expiry: an idle
	// stream keeps one timer, not two.
	wake := time.NewTimer(min(s.cfg.StreamHeartbeat, time.Until(expires)))
	defer wake.Stop()
	delivered := s.broker.Metrics.Delivered.WithLabelValues(events.TransportSSE)
	// spare is the small queue slice handed back to the subscription, so a
	// burst of a few events costs no allocation; a big one is let go.
	var spare []*events.Event
	for {
		select {
		case <-sub.Ready():
			evs := sub.Take(spare)
			if len(evs) == 0 {
				spare = evs
				continue
			}
			// Write everything already queued, then flush once.
			for _, ev := range evs {
				w.event(ev.ID, ev.Type, ev.Data)
				s.observe(ev, delivered)
			}
			clear(evs) // the events are not ours to keep alive
			spare = nil
			if cap(evs) <= maxSpare {
				spare = evs
			}
			sub.Received()
			if w.flush() != nil {
				return
			}
		case <-wake.C:
			left := time.Until(expires)
			if left <= 0 {
				return
			}
			w.comment("ping")
			if w.flush() != nil {
				return
			}
			wake.Reset(min(s.cfg.StreamHeartbeat, left))
		case <-sub.Done():
			return // slow consumer or shutdown: the client resumes elsewhere
		case <-ctx.Done():
			return
		}
	}
}

// maxSpare is the largest queue slice a stream keeps between bursts.
const maxSpare = 16

func (s *Server) observe(ev *events.Event, delivered interface{ Inc() }) {
	delivered.Inc()
	if ev.Durable() && !ev.At.IsZero() {
		s.broker.Metrics.Lag.Observe(time.Since(ev.At).Seconds())
	}
}

// sseWriter frames events per the WHATWG EventSource rules. Data is always
// one line of JSON (encoding/json escapes newlines), so a body holding "\n"
// or "event:" cannot break a frame.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// buf holds the frames until the next flush; it comes from sseBuffers
	// and goes back there, so an idle stream holds no buffer at all.
	buf     *bytes.Buffer
	timeout time.Duration
	// deadline is the write deadline last set on the connection.
	deadline time.Time
}

// sseBuffers are the streams' frame buffers, shared: thousands of idle
// streams must not each keep the buffer of their last burst.
var sseBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const (
	// flushAt is where a long run of frames (a presence snapshot) is
	// flushed before it is complete.
	flushAt = 16 << 10
	// maxPooled is the largest buffer given back to the pool.
	maxPooled = 256 << 10
)

func (w *sseWriter) b() *bytes.Buffer {
	if w.buf == nil {
		w.buf = sseBuffers.Get().(*bytes.Buffer)
	}
	return w.buf
}

func (w *sseWriter) buffered() int {
	if w.buf == nil {
		return 0
	}
	return w.buf.Len()
}

func newSSEWriter(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (w *sseWriter) retry(d time.Duration) {
	buf := w.b()
	buf.WriteString("retry: ")
	buf.Write(strconv.AppendInt(buf.AvailableBuffer(), d.Milliseconds(), 10))
	buf.WriteString("\n\n")
}

func (w *sseWriter) event(id string, typ string, data []byte) {
	buf := w.b()
	if id != "" {
		w.id(id)
	}
	buf.WriteString("event: ")
	buf.WriteString(typ)
	buf.WriteString("\ndata: ")
	// JSON from encoding/json has no raw newline; anything else gets one
	// data line per line.
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		buf.Write(line)
		if !more {
			break
		}
		buf.WriteString("\ndata: ")
		data = rest
	}
	buf.WriteString("\n\n")
}

// id writes an id line for the next event (durable events carry theirs
// through event).
func (w *sseWriter) id(id string) {
	buf := w.b()
	buf.WriteString("id: ")
	buf.WriteString(id)
	buf.WriteByte('\n')
}

func (w *sseWriter) comment(text string) {
	buf := w.b()
	buf.WriteString(": ")
	buf.WriteString(text)
	buf.WriteString("\n\n")
}

// flush writes what is buffered under a write deadline: a client that
// stops reading is cut off instead of holding the handler forever.
func (w *sseWriter) flush() error {
	buf := w.b()
	// Every write gets at least half the timeout: the deadline moves only
	// when less than that is left, not on every write (setting it was a
	// tenth of a busy stream's CPU).
	if now := time.Now(); w.deadline.Sub(now) < w.timeout/2 {
		w.deadline = now.Add(w.timeout)
		w.rc.SetWriteDeadline(w.deadline) //nolint:errcheck // best effort
	}
	_, err := w.w.Write(buf.Bytes())
	w.buf = nil
	if buf.Cap() <= maxPooled {
		buf.Reset()
		sseBuffers.Put(buf)
	}
	if err != nil {
		return err
	}
	return w.rc.Flush()
}

// appendPresence renders the snapshot's presence event for userID exactly
// as encoding/json renders {"user_id": id, "online": true} as a map.
func appendPresence(dst []byte, userID string) []byte {
	dst = append(dst, `{"online":true,"user_id":`...)
	plain := true
	for i := 0; i < len(userID) && plain; i++ {
		c := userID[i]
		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	if plain {
		dst = append(append(append(dst, '"'), userID...), '"')
	} else {
		q, _ := json.Marshal(userID)
		dst = append(dst, q...)
	}
	return append(dst, '}')
}
