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
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/poller"
	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

// Long-pollers' keep-alive connections are taken over from net/http.
//
// A long-poller makes one request per delivery, each on the connection of
// the last, and net/http's work around a request (parsing every header
// into a map, a context, a goroutine reading in the background while the
// handler waits, its buffers) cost more than the poll itself. So once a
// poll over plain HTTP/1.1 has been answered, its connection is hijacked
// and served like a pooled stream (sse.Pool): no goroutine of its own.
// An epoll set (poller.Set) says when its next request arrives; one of a
// few workers reads the head into the connection's small buffer and
// serves a plain poll (GET /v1/events/poll with a bearer token,
// session_id and cursor, nothing unusual in its headers) itself, with the
// headers net/http and the middleware would have written. A poll that
// must wait registers with its subscription (events.PendingPoll), which
// queues the connection for a worker when events come; the workers write
// the answers of a fan-out one after another, as they write streams.
//
// A poll that needs more than memory (an unknown token, a feed the
// session did not keep, somebody typing) is served on a goroutine of its
// own, as net/http would. Anything else on that connection (another
// route, a body, an Origin, a token that fails, a poll that fails) is
// handed back to net/http with the bytes read so far (handBack), and is
// served as if it had arrived on a new connection. The fast path
// therefore only ever answers 200s that the full chain would have
// answered the same way; every error, and every rule of the middleware,
// stays where it is.

// pollHeadMax is the largest request head the fast path reads; a longer
// one is handed back (net/http allows up to MaxHeaderBytes).
const pollHeadMax = 4 << 10

// pollLoop serves the connections taken over.
type pollLoop struct {
	s *Server
	// srv's IdleTimeout and ReadHeaderTimeout bound the wait for a next
	// request and for the rest of its head.
	srv *http.Server
	set *poller.Set
	// readSock is the set's goroutine's Socket (see readableNow).
	readSock *poller.Socket
	open     prometheus.Gauge
	// ctx ends the polls served on goroutines of their own at shutdown.
	ctx    context.Context
	cancel context.CancelFunc
	// back serves the connections handed back to net/http, from the
	// first.
	back      *handBack
	serveBack sync.Once
	// The workers start with the first connection and stop once every
	// connection has closed after shutdown.
	start, stopping sync.Once
	stop            chan struct{}
	workers         sync.WaitGroup

	// queue holds the connections for the workers to serve.
	queue *poller.Queue[*pollConn]

	mu    sync.Mutex
	conns map[*pollConn]struct{}
	// closing is set under mu (add reads it there) and read without it
	// on every poll.
	closing atomic.Bool
	done    sync.WaitGroup // the connections
}

// newPollLoop makes the loop for srv, or fails where the platform has no
// poller.Set: polls are then all net/http's.
func newPollLoop(s *Server, srv *http.Server) (*pollLoop, error) {
	set, err := poller.New()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &pollLoop{s: s, srv: srv, set: set, readSock: poller.NewSocket(), open: s.broker.Metrics.PollConns, ctx: ctx, cancel: cancel,
		back: newHandBack(), stop: make(chan struct{}), queue: poller.NewQueue[*pollConn](), conns: map[*pollConn]struct{}{}}
	return l, nil
}

func (l *pollLoop) run() {
	for range runtime.GOMAXPROCS(0) {
		l.workers.Go(l.work)
	}
	l.workers.Go(l.set.Run)
	l.workers.Go(l.sweep)
}

// add registers pc; false once shutting down.
func (l *pollLoop) add(pc *pollConn) bool {
	l.start.Do(l.run)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing.Load() {
		return false
	}
	l.conns[pc] = struct{}{}
	l.done.Add(1)
	l.open.Inc()
	return true
}

func (l *pollLoop) remove(pc *pollConn) {
	l.mu.Lock()
	delete(l.conns, pc)
	l.mu.Unlock()
	l.open.Dec()
	l.done.Done()
}

// len is how many connections the loop serves.
func (l *pollLoop) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// shutdown ends every taken-over connection: a waiting poll answers at
// once with Connection: close, and a connection between polls is closed,
// as net/http closes its idle keep-alive connections. It is registered
// with http.Server.RegisterOnShutdown.
func (l *pollLoop) shutdown() {
	l.mu.Lock()
	l.closing.Store(true)
	l.cancel()
	open := make([]*pollConn, 0, len(l.conns))
	for pc := range l.conns {
		open = append(open, pc)
	}
	l.mu.Unlock()
	for _, pc := range open {
		pc.wake()
	}
}

// wait waits until every taken-over connection has closed, then stops the
// workers, or for ctx.
func (l *pollLoop) wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		l.done.Wait()
		l.stopping.Do(func() {
			l.queue.Close()
			close(l.stop)
			l.set.Close()
			l.workers.Wait()
		})
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// work is a worker goroutine.
func (l *pollLoop) work() {
	sock := poller.NewSocket()
	var todo []*pollConn
	for {
		todo = l.queue.Next(todo) // none once the loop has stopped
		if len(todo) == 0 {
			return
		}
		for i, pc := range todo {
			pc.run(sock)
			todo[i] = nil
		}
	}
}

// sweep closes the connections whose client kept them idle, or took too
// long over a request head, past the server's timeouts: it wakes each
// connection past its deadline, which its worker then closes.
func (l *pollLoop) sweep() {
	every := min(l.idleTimeout(), l.headerTimeout())
	if every <= 0 {
		every = max(l.idleTimeout(), l.headerTimeout())
	}
	if every <= 0 {
		return // no timeouts
	}
	t := time.NewTicker(min(max(every/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	var due []*pollConn
	for {
		select {
		case <-l.stop:
			return
		case now := <-t.C:
			due = due[:0]
			l.mu.Lock()
			for pc := range l.conns {
				if d := pc.deadline.Load(); d != 0 && now.UnixNano() >= d {
					due = append(due, pc)
				}
			}
			l.mu.Unlock()
			for i, pc := range due {
				pc.wake()
				due[i] = nil
			}
		}
	}
}

// idleTimeout and headerTimeout are net/http's, as it reads them.
func (l *pollLoop) idleTimeout() time.Duration {
	if l.srv.IdleTimeout != 0 {
		return l.srv.IdleTimeout
	}
	return l.srv.ReadTimeout
}

func (l *pollLoop) headerTimeout() time.Duration {
	if l.srv.ReadHeaderTimeout != 0 {
		return l.srv.ReadHeaderTimeout
	}
	return l.srv.ReadTimeout
}

// A connection's state, under pollConn.mu.
const (
	connIdle   = iota // waits for bytes, or for its poll's events
	connQueued        // on the workers' queue
	connBusy          // a worker, or a goroutine of its own, serves it
	connGone          // closed or handed back
)

// pollConn is one taken-over connection.
type pollConn struct {
	loop *pollLoop
	nc   net.Conn
	raw  syscall.RawConn
	key  uint64 // in loop.set
	// wakeFn is wake, made once: the subscription and the timer take it
	// on every poll.
	wakeFn func()

	mu    sync.Mutex
	state uint8
	// readable: bytes may have come since the last read; woken: the
	// waiting poll's events or timer, a deadline or shutdown.
	readable, woken bool

	// deadline is when the sweeper wakes the connection to close it, in
	// Unix nanoseconds (0: none, while a poll is served).
	deadline atomic.Int64

	// The rest is the holder's (connBusy).

	// buf[off:n] is read and not yet served: the head of the next
	// request, perhaps more.
	buf    []byte
	off, n int
	// begun: a head has begun, and its ReadHeaderTimeout runs.
	begun bool
	// The poll being served: its request, user and start.
	poll  *events.PendingPoll
	req   pollRequest
	user  string
	start time.Time
	// ends is when the waiting poll times out; timer wakes it then.
	ends  time.Time
	timer *time.Timer
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
	l := s.polls
	if l.closing.Load() {
		return false
	}
	nc, rw, err := http.NewResponseController(w.Unwrap()).Hijack()
	if err != nil {
		return false
	}
	// What the client sent after this poll (a pipelined request) is the
	// start of the next: what net/http's reader holds, then what a
	// connection handed back still had to replay.
	pending, _ := rw.Reader.Peek(rw.Reader.Buffered())
	if rc, ok := nc.(*replayConn); ok {
		pending = append(bytes.Clone(pending), rc.pending...)
		nc = rc.Conn
	}
	pc := &pollConn{loop: l, nc: nc, buf: make([]byte, max(pollHeadMax, len(pending)))}
	pc.n = copy(pc.buf, pending)
	pc.wakeFn = pc.wake
	sc, ok := nc.(syscall.Conn)
	if ok {
		pc.raw, err = sc.SyscallConn()
	}
	if !ok || err != nil || !l.add(pc) {
		nc.Close() // shutting down: the client polls another node
		return true
	}
	// Queued before the poller knows it: served first for what is
	// pending.
	pc.state, pc.woken = connQueued, true
	pc.setDeadline(time.Now(), l.idleTimeout())
	if pc.key, err = l.set.Add(pc.raw, pc.readableNow); err != nil {
		pc.close()
		return true
	}
	l.queue.Push(pc)
	return true
}

// readableNow is the poller.Set's call, on its goroutine: bytes came, or
// the client closed or reset the connection. An idle connection is served
// there and then: its next request is read and started (or answered)
// without waking a worker.
func (pc *pollConn) readableNow() {
	pc.mu.Lock()
	pc.readable = true
	if pc.state != connIdle {
		pc.mu.Unlock()
		return // its holder looks when it is done
	}
	pc.state = connQueued
	pc.mu.Unlock()
	pc.run(pc.loop.readSock)
}

// wake is the call of the waiting poll's subscription and timer, the
// sweeper and shutdown: the connection is to be looked at.
func (pc *pollConn) wake() { pc.signal(false) }

func (pc *pollConn) signal(readable bool) {
	pc.mu.Lock()
	if readable {
		pc.readable = true
	} else {
		pc.woken = true
	}
	if pc.state != connIdle {
		pc.mu.Unlock()
		return // its holder looks when it is done
	}
	pc.state = connQueued
	pc.mu.Unlock()
	pc.loop.queue.Push(pc)
}

// run serves a queued connection on a worker.
func (pc *pollConn) run(sock *poller.Socket) {
	pc.mu.Lock()
	if pc.state != connQueued {
		pc.mu.Unlock()
		return
	}
	pc.state = connBusy
	readable := pc.readable
	pc.readable, pc.woken = false, false
	pc.mu.Unlock()
	// As the router's recoverer does: a panic costs this connection, not
	// the process.
	defer func() {
		if v := recover(); v != nil {
			pc.loop.s.log.Error("panic", slog.String("path", pollRoute), slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
			pc.close()
		}
	}()
	if pc.step(sock, readable) {
		pc.release()
	}
}

// release gives the connection back after its holder is done with it:
// queued again if something happened meanwhile, else idle.
func (pc *pollConn) release() {
	pc.mu.Lock()
	switch {
	case pc.state != connBusy:
	case pc.readable || pc.woken:
		pc.state = connQueued
		pc.mu.Unlock()
		pc.loop.queue.Push(pc)
		return
	default:
		pc.state = connIdle
	}
	pc.mu.Unlock()
}

// resume gives the connection back from a goroutine of its own, to be
// served again from its buffer (a pipelined request may wait there).
func (pc *pollConn) resume() {
	pc.mu.Lock()
	pc.woken = true
	pc.mu.Unlock()
	pc.release()
}

// step serves the connection as far as it can go without waiting. It
// reports whether the caller still holds the connection (false: it was
// closed, handed back, or handed to a goroutine of its own).
func (pc *pollConn) step(sock *poller.Socket, readable bool) bool {
	if readable && !pc.fill(sock) {
		pc.close() // the client went away
		return false
	}
	if pc.poll != nil {
		if !pc.poll.Collect() && !pc.loop.closing.Load() && time.Now().Before(pc.ends) {
			return true // waits on
		}
		if !pc.answer(sock) {
			return false
		}
	} else if pc.loop.closing.Load() {
		pc.close() // between polls at shutdown
		return false
	}
	return pc.serveHeads(sock)
}

// fill reads what the socket holds after buf[off:n]; false when the
// client closed or reset the connection.
func (pc *pollConn) fill(sock *poller.Socket) bool {
	if pc.off > 0 { // room for the rest of the head
		pc.n = copy(pc.buf, pc.buf[pc.off:pc.n])
		pc.off = 0
	}
	if pc.n == len(pc.buf) {
		return true // a long head, or requests piled up: read on later
	}
	k, err := sock.Read(pc.raw, pc.buf[pc.n:])
	switch {
	case poller.WouldBlock(err):
		return true
	case err != nil, k == 0:
		return false
	}
	pc.n += k
	if pc.n == len(pc.buf) {
		// The socket may hold more: the poller will not say so again.
		pc.mu.Lock()
		pc.readable = true
		pc.mu.Unlock()
	}
	return true
}

// serveHeads serves the requests whose heads are in the buffer, until one
// waits. It reports whether the caller still holds the connection.
func (pc *pollConn) serveHeads(sock *poller.Socket) bool {
	for {
		data := pc.buf[pc.off:pc.n]
		end := headEnd(data)
		switch {
		case end == -2:
			pc.handBack() // bare LFs: net/http's to judge
			return false
		case end == -1 && len(data) == len(pc.buf):
			pc.handBack() // a long head: net/http's
			return false
		case end == -1:
			now := time.Now()
			// Between requests the connection may idle for IdleTimeout;
			// once a head has begun, all of it must come within
			// ReadHeaderTimeout (set once: a client trickling bytes does
			// not move it).
			if len(data) > 0 && !pc.begun {
				pc.begun = true
				pc.setDeadline(now, pc.loop.headerTimeout())
			}
			if d := pc.deadline.Load(); d != 0 && now.UnixNano() >= d {
				pc.close() // idle too long, or too slow with its head
				return false
			}
			return true
		}
		pc.begun = false
		req, ok := parsePoll(string(data[:end]))
		if !ok {
			pc.handBack()
			return false
		}
		waiting, held := pc.startPoll(sock, &req, end+2)
		if !held || waiting {
			return held
		}
	}
}

// setDeadline has the sweeper close the connection d from now (d <= 0:
// never).
func (pc *pollConn) setDeadline(now time.Time, d time.Duration) {
	if d <= 0 {
		pc.deadline.Store(0)
		return
	}
	pc.deadline.Store(now.Add(d).UnixNano())
}

// startPoll serves a poll whose head is the buffer's first headLen bytes:
// it answers, or waits for events (waiting). held is false when the poll
// went to a goroutine of its own or back to net/http.
func (pc *pollConn) startPoll(sock *poller.Socket, req *pollRequest, headLen int) (waiting, held bool) {
	s := pc.loop.s
	timeout, ok := pollTimeout(req.timeout)
	if !ok {
		pc.handBack() // the router's 400
		return false, false
	}
	pc.deadline.Store(0)
	tok, cached := s.tokens.cached(req.token)
	var pp *events.PendingPoll
	if cached {
		pp, ok = s.broker.StartPoll(events.PollRequest{UserID: tok.userID, SessionID: req.sessionID, Cursor: req.cursor, Timeout: timeout})
	}
	if !cached || !ok {
		go pc.slowPoll(*req, headLen, timeout)
		return false, false
	}
	pc.off += headLen
	pc.poll, pc.req, pc.user, pc.start = pp, *req, tok.userID, time.Now()
	if pp.Collect() || timeout == 0 {
		return false, pc.answer(sock)
	}
	pc.ends = pc.start.Add(timeout)
	if pc.timer == nil {
		pc.timer = time.AfterFunc(timeout, pc.wakeFn)
	} else {
		pc.timer.Reset(timeout)
	}
	pp.Notify(pc.wakeFn)
	return true, true
}

// slowPoll serves a poll that needs more than memory (a token not seen
// yet, a session whose feed was not kept) on a goroutine of its own, as
// net/http would, holding the connection until it is answered. A poll
// that fails is the router's: it answers with the problem it always
// gives.
func (pc *pollConn) slowPoll(req pollRequest, headLen int, timeout time.Duration) {
	l := pc.loop
	s := l.s
	start := time.Now()
	tok, err := s.tokens.parse(l.ctx, req.token)
	var ans *events.PollAnswer
	if err == nil {
		ans, err = s.broker.Poll(l.ctx, events.PollRequest{
			UserID: tok.userID, UserAgent: req.userAgent, Client: pc, SessionID: req.sessionID,
			Cursor: req.cursor, Timeout: timeout,
		})
	}
	if err != nil {
		pc.handBack()
		return
	}
	pc.off += headLen
	pc.req, pc.user, pc.start = req, tok.userID, start
	if pc.write(poller.NewSocket(), ans) {
		pc.resume()
	}
}

// answer ends the waiting poll and writes its answer. It reports whether
// the caller still holds the connection.
func (pc *pollConn) answer(sock *poller.Socket) bool {
	if pc.timer != nil {
		pc.timer.Stop()
	}
	ans, typingKnown := pc.poll.Answer()
	pc.poll = nil
	if !typingKnown {
		// Who is typing in the user's conversations is a question for
		// the database.
		go func() {
			var err error
			if ans.Typing, err = pc.loop.s.broker.TypingFor(pc.loop.ctx, pc.user); err != nil {
				// The router serves the poll again and answers what it
				// answers (503 while the database is away); the session
				// kept the events for it.
				pc.handBackWith(pc.req.head + "\r\n")
				return
			}
			if pc.write(poller.NewSocket(), ans) {
				pc.resume()
			}
		}()
		return false
	}
	return pc.write(sock, ans)
}

// write writes a poll's answer, with the headers the router would have
// written, without waiting for the client: what the socket does not take
// at once is written by a goroutine of its own under the write timeout.
// It reports whether the caller still holds the connection.
func (pc *pollConn) write(sock *poller.Socket, ans *events.PollAnswer) bool {
	l := pc.loop
	s := l.s
	req := &pc.req
	closing := req.close || l.closing.Load()
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
	defer func() {
		if cap(b) <= maxPooled {
			*bp = b[:0]
			pollOut.Put(bp)
		}
	}()
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
	n, err := sock.Write(pc.raw, b)
	if ctx := l.ctx; s.log.Enabled(ctx, slog.LevelDebug) {
		if id == "" {
			id = string(idb[:])
		}
		s.logRequest(ctx, slog.LevelDebug, requestLine{
			id: id, method: http.MethodGet, path: pollRoute, query: redactQuery(req.query), userID: pc.user, start: pc.start,
		}, http.StatusOK)
	}
	switch {
	case err != nil && !poller.WouldBlock(err):
		pc.close()
		return false
	case n < len(b):
		go pc.drain(bytes.Clone(b[n:]), closing)
		return false
	case closing:
		pc.close()
		return false
	}
	pc.setDeadline(time.Now(), l.idleTimeout())
	return true
}

// drain writes the rest of an answer the socket did not take at once,
// waiting for the client under the write timeout, then gives the
// connection back.
func (pc *pollConn) drain(rest []byte, closing bool) {
	pc.nc.SetWriteDeadline(time.Now().Add(pc.loop.s.cfg.WriteTimeout)) //nolint:errcheck // a closed conn fails the write
	_, err := pc.nc.Write(rest)
	if err != nil || closing {
		pc.close()
		return
	}
	// The workers' writes do not wait, and a deadline in the past would
	// fail them.
	pc.nc.SetWriteDeadline(time.Time{}) //nolint:errcheck // as above
	pc.setDeadline(time.Now(), pc.loop.idleTimeout())
	pc.resume()
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

// gone takes the connection out of the loop, once: false if it was
// already.
func (pc *pollConn) gone() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.state == connGone {
		return false
	}
	pc.state = connGone
	return true
}

// close closes the connection; a poll that waits on it ends, and its
// session keeps what it collected for the client's next poll.
func (pc *pollConn) close() {
	if !pc.gone() {
		return
	}
	if pc.poll != nil {
		if pc.timer != nil {
			pc.timer.Stop()
		}
		pc.poll.Answer()
		pc.poll = nil
	}
	pc.loop.set.Remove(pc.raw, pc.key)
	pc.nc.Close()
	pc.loop.remove(pc)
}

// handBack gives the connection back to net/http, which reads what is left
// in the buffer first, as if it had come in on a new connection.
func (pc *pollConn) handBack() { pc.handBackWith("") }

// handBackWith hands the connection back with replay read before the
// buffer: a request already taken from it.
func (pc *pollConn) handBackWith(replay string) {
	if !pc.gone() {
		return
	}
	l := pc.loop
	l.set.Remove(pc.raw, pc.key)
	l.remove(pc)
	pending := append([]byte(replay), pc.buf[pc.off:pc.n]...)
	// net/http sets the deadlines it wants; none of ours is left behind.
	pc.nc.SetDeadline(time.Time{}) //nolint:errcheck // a closed connection fails its next read
	// Served from the first hand-back on, when the server is set up and
	// serving: Serve reads the server's fields. A server shut down by then
	// closes the listener at once, and the connection with it.
	l.serveBack.Do(func() { go l.srv.Serve(l.back) }) //nolint:errcheck // ends with the server
	l.back.give(&replayConn{Conn: pc.nc, pending: pending})
}
