//go:build !linux

package sse

import (
	"errors"
	"syscall"
	"time"
)

// Supported reports whether this platform can serve streams from the pool:
// it needs Linux's epoll and TCP_USER_TIMEOUT. Elsewhere every stream keeps
// its net/http handler.
const Supported = false

var errUnsupported = errors.New("sse: streams are served from the pool on Linux only")

func tune(syscall.RawConn, time.Duration) error { return errUnsupported }
