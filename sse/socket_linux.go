package sse

import (
	"errors"
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
