// Package poller serves many idle sockets from a few goroutines: a Set
// tells when a socket has something to read (one epoll set for all of
// them, instead of a goroutine parked in Read for each), a Socket reads
// and writes without waiting, and a Queue hands the sockets that have work
// to a few workers. It is how the SSE writer pool keeps idle streams and
// the API keeps long-pollers' connections between their requests (see
// sse/pool.go and api/pollconn.go).
//
// Sockets stay net.Conns, registered with the Go runtime's poller as
// well: the runtime's registration is left alone (nothing waits on it),
// and a connection can be handed back to code that reads it the usual
// way once it is removed from the Set.
package poller

import "errors"

// ErrUnsupported is returned by New where the platform has no epoll.
var ErrUnsupported = errors.New("poller: supported on Linux only")

// ErrClosed is returned by Add once the Set is closed.
var ErrClosed = errors.New("poller: set closed")
