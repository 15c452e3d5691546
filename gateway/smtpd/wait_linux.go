//go:build linux

package smtpd

import (
	"syscall"
	"unsafe"
)

// waitReadable blocks, without any buffer, until the socket has a byte to
// read, has been closed by the peer, is in error or its read deadline has
// passed (then the error says so). The poller is edge-triggered, so the
// check peeks first: bytes that arrived before the wait started must not
// be missed. Once the poller has reported the socket readable it is not
// peeked at again: the Read that follows tells data from end of stream or
// error, and saves a system call per command of a client that waits for
// each reply. (A wake-up without data, which the poller does not make,
// would only have that Read wait with the buffer taken.)
func waitReadable(rc syscall.RawConn) error {
	polled := false
	return rc.Read(func(fd uintptr) bool {
		if polled {
			return true
		}
		polled = true
		var b [1]byte
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		// Data, end of stream (0 bytes) or an error: the Read that
		// follows tells which. Only "nothing yet" waits.
		return errno != syscall.EAGAIN && errno != syscall.EWOULDBLOCK
	})
}
