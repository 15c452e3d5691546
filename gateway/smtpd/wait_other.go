//go:build !linux

package smtpd

import "syscall"

// waitReadable does not wait where peeking at a socket is not written:
// the loop then blocks in Read, holding its buffer.
func waitReadable(syscall.RawConn) error { return nil }
