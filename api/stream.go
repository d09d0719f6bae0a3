package api

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
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

// parseCursor reads a resume position; ok is false when none was given.
func parseCursor(values ...string) (cursor int64, ok bool, err error) {
	for _, v := range values {
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, false, strconv.ErrSyntax
		}
		return n, true, nil
	}
	return 0, false, nil
}

// startCursor decides where a stream or poll starts: the head when no
// cursor was given, the cursor when it can be continued, else the head with
// reset set, so the client reloads state instead of silently missing events.
func (s *Server) startCursor(c *gin.Context, cursor int64, given bool) (start, last int64, reset, ok bool) {
	first, last, err := s.broker.Bounds(c.Request.Context(), userID(c))
	if err != nil {
		s.fail(c, err)
		return 0, 0, false, false
	}
	if !given {
		return last, last, false, true
	}
	if cursor < first-1 || cursor > last {
		return last, last, true, true
	}
	return cursor, last, false, true
}

// events serves GET /v1/events: the user's Server-Sent Events stream.
func (s *Server) events(c *gin.Context) {
	cursor, given, err := parseCursor(c.GetHeader("Last-Event-ID"), c.Query("last_event_id"))
	if err != nil {
		problem(c, http.StatusBadRequest, CodeInvalidCursor, "Last-Event-ID / last_event_id must be a non-negative integer")
		return
	}
	start, _, reset, ok := s.startCursor(c, cursor, given)
	if !ok {
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
	c.Status(http.StatusOK)
	// The server's ReadTimeout would end the stream: a stream reads nothing
	// after its headers.
	w.rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not supported by every writer; harmless

	marshal := func(v any) []byte { b, _ := json.Marshal(v); return b }
	w.retry(s.cfg.StreamRetry)
	w.event(0, events.TypeReady, marshal(gin.H{"cursor": start, "session_id": sessionID}))
	if reset {
		w.event(0, events.TypeReset, marshal(gin.H{"cursor": start}))
	}
	// Presence events only tell changes; a new stream first learns who is
	// online now.
	online, err := s.broker.OnlineContacts(ctx, uid)
	if err != nil {
		s.log.WarnContext(ctx, "presence snapshot", slog.Any("err", err))
	}
	for _, u := range online {
		w.event(0, events.TypePresence, marshal(gin.H{"user_id": u, "online": true}))
	}
	if w.flush() != nil {
		return
	}

	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	// A stream ends with its token; the client reconnects with a fresh one.
	exp, _ := c.Get(ctxTokenExp)
	expiry := time.NewTimer(time.Until(exp.(time.Time)))
	defer expiry.Stop()
	delivered := s.broker.Metrics.Delivered.WithLabelValues(events.TransportSSE)
	for {
		select {
		case ev := <-sub.Events():
			// Write everything already queued, then flush once.
			for {
				w.event(ev.Seq, ev.Type, ev.Data)
				s.observe(ev, delivered)
				select {
				case ev = <-sub.Events():
					continue
				default:
				}
				break
			}
			sub.Received()
			if w.flush() != nil {
				return
			}
		case <-heartbeat.C:
			w.comment("ping")
			if w.flush() != nil {
				return
			}
		case <-sub.Done():
			return // slow consumer or shutdown: the client resumes elsewhere
		case <-expiry.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

func (s *Server) observe(ev *events.Event, delivered interface{ Inc() }) {
	delivered.Inc()
	if ev.Seq > 0 && !ev.At.IsZero() {
		s.broker.Metrics.Lag.Observe(time.Since(ev.At).Seconds())
	}
}

// sseWriter frames events per the WHATWG EventSource rules. Data is always
// one line of JSON (encoding/json escapes newlines), so a body holding "\n"
// or "event:" cannot break a frame.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	buf     bytes.Buffer
	timeout time.Duration
}

func newSSEWriter(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
}

func (w *sseWriter) retry(d time.Duration) {
	w.buf.WriteString("retry: ")
	w.buf.Write(strconv.AppendInt(w.buf.AvailableBuffer(), d.Milliseconds(), 10))
	w.buf.WriteString("\n\n")
}

func (w *sseWriter) event(id int64, typ string, data []byte) {
	if id > 0 {
		w.buf.WriteString("id: ")
		w.buf.Write(strconv.AppendInt(w.buf.AvailableBuffer(), id, 10))
		w.buf.WriteByte('\n')
	}
	w.buf.WriteString("event: ")
	w.buf.WriteString(typ)
	w.buf.WriteString("\ndata: ")
	// JSON from encoding/json has no raw newline; anything else gets one
	// data line per line.
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		w.buf.Write(line)
		if !more {
			break
		}
		w.buf.WriteString("\ndata: ")
		data = rest
	}
	w.buf.WriteString("\n\n")
}

func (w *sseWriter) comment(text string) {
	w.buf.WriteString(": ")
	w.buf.WriteString(text)
	w.buf.WriteString("\n\n")
}

// keepBuffer is the largest buffer an idle stream keeps between flushes: a
// burst (a presence snapshot, a backlog) must not pin its peak for the
// stream's lifetime, thousands of streams over.
const keepBuffer = 8 << 10

// flush writes what is buffered under a per-write deadline: a client that
// stops reading is cut off instead of holding the handler forever.
func (w *sseWriter) flush() error {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout)) //nolint:errcheck // best effort
	_, err := w.w.Write(w.buf.Bytes())
	if w.buf.Cap() > keepBuffer {
		w.buf = bytes.Buffer{}
	} else {
		w.buf.Reset()
	}
	if err != nil {
		return err
	}
	return w.rc.Flush()
}
