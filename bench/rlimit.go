//go:build unix

package bench

import "syscall"

// raiseFileLimit lifts the soft limit on open files to the hard one: every
// stream is a socket.
func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l) //nolint:errcheck // best effort: the open count reports failures
	}
}
