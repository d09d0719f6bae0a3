package sse

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/confab-chat/confab/events"
	"github.com/confab-chat/confab/poller"
)

// Why a stream served by the pool ended, besides its subscription's Err
// (slow consumer, too many streams, shutdown) and write errors.
var (
	// ErrExpired: the stream's access token expired; the client
	// reconnects with a fresh one.
	ErrExpired = errors.New("sse: access token expired")
	// ErrPeerGone: the client closed or reset the connection, or stopped
	// acknowledging what was written to it.
	ErrPeerGone = errors.New("sse: client went away")
	// ErrWriteTimeout: nothing written to the client was taken (or
	// acknowledged) within the write timeout: a client that stopped
	// reading, or one the network no longer reaches.
	ErrWriteTimeout = errors.New("sse: write timed out")
)

// Config tunes a Pool.
type Config struct {
	// Heartbeat is how often an idle stream gets a comment, which also
	// shows whether its client is still there.
	Heartbeat time.Duration
	// WriteTimeout bounds how long a client may take to accept a write,
	// and how long written data may stay unacknowledged by its host.
	WriteTimeout time.Duration
	// Writers is how many goroutines write the streams (0: one per CPU).
	Writers int
	// Delivered is told of every event written to a client (may be nil).
	Delivered func(*events.Event)
}

// Pool serves Server-Sent Events streams taken over from net/http.
//
// A stream handed to the pool (Serve) keeps no goroutine: its subscription
// wakes the pool (Subscription.Notify) when events are queued, a timer when
// a heartbeat is due, and one of a few writer goroutines frames what is
// queued into its own buffer and writes it to the socket without waiting.
// A socket that does not take everything at once (its client reads
// slowly) gets a goroutine of its own for the rest, under the write
// timeout, and returns to the pool once it is written; a stream that stays
// behind is ended by its subscription (the hub's slow-consumer cut).
type Pool struct {
	cfg Config

	queue *poller.Queue[*conn] // streams to write

	mu    sync.Mutex
	conns map[*conn]struct{}
	// closed: Shutdown began; no stream is taken and writers exit.
	closed bool

	// set notices clients that go away as soon as it happens, with one
	// epoll set for the whole pool instead of a reader goroutine per
	// stream (which is how net/http notices); probe is its goroutine's.
	set      *poller.Set
	probe    *socket
	writers  sync.WaitGroup // and the set's goroutine
	entering sync.WaitGroup // handlers between Enter and the end of Serve
	ending   sync.WaitGroup // End callbacks running
}

// NewPool starts a pool's writers; Shutdown stops them.
func NewPool(cfg Config) (*Pool, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.Delivered == nil {
		cfg.Delivered = func(*events.Event) {}
	}
	set, err := poller.New()
	if err != nil {
		return nil, err
	}
	p := &Pool{cfg: cfg, queue: poller.NewQueue[*conn](), conns: map[*conn]struct{}{}, set: set, probe: newSocket()}
	for range cfg.Writers {
		p.writers.Go(p.write)
	}
	p.writers.Go(set.Run)
	return p, nil
}

// Stream is what the pool needs of a stream besides its socket.
type Stream struct {
	Sub *events.Subscription
	// Expires is when the stream's access token expires: the stream ends
	// then.
	Expires time.Time
	// End is called once when the stream has ended and its socket is
	// closed, with why, on a goroutine of its own (it may do I/O). The
	// subscription is closed before.
	End func(why error)
}

// Enter reserves the pool for a handler about to take a connection over
// from net/http, which then no longer waits for it: Shutdown waits for
// the handler instead, until its Serve (or Leave). It reports false once
// the pool is shutting down.
func (p *Pool) Enter() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.entering.Add(1)
	return true
}

// Leave gives up a reservation that Serve will not use.
func (p *Pool) Leave() { p.entering.Done() }

// Serve takes over nc, a connection net/http gave up (hijacked) after
// reading a stream's request, writes first (the response head and first
// frames) and serves the stream until it ends. The caller entered the pool
// (Enter). End is called in every case, at once when the stream could not
// be taken.
func (p *Pool) Serve(nc net.Conn, first []byte, st Stream) {
	defer p.entering.Done()
	c := &conn{pool: p, nc: nc, sub: st.Sub, expires: st.Expires, end: st.End}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		p.refuse(c, fmt.Errorf("sse: %T is not a socket", nc))
		return
	}
	raw, err := sc.SyscallConn()
	if err == nil {
		err = tune(raw, p.cfg.WriteTimeout)
	}
	if err != nil {
		p.refuse(c, err)
		return
	}
	c.raw = raw
	// Serve owns the stream (serving) for its first write, then gives it
	// to the writers.
	c.state = serving
	c.timer = time.AfterFunc(c.nextBeat(time.Now()), c.heartbeat)
	p.mu.Lock()
	err = events.ErrShutdown
	if !p.closed {
		// Under p.mu: Shutdown either sees the stream or refuses it, and
		// the set is not closed under it.
		if c.watchKey, err = p.set.Add(c.raw, c.peerEvent); err == nil {
			p.conns[c] = struct{}{}
		}
	}
	p.mu.Unlock()
	if err != nil {
		c.timer.Stop()
		p.refuse(c, err)
		return
	}
	// Before the first write: events queued while it runs wake the stream
	// (woken), so that whoever gives it back queues it again.
	c.sub.Notify(c.wake)
	handed, err := c.writeOrDrain(newSocket(), first)
	switch {
	case err != nil:
		c.close(err)
	case !handed:
		c.release()
	}
}

// refuse ends a stream the pool could not take, or no longer serves.
func (p *Pool) refuse(c *conn, why error) {
	c.nc.Close()
	p.ending.Add(1)
	go func() {
		defer p.ending.Done()
		c.sub.Close()
		c.end(why)
	}()
}

// Len is how many streams the pool serves.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Shutdown ends every stream (their clients reconnect elsewhere and resume
// from their cursors), stops the writers and waits for the streams' End
// callbacks, or for ctx.
func (p *Pool) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	first := !p.closed
	p.closed = true
	open := make([]*conn, 0, len(p.conns))
	for c := range p.conns {
		open = append(open, c)
	}
	p.queue.Close() // the writers exit
	p.mu.Unlock()
	for _, c := range open {
		c.close(events.ErrShutdown)
	}
	done := make(chan struct{})
	go func() {
		p.entering.Wait() // handlers that took a connection: refused now
		if first {
			p.set.Close()
		}
		p.writers.Wait()
		p.ending.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// maxBuffer is the largest frame buffer a writer keeps between streams.
const maxBuffer = 256 << 10

// write is a writer goroutine.
func (p *Pool) write() {
	sock := newSocket()
	var buf []byte
	var todo []*conn
	for {
		todo = p.queue.Next(todo) // none once the pool shuts down
		if len(todo) == 0 {
			return
		}
		for i, c := range todo {
			buf = c.serve(sock, buf[:0])
			todo[i] = nil
		}
		if cap(buf) > maxBuffer {
			buf = nil
		}
	}
}

// A stream's state, under conn.mu.
const (
	idle     = iota // nothing to write: waits for its subscription or timer
	queued          // on the writers' queue
	serving         // a writer (or Serve) is writing it
	draining        // its own goroutine writes what the socket did not take
	closed
)

// conn is one stream served by the pool: the socket, the subscription and
// a few words of state. It holds no buffer while it has nothing to write.
type conn struct {
	pool    *Pool
	nc      net.Conn
	raw     syscall.RawConn
	sub     *events.Subscription
	expires time.Time
	end     func(error)
	timer   *time.Timer
	// watchKey is its key in the pool's poller.Set.
	watchKey uint64

	mu    sync.Mutex
	state uint8
	// woken: there may be more to write than the writer (or drain) that
	// holds the stream has seen; beat: a heartbeat is due.
	woken, beat bool
}

// wake is the subscription's Notify: events are queued, or it ended.
func (c *conn) wake() {
	c.mu.Lock()
	switch c.state {
	case idle:
		c.state = queued
		c.mu.Unlock()
		c.pool.queue.Push(c)
		return
	case serving, draining:
		c.woken = true
	}
	c.mu.Unlock()
}

// peerEvent is the poller.Set's call, on its goroutine: the client sent
// something, closed the connection or reset it, or the kernel gave up on
// it.
func (c *conn) peerEvent() {
	if why := c.pool.probe.PeerGone(c.raw); why != nil {
		c.close(why)
	}
}

// heartbeat is the stream's timer: a heartbeat is due, or the token
// expired.
func (c *conn) heartbeat() {
	c.mu.Lock()
	c.beat = true
	c.mu.Unlock()
	c.wake()
}

// nextBeat is how long until the next heartbeat or the token's expiry.
func (c *conn) nextBeat(now time.Time) time.Duration {
	return max(0, min(c.pool.cfg.Heartbeat, c.expires.Sub(now)))
}

// release gives the stream back after the writer, Serve or drain that
// held it (serving) is done with it: back on the queue if it was woken
// meanwhile, else idle. A closed stream stays closed.
func (c *conn) release() {
	c.mu.Lock()
	switch {
	case c.state != serving:
	case c.woken:
		c.woken = false
		c.state = queued
		c.mu.Unlock()
		c.pool.queue.Push(c)
		return
	default:
		c.state = idle
	}
	c.mu.Unlock()
}

// serve writes what is queued for c and, when due, a heartbeat. buf is
// the writer's frame buffer; serve returns it for the next stream.
func (c *conn) serve(sock *socket, buf []byte) []byte {
	c.mu.Lock()
	if c.state != queued {
		c.mu.Unlock()
		return buf
	}
	c.state, c.woken = serving, false
	beat := c.beat
	c.beat = false
	c.mu.Unlock()

	if c.sub.Ended() {
		c.close(c.sub.Err())
		return buf
	}
	now := time.Now()
	if beat {
		if !now.Before(c.expires) {
			c.close(ErrExpired)
			return buf
		}
		// A peer that closed the connection is noticed here at the
		// latest, should the set have missed it.
		if why := sock.PeerGone(c.raw); why != nil {
			c.close(why)
			return buf
		}
	}
	evs := c.sub.Take(nil)
	c.sub.Received() // its queue is empty: a subscriber left behind resumes
	for _, ev := range evs {
		buf = AppendEvent(buf, ev.ID, ev.Type, ev.Data)
	}
	if beat {
		buf = AppendComment(buf, "ping")
		c.mu.Lock()
		if c.state != closed { // close stops the timer under c.mu
			c.timer.Reset(c.nextBeat(now))
		}
		c.mu.Unlock()
	}
	handed, err := c.writeOrDrain(sock, buf)
	if err != nil {
		c.close(err)
		clear(evs)
		return buf
	}
	for _, ev := range evs {
		c.pool.cfg.Delivered(ev)
	}
	clear(evs) // the events are shared with other subscribers: let go
	if !handed {
		c.release()
	}
	return buf
}

// writeOrDrain writes b without waiting. What the socket does not take
// now is copied and written by a goroutine of its own (drain), which then
// holds the stream: handed reports that, and the caller must not touch
// the stream's state any more.
func (c *conn) writeOrDrain(sock *socket, b []byte) (handed bool, err error) {
	if len(b) == 0 {
		return false, nil
	}
	n, err := sock.Write(c.raw, b)
	switch {
	case err == nil, poller.WouldBlock(err):
	case errors.Is(err, syscall.ETIMEDOUT):
		return false, fmt.Errorf("%w: %w", ErrWriteTimeout, err)
	default:
		return false, fmt.Errorf("%w: %w", ErrPeerGone, err)
	}
	if n == len(b) {
		return false, nil
	}
	rest := append([]byte(nil), b[n:]...) // copied before c.mu: wake waits on it under the hub's lock
	c.mu.Lock()
	if c.state != serving {
		c.mu.Unlock()
		return false, nil // closed meanwhile
	}
	c.state = draining
	c.mu.Unlock()
	go c.drain(rest)
	return true, nil
}

// drain writes what the socket did not take at once, waiting for the
// client under the write timeout, then gives the stream back.
func (c *conn) drain(rest []byte) {
	c.nc.SetWriteDeadline(time.Now().Add(c.pool.cfg.WriteTimeout)) //nolint:errcheck // a closed conn fails the write
	if _, err := c.nc.Write(rest); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, syscall.ETIMEDOUT) {
			err = fmt.Errorf("%w: %w", ErrWriteTimeout, err)
		} else {
			err = fmt.Errorf("%w: %w", ErrPeerGone, err)
		}
		c.close(err)
		return
	}
	// The writers' writes do not wait, and a deadline in the past would
	// fail them.
	c.nc.SetWriteDeadline(time.Time{}) //nolint:errcheck // as above
	c.mu.Lock()
	if c.state == draining {
		c.state = serving
	}
	c.mu.Unlock()
	c.release()
}

// close ends the stream once: the socket is closed (which also ends a
// drain's write) and End runs on a goroutine of its own.
func (c *conn) close(why error) {
	c.mu.Lock()
	if c.state == closed {
		c.mu.Unlock()
		return
	}
	c.state = closed
	c.timer.Stop()
	c.mu.Unlock()
	p := c.pool
	p.set.Remove(c.raw, c.watchKey)
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	p.refuse(c, why)
}

// Reason names why a stream ended, for its log line and metrics:
// client_gone, expired, write_timeout, slow_consumer, evicted (the user
// opened too many), shutdown or error.
func Reason(why error) string {
	switch {
	case errors.Is(why, ErrPeerGone):
		return "client_gone"
	case errors.Is(why, ErrExpired):
		return "expired"
	case errors.Is(why, ErrWriteTimeout):
		return "write_timeout"
	case errors.Is(why, events.ErrSlowConsumer):
		return "slow_consumer"
	case errors.Is(why, events.ErrTooMany):
		return "evicted"
	case errors.Is(why, events.ErrShutdown):
		return "shutdown"
	}
	return "error"
}
