//go:build !linux

package sse

import (
	"errors"
	"syscall"
	"time"
)

// Supported reports whether this platform can serve streams from the pool:
// it needs Linux's non-blocking socket calls and TCP_USER_TIMEOUT. Elsewhere
// every stream keeps its net/http handler.
const Supported = false

var errUnsupported = errors.New("sse: streams are served from the pool on Linux only")

func tune(syscall.RawConn, time.Duration) error { return errUnsupported }

type socket struct{}

func newSocket() *socket { return &socket{} }

func (*socket) Write(syscall.RawConn, []byte) (int, error) { return 0, errUnsupported }
func (*socket) PeerGone(syscall.RawConn) bool              { return true }
func wouldBlock(error) bool                                { return false }

type watcher struct{}

func newWatcher() (*watcher, error)  { return nil, errUnsupported }
func (*watcher) add(*conn) error     { return errUnsupported }
func (*watcher) remove(*conn)        {}
func (*watcher) run(<-chan struct{}) {}
func (*watcher) wake()               {}
func (*watcher) close()              {}
