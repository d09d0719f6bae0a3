//go:build linux

package api_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/confab-chat/confab/api"
	"github.com/confab-chat/confab/repository"
	"golang.org/x/sys/unix"
)

// TestIdleStreamsHoldNoGoroutine: HTTP/1.1 streams are taken over by the
// writer pool once their first frames are out, so a thousand idle streams
// are a thousand sockets, not a thousand goroutines; they still get every
// event, and each logs one line when it ends.
func TestIdleStreamsHoldNoGoroutine(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		if api.PooledStreams(e.srv) < 0 {
			t.Skip("no stream pool on this platform")
		}
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		warm := e.openStream(bob.Token, streamOpts{})
		warm.ready()
		eventually(t, 5*time.Second, "the first stream in the pool", func() bool { return api.PooledStreams(e.srv) == 1 })
		const n = 30
		var conns []*rawStream
		for range n {
			conns = append(conns, dialStream(t, e.url, bob.Token, nil))
		}
		for _, c := range conns {
			c.readUntil(t, "event: ready")
		}
		eventually(t, 5*time.Second, "every stream in the pool", func() bool { return api.PooledStreams(e.srv) == n+1 })
		// A stream served by its handler is a goroutine in serveStream
		// (net/http's connection goroutine runs the handler); a pooled one
		// is none. (Counting all goroutines would count other tests'.)
		if got := goroutinesIn("api.(*Server).serveStream"); got != 0 {
			t.Fatalf("%d goroutines serve streams", got)
		}
		msg := e.send(alice, g.ID, "to every tab")
		for _, c := range conns {
			c.readUntil(t, msg.ID)
		}
		for _, c := range conns {
			c.conn.Close()
		}
		eventually(t, 5*time.Second, "the closed streams to end", func() bool { return api.PooledStreams(e.srv) == 1 })
		eventually(t, 5*time.Second, "one log line per stream", func() bool {
			return strings.Count(e.logs.String(), `"path":"/v1/events","query":"","status":200`) == n
		})
		if got := strings.Count(e.logs.String(), `"ended":"client_gone"`); got != n {
			t.Fatalf("%d streams logged that their client went away, want %d", got, n)
		}
		res, err := http.Get(e.url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		metrics, _ := io.ReadAll(res.Body)
		if want := fmt.Sprintf(`confab_streams_ended_total{reason="client_gone"} %d`, n); !strings.Contains(string(metrics), want) {
			t.Fatalf("metrics lack %s", want)
		}
	})
}

// TestResetPeerLosesSessionAtOnce: a client whose socket is reset (closed
// with unread data or SO_LINGER 0, as a killed process's is) is noticed at
// once, not at the next heartbeat.
func TestResetPeerLosesSessionAtOnce(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.StreamHeartbeat = time.Hour
		e := newEnv(t, store, cfg)
		bob := e.register("bob")
		c := dialStream(t, e.url, bob.Token, nil)
		c.readUntil(t, "event: ready")
		eventually(t, 5*time.Second, "the session", func() bool { return e.sessionCount(bob.Token) == 1 })
		c.conn.(*net.TCPConn).SetLinger(0)
		c.conn.Close()
		eventually(t, 3*time.Second, "the reset stream's session to go", func() bool { return e.sessionCount(bob.Token) == 0 })
	})
}

// TestVanishedPeerLosesSession: a client that vanishes without a FIN or a
// reset (the host of a proxy that died: nothing answers any more) loses
// its session within a heartbeat or two. The stream runs over the loopback
// of a network namespace of its own, which the test takes down.
func TestVanishedPeerLosesSession(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		cfg := testConfig()
		cfg.StreamHeartbeat = time.Second
		cfg.StreamWriteTimeout = 500 * time.Millisecond
		e := newEnv(t, store, cfg)
		if api.PooledStreams(e.srv) < 0 {
			t.Skip("no stream pool on this platform")
		}
		ns := isolatedLoopback(t)
		go e.hs.Serve(ns.ln)
		bob := e.register("bob")
		c := dialStream(t, "http://"+ns.ln.Addr().String(), bob.Token, ns.dial)
		c.readUntil(t, "event: ready")
		c.readUntil(t, ": ping") // heartbeats flow
		eventually(t, 5*time.Second, "the session", func() bool { return e.sessionCount(bob.Token) == 1 })
		ns.cut()
		start := time.Now()
		eventually(t, 10*time.Second, "the vanished stream's session to go", func() bool { return e.sessionCount(bob.Token) == 0 })
		// The next heartbeat goes unanswered; the kernel gives up on the
		// peer once it stays unacknowledged for the write timeout (on its
		// retransmission schedule: 0.2, 0.6, 1.4 s... after the write), and
		// the stream ends at once: two heartbeats at most, and a moment to
		// delete the session.
		gone := time.Since(start)
		t.Logf("session gone %v after the peer vanished (heartbeat %v, write timeout %v)", gone.Round(10*time.Millisecond), cfg.StreamHeartbeat, cfg.StreamWriteTimeout)
		if limit := 2*cfg.StreamHeartbeat + time.Second; gone > limit {
			t.Fatalf("session gone after %v, more than %v", gone, limit)
		}
		// The kernel gave up on it: nothing was acknowledged within the
		// write timeout.
		if !strings.Contains(e.logs.String(), `"ended":"write_timeout"`) {
			t.Fatalf("no log line for the vanished stream:\n%s", e.logs.String())
		}
	})
}

// goroutinesIn counts the goroutines whose stack holds fn.
func goroutinesIn(fn string) int {
	buf := make([]byte, 8<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			n++
		}
	}
	return n
}

// rawStream is a stream read by hand from its socket.
type rawStream struct {
	conn net.Conn
	r    *bufio.Reader
	seen strings.Builder
}

// dialStream opens GET /v1/events on a connection of its own (dial:
// nil for an ordinary one).
func dialStream(t *testing.T, base, token string, dial func() (net.Conn, error)) *rawStream {
	t.Helper()
	addr := strings.TrimPrefix(base, "http://")
	if dial == nil {
		dial = func() (net.Conn, error) { return net.Dial("tcp", addr) }
	}
	conn, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /v1/events HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n", addr, token)
	s := &rawStream{conn: conn, r: bufio.NewReader(conn)}
	res, err := http.ReadResponse(s.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %v", res.StatusCode, res.Header)
	}
	return s
}

// readUntil reads the stream until what it has read contains want.
func (s *rawStream) readUntil(t *testing.T, want string) {
	t.Helper()
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !strings.Contains(s.seen.String(), want) {
		line, err := s.r.ReadString('\n')
		s.seen.WriteString(line)
		if err != nil {
			t.Fatalf("reading the stream for %q: %v; read %q", want, err, s.seen.String())
		}
	}
	rest := s.seen.String()
	rest = rest[strings.Index(rest, want)+len(want):]
	s.seen.Reset()
	s.seen.WriteString(rest)
}

// netns is a network namespace of the test's own: a listener on its
// loopback, a dialer from inside it, and cut, which takes its loopback
// down so that nothing sent to it is answered.
type netns struct {
	ln   net.Listener
	dial func() (net.Conn, error)
	cut  func()
}

// isolatedLoopback makes a network namespace for one OS thread (it needs
// CAP_SYS_ADMIN: root, as CI runs). Sockets keep the namespace they were
// made in, so the listener and the dialed connections work from any
// goroutine; only making them needs the thread.
func isolatedLoopback(t *testing.T) *netns {
	t.Helper()
	calls := make(chan func())
	errc := make(chan error)
	go func() {
		// Never unlocked: the thread ends with this goroutine instead of
		// going back to the scheduler in the namespace.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- setLoopback(true)
		for f := range calls {
			f()
		}
	}()
	if err := <-errc; err != nil {
		if err == unix.EPERM {
			t.Skipf("SKIPPED: a network namespace needs CAP_SYS_ADMIN (run the tests as root): %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { close(calls) })
	in := func(f func()) {
		done := make(chan struct{})
		calls <- func() { f(); close(done) }
		<-done
	}
	ns := &netns{}
	var err error
	in(func() { ns.ln, err = net.Listen("tcp", "127.0.0.1:0") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.ln.Close() })
	ns.dial = func() (c net.Conn, err error) {
		in(func() { c, err = net.Dial("tcp", ns.ln.Addr().String()) })
		return c, err
	}
	ns.cut = func() {
		in(func() {
			if err := setLoopback(false); err != nil {
				t.Error(err)
			}
		})
	}
	return ns
}

// setLoopback brings the loopback interface of the calling thread's
// network namespace up or down.
func setLoopback(up bool) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	flags := ifr.Uint16()
	if up {
		flags |= unix.IFF_UP
	} else {
		flags &^= unix.IFF_UP
	}
	ifr.SetUint16(flags)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// TestSlowReaderGetsEveryEventInOrder: a client that reads slowly, so that
// its socket keeps refusing part of a write (the rest is written by the
// stream's drain while more events queue up), still gets every event
// once, in order.
func TestSlowReaderGetsEveryEventInOrder(t *testing.T) {
	eachStore(t, func(t *testing.T, store *repository.Store) {
		e := newEnv(t, store, testConfig())
		alice, bob := e.register("alice"), e.register("bob")
		g := e.group(alice, bob)
		d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c := dialStream(t, e.url, bob.Token, func() (net.Conn, error) { return d.Dial("tcp", strings.TrimPrefix(e.url, "http://")) })
		c.readUntil(t, "event: ready")
		// More than the server's socket buffer takes: writes fall short.
		const n = 400
		body := strings.Repeat("y", 4000)
		go func() {
			for range n {
				e.send(alice, g.ID, body)
			}
		}()
		var seqs []int64
		c.conn.SetReadDeadline(time.Now().Add(3 * time.Minute))
		for len(seqs) < n {
			line, err := c.r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %d messages: %v", len(seqs), err)
			}
			if !strings.HasPrefix(line, `data: {"message":`) {
				continue
			}
			var m struct{ Message struct{ Seq int64 } }
			if err := json.Unmarshal([]byte(line[6:]), &m); err != nil {
				t.Fatal(err)
			}
			if len(seqs) > 0 && m.Message.Seq != seqs[len(seqs)-1]+1 {
				t.Fatalf("seq %d after %d", m.Message.Seq, seqs[len(seqs)-1])
			}
			seqs = append(seqs, m.Message.Seq)
			if len(seqs) == 10 {
				time.Sleep(2 * time.Second) // stop reading for a while
			}
		}
	})
}
