package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
)

// Long-pollers' keep-alive connections are taken over from net/http.
//
// A long-poller makes one request per delivery, each on the connection of
// the last, and net/http's work around a request (parsing every header
// into a map, a context, a goroutine reading in the background while the
// handler waits, its buffers) cost more than the poll itself. So once a
// poll over plain HTTP/1.1 has been answered, its connection is hijacked
// and its next requests are served by a goroutine of the API's own
// (pollConn): it reads each request head into a small buffer, and serves a
// plain poll (GET /v1/events/poll with a bearer token, session_id and
// cursor, nothing unusual in its headers) itself, with the headers net/http
// and the middleware would have written.
//
// Anything else on that connection (another route, a body, an Origin, a
// token that fails, a poll that fails) is handed back to net/http with the
// bytes read so far (handBack), and is served as if it had arrived on a
// new connection. The fast path therefore only ever answers 200s that the
// full chain would have answered the same way; every error, and every rule
// of the middleware, stays where it is.

// pollHeadMax is the largest request head the fast path reads; a longer
// one is handed back (net/http allows up to MaxHeaderBytes).
const pollHeadMax = 4 << 10

// pollConns are the connections taken over, for shutdown.
type pollConns struct {
	// ctx ends the polls waiting on a taken-over connection (shutdown).
	ctx    context.Context
	cancel context.CancelFunc
	// back serves the connections handed back to net/http, from the
	// first.
	back      *handBack
	serveBack sync.Once
	// srv's IdleTimeout and ReadHeaderTimeout bound the wait for a next
	// request and for the rest of its head.
	srv  *http.Server
	open prometheus.Gauge

	mu    sync.Mutex
	conns map[*pollConn]struct{}
	// closing is set under mu (add reads it there) and read without it
	// on every poll.
	closing atomic.Bool
	wg      sync.WaitGroup
}

func newPollConns(srv *http.Server, open prometheus.Gauge) *pollConns {
	ctx, cancel := context.WithCancel(context.Background())
	return &pollConns{ctx: ctx, cancel: cancel, back: newHandBack(), srv: srv, open: open, conns: map[*pollConn]struct{}{}}
}

// add registers pc; false once shutting down.
func (p *pollConns) add(pc *pollConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing.Load() {
		return false
	}
	p.conns[pc] = struct{}{}
	p.wg.Add(1)
	p.open.Inc()
	return true
}

func (p *pollConns) remove(pc *pollConn) {
	p.mu.Lock()
	delete(p.conns, pc)
	p.mu.Unlock()
	p.open.Dec()
	p.wg.Done()
}

// shutdown ends every taken-over connection: a waiting poll answers at
// once with Connection: close, and a connection between polls is closed,
// as net/http closes its idle keep-alive connections. It is registered
// with http.Server.RegisterOnShutdown.
func (p *pollConns) shutdown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closing.Store(true)
	p.cancel()
	for pc := range p.conns {
		pc.nc.SetReadDeadline(time.Now()) //nolint:errcheck // closed already: nothing to wake
	}
}

func (p *pollConns) shuttingDown() bool { return p.closing.Load() }

// wait waits until every taken-over connection has closed, or for ctx.
func (p *pollConns) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pollConn is one taken-over connection.
type pollConn struct {
	s  *Server
	nc net.Conn
	// buf[off:n] is read and not yet served: the head of the next
	// request, perhaps more.
	buf    []byte
	off, n int
	// The deadlines last set: each moves only when less than half of its
	// span is left, not on every poll.
	readDeadline, writeDeadline time.Time
}

// takeOverPoll hijacks the connection of a poll just answered (and
// flushed) and serves its next requests. It reports false, the connection
// left to net/http, when that cannot be done.
func (s *Server) takeOverPoll(c *gin.Context) bool {
	// net/http's own writer: gin's refuses a hijack once a body is
	// written, and the answer is.
	w, ok := c.Writer.(interface{ Unwrap() http.ResponseWriter })
	if !ok {
		return false
	}
	if s.polls.shuttingDown() {
		return false
	}
	nc, rw, err := http.NewResponseController(w.Unwrap()).Hijack()
	if err != nil {
		return false
	}
	pc := &pollConn{s: s, nc: unwrapReplay(nc), buf: make([]byte, pollHeadMax)}
	if !s.polls.add(pc) {
		nc.Close() // shutting down since: the client polls another node
		return true
	}
	// What the client sent after this poll (a pipelined request) is the
	// start of the next: at most net/http's read buffer, pollHeadMax.
	if k := rw.Reader.Buffered(); k > 0 {
		pending, _ := rw.Reader.Peek(k)
		if k > len(pc.buf) {
			pc.buf = make([]byte, k)
		}
		pc.n = copy(pc.buf, pending)
	}
	go pc.serve()
	return true
}

// serve serves the connection's requests until it closes or is handed
// back.
func (pc *pollConn) serve() {
	defer pc.s.polls.remove(pc)
	// As the router's recoverer does: a panic costs this connection, not
	// the process.
	defer func() {
		if v := recover(); v != nil {
			pc.s.log.Error("panic", slog.String("path", pollRoute), slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
			pc.nc.Close()
		}
	}()
	for {
		head, ok := pc.readHead()
		if !ok {
			return
		}
		req, ok := parsePoll(head)
		if !ok {
			pc.handBack(pc.buf[pc.off:pc.n])
			return
		}
		if !pc.servePoll(&req, len(head)) {
			return
		}
	}
}

// readHead returns the next request's head (request line and header
// lines, each ending in CRLF, without the empty line), reading until it is
// all there. It reports false when the connection was closed or handed
// back instead.
func (pc *pollConn) readHead() (string, bool) {
	p := pc.s.polls
	begun := false // the head's ReadHeaderTimeout is running
	for {
		data := pc.buf[pc.off:pc.n]
		if end := headEnd(data); end >= 0 {
			return string(data[:end]), true
		} else if end == -2 {
			pc.handBack(data) // bare LFs: net/http's to judge
			return "", false
		}
		if pc.off > 0 { // room for the rest of the head
			pc.n = copy(pc.buf, data)
			pc.off = 0
		}
		if pc.n == len(pc.buf) {
			pc.handBack(pc.buf[:pc.n]) // a long head: net/http's
			return "", false
		}
		// Between requests the connection may idle for IdleTimeout; once
		// a head has begun, all of it must come within ReadHeaderTimeout
		// (set once: a client trickling bytes does not move it).
		now := time.Now()
		if pc.n > 0 {
			if !begun {
				begun = true
				pc.setReadDeadline(now.Add(p.srv.ReadHeaderTimeout))
			}
		} else if idle := p.srv.IdleTimeout; pc.readDeadline.Sub(now) < idle/2 {
			pc.setReadDeadline(now.Add(idle))
		}
		// After the deadline is set: a shutdown from now on moves it to
		// now, and the read below returns at once.
		if p.shuttingDown() {
			pc.nc.Close()
			return "", false
		}
		k, err := pc.nc.Read(pc.buf[pc.n:])
		pc.n += k
		if err != nil {
			pc.nc.Close() // gone, idle too long, or shutting down
			return "", false
		}
	}
}

func (pc *pollConn) setReadDeadline(t time.Time) {
	pc.readDeadline = t
	pc.nc.SetReadDeadline(t) //nolint:errcheck // a closed connection fails its read
}

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
	r.query = query
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

// servePoll serves one poll read by the fast path, whose head is headLen
// bytes at buf[off:]. It reports whether the connection goes on.
func (pc *pollConn) servePoll(req *pollRequest, headLen int) bool {
	s := pc.s
	start := time.Now()
	timeout, ok := pollTimeout(req.timeout)
	tok, err := s.tokens.parse(s.polls.ctx, req.token)
	var ans *events.PollAnswer
	if ok && err == nil {
		ans, err = s.broker.Poll(s.polls.ctx, events.PollRequest{
			UserID: tok.userID, UserAgent: req.userAgent, Client: pc, SessionID: req.sessionID,
			Cursor: req.cursor, Timeout: timeout,
		})
	}
	if !ok || err != nil {
		// A token that fails, a bad timeout, a poll that fails: the
		// router answers it, with the problem it always gives.
		pc.handBack(pc.buf[pc.off:pc.n])
		return false
	}
	pc.off += headLen + 2
	closing := req.close || s.polls.shuttingDown()
	id := req.requestID
	var idb [16]byte
	if id == "" || len(id) > 64 {
		var r [8]byte
		rand.Read(r[:])
		hex.Encode(idb[:], r[:])
		id = ""
	}
	body := pollBuffers.Get().(*bytes.Buffer)
	defer pollBuffers.Put(body)
	body.Reset()
	encodePoll(body, ans)
	bp := pollOut.Get().(*[]byte)
	b := (*bp)[:0]
	// What net/http writes for the router's answer: the middleware's
	// headers (securityHeaders, noStore, requestLog's id), then its own.
	b = append(b, "HTTP/1.1 200 OK\r\nCache-Control: no-store\r\nContent-Type: application/json; charset=utf-8\r\n"+
		"Referrer-Policy: no-referrer\r\nX-Content-Type-Options: nosniff\r\nX-Request-Id: "...)
	if id == "" {
		b = append(b, idb[:]...)
	} else {
		b = append(b, id...)
	}
	b = append(b, "\r\nDate: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(body.Len()), 10)
	if closing {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body.Bytes()...)
	if now := time.Now(); pc.writeDeadline.Sub(now) < s.cfg.WriteTimeout/2 {
		pc.writeDeadline = now.Add(s.cfg.WriteTimeout)
		pc.nc.SetWriteDeadline(pc.writeDeadline) //nolint:errcheck // a closed connection fails its write
	}
	_, werr := pc.nc.Write(b)
	if cap(b) <= maxPooled {
		*bp = b[:0]
		pollOut.Put(bp)
	}
	if ctx := s.polls.ctx; s.log.Enabled(ctx, slog.LevelDebug) {
		if id == "" {
			id = string(idb[:])
		}
		s.logRequest(ctx, slog.LevelDebug, requestLine{
			id: id, method: http.MethodGet, path: pollRoute, query: redactQuery(req.query), userID: tok.userID, start: start,
		}, http.StatusOK)
	}
	if werr != nil || closing {
		pc.nc.Close()
		return false
	}
	return true
}

// pollOut holds answers, head and body, while they are written.
var pollOut = sync.Pool{New: func() any { return new([]byte) }}

// ClientIP is the poller's address (for events.PollRequest): the fast path
// serves no request that came through a proxy.
func (pc *pollConn) ClientIP() string {
	host, _, err := net.SplitHostPort(pc.nc.RemoteAddr().String())
	if err != nil {
		return ""
	}
	return host
}

// handBack gives the connection back to net/http, which reads pending
// first, as if it had come in on a new connection.
func (pc *pollConn) handBack(pending []byte) {
	p := pc.s.polls
	// net/http sets the deadlines it wants; none of ours is left behind.
	pc.nc.SetDeadline(time.Time{}) //nolint:errcheck // a closed connection fails its next read
	pending = bytes.Clone(pending)
	// Served from the first hand-back on, when the server is set up and
	// serving: Serve reads the server's fields. A server shut down by then
	// closes the listener at once, and the connection with it.
	p.serveBack.Do(func() { go p.srv.Serve(p.back) }) //nolint:errcheck // ends with the server
	p.back.give(&replayConn{Conn: pc.nc, pending: pending})
}

// unwrapReplay returns the socket under a connection handed back to
// net/http and hijacked again, once net/http has read what it replayed:
// connections do not nest at each hand-back, and the stream pool gets the
// socket it writes to directly.
func unwrapReplay(nc net.Conn) net.Conn {
	if rc, ok := nc.(*replayConn); ok && len(rc.pending) == 0 {
		return rc.Conn
	}
	return nc
}

// handBack is the listener that hands connections back to net/http: the
// http.Server serves it beside its own listener.
type handBack struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandBack() *handBack {
	return &handBack{conns: make(chan net.Conn), done: make(chan struct{})}
}

// give has net/http serve c, or closes it when the server has stopped.
func (l *handBack) give(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}

func (l *handBack) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handBack) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handBack) Addr() net.Addr { return handBackAddr{} }

type handBackAddr struct{}

func (handBackAddr) Network() string { return "handback" }
func (handBackAddr) String() string  { return "handback" }

// replayConn is a connection whose first bytes were read already.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		if len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite lets net/http close the sending side first, as it does with
// a TCP connection it ends.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
