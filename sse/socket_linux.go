package sse

import (
	"errors"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Supported reports whether this platform can serve streams from the pool.
const Supported = true

// tune bounds how long data written to the socket may stay unacknowledged
// (TCP_USER_TIMEOUT) before the kernel gives up on the peer: a peer that
// vanished without a FIN or RST (a proxy's host that died) then fails the
// next write instead of holding its session for the minutes TCP's
// retransmissions would take.
func tune(raw syscall.RawConn, unacked time.Duration) error {
	var serr error
	err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(unacked.Milliseconds()))
	})
	return errors.Join(err, serr)
}

// socket is a worker's scratch state for the raw socket calls, so that
// neither a write nor a probe allocates: raw.Write and raw.Read take a
// function, and a method value made once per worker is that function.
type socket struct {
	out     []byte
	n       int
	err     error
	scratch [64]byte

	writeFn, probeFn func(fd uintptr) bool
}

func newSocket() *socket {
	s := &socket{}
	s.writeFn, s.probeFn = s.write, s.probe
	return s
}

// Write writes as much of b as the socket takes now, without waiting:
// unix.EAGAIN (with n < len(b)) when its send buffer is full.
func (s *socket) Write(raw syscall.RawConn, b []byte) (int, error) {
	s.out, s.n, s.err = b, 0, nil
	if err := raw.Write(s.writeFn); err != nil {
		return 0, err
	}
	s.out = nil
	return s.n, s.err
}

func (s *socket) write(fd uintptr) bool {
	for len(s.out) > s.n {
		n, err := unix.Write(int(fd), s.out[s.n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.err = err
			break
		}
		s.n += n
	}
	return true // never wait for the poller: the caller decides
}

// PeerGone reports whether the peer has closed or reset the connection, or
// the kernel gave up on it, without waiting. A stream's client sends
// nothing after its request; anything it does send is read and dropped.
func (s *socket) PeerGone(raw syscall.RawConn) bool {
	s.err = nil
	if err := raw.Read(s.probeFn); err != nil {
		return true
	}
	return s.err != nil
}

func (s *socket) probe(fd uintptr) bool {
	for range 16 {
		n, err := unix.Read(int(fd), s.scratch[:])
		switch {
		case err == unix.EINTR || n > 0:
			continue
		case err == unix.EAGAIN:
			return true
		case err != nil:
			s.err = err
		default:
			s.err = errPeerClosed // n == 0: end of file
		}
		return true
	}
	return true // a client that keeps sending: not gone
}

// wouldBlock reports whether err means the socket's buffer is full.
func wouldBlock(err error) bool { return err == unix.EAGAIN }

// watcher notices streams whose client closed or reset the connection as
// soon as it happens, with one epoll set for the whole pool instead of a
// reader goroutine per stream (which is how net/http notices). It listens
// for the peer's FIN (EPOLLRDHUP) and for errors only: a stream's client
// has nothing to send, and what it sends anyway wakes nobody. A client
// that half-closes (shuts down its sending side only) is taken as gone.
type watcher struct {
	epfd int
	// wakefd (an eventfd, key 0) wakes run to see that it should stop.
	wakefd int

	mu sync.Mutex
	// conns are the watched streams by the key given to epoll: a number
	// of their own, since a closed stream's descriptor can be reused by
	// the next.
	conns map[uint64]*conn
	next  uint64
	// closed: the descriptors are closed (after run returned); epoll
	// calls are made under mu, so none meets a descriptor closed (and
	// reused) under it.
	closed bool
}

func newWatcher() (*watcher, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN}); err != nil {
		unix.Close(wakefd)
		unix.Close(epfd)
		return nil, err
	}
	return &watcher{epfd: epfd, wakefd: wakefd, conns: map[uint64]*conn{}}, nil
}

// add watches c's socket; c.watchKey is set.
func (w *watcher) add(c *conn) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errWatcherClosed
	}
	w.next++
	c.watchKey = w.next
	ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.watchKey), Pad: int32(c.watchKey >> 32)}
	var serr error
	err := c.raw.Control(func(fd uintptr) { serr = unix.EpollCtl(w.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) })
	if err = errors.Join(err, serr); err != nil {
		return err
	}
	w.conns[c.watchKey] = c
	return nil
}

// remove stops watching c, before its socket is closed.
func (w *watcher) remove(c *conn) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.conns[c.watchKey]; !ok || w.closed {
		return
	}
	delete(w.conns, c.watchKey)
	c.raw.Control(func(fd uintptr) { unix.EpollCtl(w.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) }) //nolint:errcheck // closing removes it anyway
}

// wake has run look at its stop channel now.
func (w *watcher) wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		unix.Write(w.wakefd, []byte{1, 0, 0, 0, 0, 0, 0, 0}) //nolint:errcheck // a full counter wakes it as well
	}
}

// close closes the descriptors, once run has returned.
func (w *watcher) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed {
		w.closed = true
		unix.Close(w.wakefd)
		unix.Close(w.epfd)
	}
}

// run closes the streams whose peer went away until stop is closed (and
// wake called).
func (w *watcher) run(stop <-chan struct{}) {
	evs := make([]unix.EpollEvent, 128)
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, err := unix.EpollWait(w.epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Only a broken descriptor does this; the heartbeats still
			// find gone clients.
			return
		}
		for _, ev := range evs[:n] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if key == 0 {
				continue // wake: stop is looked at above
			}
			w.mu.Lock()
			c := w.conns[key]
			w.mu.Unlock()
			if c != nil {
				c.close(w.why(c))
			}
		}
	}
}

var errWatcherClosed = errors.New("sse: the pool is shut down")

// why tells a client that closed or reset its connection (ErrPeerGone)
// from one the kernel gave up on because nothing written was acknowledged
// within the write timeout (TCP_USER_TIMEOUT): ErrWriteTimeout, whether
// the client stopped reading or the network to it is gone.
func (w *watcher) why(c *conn) error {
	var soerr int
	c.raw.Control(func(fd uintptr) { soerr, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) }) //nolint:errcheck // closed: gone anyway
	if syscall.Errno(soerr) == unix.ETIMEDOUT {
		return ErrWriteTimeout
	}
	return ErrPeerGone
}
