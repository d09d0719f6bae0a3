package api

import (
	"net"
	"sync"
)

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
