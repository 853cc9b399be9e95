package ultcp

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"

	"github.com/ultcp/ultcp/fabric"
)

// Errors follow package net: every error a Conn, Listener or Dial returns
// is a *net.OpError{Op, Net: "tcp", Source, Addr, Err}; Err is
// net.ErrClosed after a local Close, os.ErrDeadlineExceeded (whose
// Timeout() is true) when a deadline passed, and an *os.SyscallError
// wrapping the errno a kernel socket would have given (ECONNRESET,
// ECONNREFUSED, ETIMEDOUT, EPIPE, EHOSTUNREACH), so errors.Is(err,
// syscall.ECONNRESET) works. io.EOF is returned bare, as by package net.

// errWriteClosed is Write after CloseWrite (as a kernel socket: EPIPE).
var errWriteClosed = syscall.EPIPE

// opError wraps err for op on the connection between src and dst.
func opError(op string, src, dst net.Addr, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: src, Addr: dst, Err: sysErr(op, err)}
}

// sysErr turns an errno (or a fabric error that unwraps to one) into the
// *os.SyscallError package net reports, and leaves other errors alone.
func sysErr(op string, err error) error {
	var fe *fabric.Error
	if errors.As(err, &fe) {
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = errno
		}
	}
	if errno, ok := err.(syscall.Errno); ok {
		name := op
		switch op {
		case "dial":
			name = "connect"
		case "accept":
			name = "accept"
		}
		return os.NewSyscallError(name, errno)
	}
	return err
}

// isTimeout reports whether err is a deadline expiry.
func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
