package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/sse"
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
//
// A stream over plain HTTP/1.1 is taken over from net/http once its first
// frames are ready and served by the writer pool (package sse): an idle
// stream then holds no goroutine and no buffer. Over HTTP/2 (TLS), or with
// the pool off, the handler serves the stream itself until it ends.
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
	sub := s.broker.Subscribe(uid, start)
	s.openSSE.Inc()
	// ended undoes the stream's setup, whoever serves it.
	ended := func() {
		sub.Close()
		closeSession()
		s.openSSE.Dec()
	}

	h := c.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	first := sse.AppendRetry(nil, s.cfg.StreamRetry)
	// ready carries the cursor as its id too, so an EventSource that
	// reconnects by itself before any durable event resumes from here
	// rather than from whatever the head is then.
	first = sse.AppendID(first, start.String())
	first = sse.AppendEvent(first, "", events.TypeReady, marshal(gin.H{"cursor": start.String(), "session_id": sessionID}))
	if reset {
		first = sse.AppendEvent(first, "", events.TypeReset, marshal(gin.H{"cursor": start.String()}))
	}
	// Presence events only tell changes; a new stream first learns who is
	// online now.
	online, err := s.broker.OnlineContacts(ctx, uid)
	if err != nil {
		s.log.WarnContext(ctx, "presence snapshot", slog.Any("err", err))
	}
	var frame []byte
	for _, u := range online {
		frame = appendPresence(frame[:0], u)
		first = sse.AppendEvent(first, "", events.TypePresence, frame)
	}
	// A stream ends with its token; the client reconnects with a fresh one.
	exp, _ := c.Get(ctxTokenExp)
	expires := exp.(time.Time)

	if s.pool != nil && c.Request.ProtoMajor == 1 && c.Request.TLS == nil && s.takeOver(c, first, sub, expires, ended) {
		return
	}
	defer ended()
	s.serveStream(c, first, sub, expires)
}

func marshal(v any) []byte { b, _ := json.Marshal(v); return b }

// takeOver hijacks the stream's connection from net/http and hands it to
// the pool with the response head and the first frames. It reports false,
// having written nothing, when the connection cannot be taken over.
func (s *Server) takeOver(c *gin.Context, first []byte, sub *events.Subscription, expires time.Time, ended func()) bool {
	// Once hijacked, the connection is no longer net/http's to wait for
	// at shutdown: the pool waits for this handler instead.
	if !s.pool.Enter() {
		return false
	}
	// Bytes the client sent after its request (a pipelined request in
	// the returned reader) are dropped with net/http's buffers: a
	// stream's client has nothing more to say.
	nc, _, err := http.NewResponseController(c.Writer).Hijack()
	if err != nil {
		s.pool.Leave()
		return false
	}
	nc = unwrapReplay(nc) // a connection the poll fast path handed back

	// The body ends when the connection does (no chunked encoding), as
	// the EventSource spec suggests.
	h := c.Writer.Header()
	h.Set("Connection", "close")
	h.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	var head bytes.Buffer
	head.Grow(512 + len(first))
	head.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&head) //nolint:errcheck // a bytes.Buffer does not fail
	head.WriteString("\r\n")
	head.Write(first)

	// The request log's line would come now; the stream logs its own line
	// when it ends, with how long it lasted and why it ended.
	c.Set(ctxStreamLogged, true)
	began, _ := c.Get(ctxRequestStart)
	line := requestLine{
		id: requestID(c), method: c.Request.Method, path: c.Request.URL.Path,
		query: redactQuery(c.Request.URL.RawQuery), userID: userID(c), start: began.(time.Time),
	}
	s.pool.Serve(nc, head.Bytes(), sse.Stream{Sub: sub, Expires: expires, End: func(why error) {
		ended()
		reason := sse.Reason(why)
		s.broker.Metrics.StreamsEnded.WithLabelValues(reason).Inc()
		attrs := []slog.Attr{slog.String("ended", reason)}
		if reason == "error" {
			attrs = append(attrs, slog.Any("err", why))
		}
		s.logRequest(context.Background(), slog.LevelInfo, line, http.StatusOK, attrs...)
	}})
	return true
}

// serveStream writes the stream through net/http until it ends: over
// HTTP/2, or when streams are not served by the pool.
func (s *Server) serveStream(c *gin.Context, first []byte, sub *events.Subscription, expires time.Time) {
	w := newSSEWriter(c.Writer, s.cfg.StreamWriteTimeout)
	if c.Request.ProtoMajor == 1 {
		// No chunked encoding: the body ends when the connection does,
		// and net/http writes each flush as it is instead of framing it
		// as a chunk.
		c.Writer.Header().Set("Transfer-Encoding", "identity")
	}
	c.Status(http.StatusOK)
	// The server's ReadTimeout would end the stream: a stream reads nothing
	// after its headers.
	w.rc.SetReadDeadline(time.Time{}) //nolint:errcheck // not supported by every writer; harmless
	w.buf = append(w.b(), first...)
	if w.flush() != nil {
		return
	}
	// One timer serves the heartbeat and the token's expiry: an idle
	// stream keeps one timer, not two.
	wake := time.NewTimer(min(s.cfg.StreamHeartbeat, time.Until(expires)))
	defer wake.Stop()
	ctx := c.Request.Context()
	// spare is the small queue slice handed back to the subscription, so a
	// burst of a few events costs no allocation; a big one is let go.
	var spare []*events.Event
	ready, done := sub.Ready(), sub.Done()
	for {
		select {
		case <-ready:
			evs := sub.Take(spare)
			if len(evs) == 0 {
				spare = evs
				continue
			}
			// Write everything already queued, then flush once.
			buf := w.b()
			for _, ev := range evs {
				buf = sse.AppendEvent(buf, ev.ID, ev.Type, ev.Data)
				s.delivered(ev)
			}
			w.buf = buf
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
			w.buf = sse.AppendComment(w.b(), "ping")
			if w.flush() != nil {
				return
			}
			wake.Reset(min(s.cfg.StreamHeartbeat, left))
		case <-done:
			return // slow consumer or shutdown: the client resumes elsewhere
		case <-ctx.Done():
			return
		}
	}
}

// maxSpare is the largest queue slice a stream keeps between bursts.
const maxSpare = 16

// delivered counts an event written to a stream.
func (s *Server) delivered(ev *events.Event) {
	s.deliveredSSE.Inc()
	if ev.Durable() && !ev.At.IsZero() {
		s.broker.Metrics.Lag.Observe(time.Since(ev.At).Seconds())
	}
}

// sseWriter writes a stream served by its handler: frames go to a buffer
// and each flush writes them under a write deadline.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
	// buf holds the frames until the next flush; it comes from sseBuffers
	// and goes back there, so an idle stream holds no buffer at all.
	buf     []byte
	timeout time.Duration
	// deadline is the write deadline last set on the connection.
	deadline time.Time
}

// sseBuffers are the streams' frame buffers, shared: thousands of idle
// streams must not each keep the buffer of their last burst.
var sseBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooled is the largest buffer given back to the pool.
const maxPooled = 256 << 10

func (w *sseWriter) b() []byte {
	if w.buf == nil {
		w.buf = (*sseBuffers.Get().(*[]byte))[:0]
	}
	return w.buf
}

func newSSEWriter(w http.ResponseWriter, timeout time.Duration) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
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
	_, err := w.w.Write(buf)
	w.buf = nil
	if cap(buf) <= maxPooled {
		buf = buf[:0]
		sseBuffers.Put(&buf)
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
