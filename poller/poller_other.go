//go:build !linux

package poller

import "syscall"

// Set is Linux's only; New fails elsewhere and callers keep their
// goroutine per socket.
type Set struct{}

func New() (*Set, error)                                 { return nil, ErrUnsupported }
func (*Set) Add(syscall.RawConn, func()) (uint64, error) { return 0, ErrUnsupported }
func (*Set) Remove(syscall.RawConn, uint64)              {}
func (*Set) Wake()                                       {}
func (*Set) Close()                                      {}
func (*Set) Run()                                        {}

type Socket struct{}

func NewSocket() *Socket                                   { return &Socket{} }
func (*Socket) Read(syscall.RawConn, []byte) (int, error)  { return 0, ErrUnsupported }
func (*Socket) Write(syscall.RawConn, []byte) (int, error) { return 0, ErrUnsupported }
func WouldBlock(error) bool                                { return false }
