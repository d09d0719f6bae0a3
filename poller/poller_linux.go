package poller

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Set is an epoll set of sockets, each with the function to call when it
// becomes readable, is closed by its peer or fails. It is edge-triggered:
// the function is called once per arrival of data, and whoever reads the
// socket must read what is there before it waits for the next call (a
// read that does not fill its buffer has read everything).
//
// The set's own descriptor waits in the Go runtime's poller, like any
// socket: Run parks as a goroutine parks in Read, and is woken with the
// runtime's other ready descriptors, rather than holding a thread in
// epoll_wait that must win a processor back whenever a request comes.
type Set struct {
	f    *os.File // the epoll descriptor
	raw  syscall.RawConn
	epfd int

	mu sync.Mutex
	// fns are the sockets' functions by the key given to epoll: a number
	// of their own, since a closed socket's descriptor can be reused by
	// the next.
	fns  map[uint64]func()
	next uint64
	// closed: the descriptor is closed; epoll calls are made under mu, so
	// none meets a descriptor closed (and reused) under it.
	closed bool
}

// New makes an empty Set.
func New() (*Set, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, err
	}
	// Non-blocking: os.NewFile registers it with the runtime's poller.
	f := os.NewFile(uintptr(epfd), "epoll")
	raw, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Set{f: f, raw: raw, epfd: epfd, fns: map[uint64]func(){}}, nil
}

// Add watches a socket: f is called on Run's goroutine whenever data
// arrives on it, or its peer closes or resets it; f must not block. Data
// already waiting calls f too. The key is for Remove.
func (s *Set) Add(raw syscall.RawConn, f func()) (key uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	s.next++
	key = s.next
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(key), Pad: int32(key >> 32)}
	var serr error
	err = raw.Control(func(fd uintptr) { serr = unix.EpollCtl(s.epfd, unix.EPOLL_CTL_ADD, int(fd), &ev) })
	if err = errors.Join(err, serr); err != nil {
		return 0, err
	}
	s.fns[key] = f
	return key, nil
}

// Remove stops watching a socket, before it is closed or handed on; its
// function is not called after Remove returns, unless it is running.
func (s *Set) Remove(raw syscall.RawConn, key uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.fns[key]; !ok || s.closed {
		return
	}
	delete(s.fns, key)
	raw.Control(func(fd uintptr) { unix.EpollCtl(s.epfd, unix.EPOLL_CTL_DEL, int(fd), nil) }) //nolint:errcheck // closing removes it anyway
}

// Close closes the set: Run returns.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		s.f.Close()
	}
}

// Run calls the sockets' functions as their events come, until Close.
func (s *Set) Run() {
	evs := make([]unix.EpollEvent, 256)
	fns := make([]func(), 0, len(evs))
	n := 0
	wait := func(fd uintptr) bool {
		for {
			var err error
			n, err = unix.EpollWait(int(fd), evs, 0)
			if err == unix.EINTR {
				continue
			}
			// Nothing ready: the runtime's poller says when there is.
			return n != 0 || err != nil
		}
	}
	for {
		if err := s.raw.Read(wait); err != nil {
			return // closed
		}
		// One lock for the whole batch: a burst of requests comes in
		// hundreds.
		fns = fns[:0]
		s.mu.Lock()
		for _, ev := range evs[:max(n, 0)] {
			key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if f := s.fns[key]; f != nil {
				fns = append(fns, f)
			}
		}
		s.mu.Unlock()
		for i, f := range fns {
			f()
			fns[i] = nil
		}
	}
}

// Socket reads and writes a socket without waiting for it. A Socket is
// scratch state for one goroutine at a time: neither call allocates (the
// functions syscall.RawConn takes are made once, by NewSocket).
type Socket struct {
	b   []byte
	n   int
	err error

	readFn, writeFn func(fd uintptr) bool
}

// NewSocket makes a Socket.
func NewSocket() *Socket {
	s := &Socket{}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

// Read reads what the socket holds into b, up to len(b), without waiting:
// n is 0 and err unix.EAGAIN when there is nothing; n is 0 and err nil at
// the end of the stream (the peer closed its side).
func (s *Socket) Read(raw syscall.RawConn, b []byte) (int, error) {
	s.b, s.n, s.err = b, 0, nil
	if err := raw.Read(s.readFn); err != nil {
		s.b = nil
		return 0, err
	}
	s.b = nil
	return s.n, s.err
}

func (s *Socket) read(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), s.b)
		if err == unix.EINTR {
			continue
		}
		s.n, s.err = max(n, 0), err
		return true // never wait for the runtime's poller
	}
}

// Write writes as much of b as the socket takes now, without waiting:
// unix.EAGAIN (with n < len(b)) when its send buffer is full.
func (s *Socket) Write(raw syscall.RawConn, b []byte) (int, error) {
	s.b, s.n, s.err = b, 0, nil
	if err := raw.Write(s.writeFn); err != nil {
		s.b = nil
		return 0, err
	}
	s.b = nil
	return s.n, s.err
}

func (s *Socket) write(fd uintptr) bool {
	for len(s.b) > s.n {
		n, err := unix.Write(int(fd), s.b[s.n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			s.err = err
			break
		}
		s.n += n
	}
	return true
}

// WouldBlock reports whether err means the socket had nothing to read,
// or no room to write.
func WouldBlock(err error) bool { return err == unix.EAGAIN }
