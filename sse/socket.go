package sse

import (
	"errors"
	"syscall"

	"github.com/confab-chat/confab/poller"
)

// socket is a goroutine's scratch state for a stream's socket calls, none
// of which waits or allocates.
type socket struct {
	*poller.Socket
	scratch [64]byte
}

func newSocket() *socket { return &socket{Socket: poller.NewSocket()} }

// PeerGone reports, without waiting, why the peer is gone: nil while it is
// there. A stream's client sends nothing after its request; anything it
// does send is read and dropped.
func (s *socket) PeerGone(raw syscall.RawConn) error {
	for range 16 {
		n, err := s.Read(raw, s.scratch[:])
		switch {
		case n > 0:
			continue
		case poller.WouldBlock(err):
			return nil
		case errors.Is(err, syscall.ETIMEDOUT):
			// The kernel gave up on it: nothing written was acknowledged
			// within the write timeout (TCP_USER_TIMEOUT), whether the
			// client stopped reading or the network to it is gone.
			return ErrWriteTimeout
		default:
			return ErrPeerGone // end of file, reset, or a closed socket
		}
	}
	return nil // a client that keeps sending: not gone
}
