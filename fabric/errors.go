package fabric

import (
	"errors"
	"fmt"
	"syscall"
)

// Error is a fabric failure. It unwraps to the errno a socket would have
// reported in the same situation, so errors.Is(err, syscall.ECONNRESET)
// holds for a connection whose peer died or broke the protocol.
type Error struct {
	msg   string
	errno syscall.Errno
}

func (e *Error) Error() string { return e.msg }
func (e *Error) Unwrap() error { return e.errno }

var (
	// ErrPeerDead: the peer process exited or was killed, or it left the
	// fabric (Node.Close). All connections to it fail with this error.
	ErrPeerDead = &Error{"fabric: peer process is gone", syscall.ECONNRESET}
	// ErrCorrupt: the peer wrote a value into shared memory that breaks the
	// ring protocol (an index, a length, a descriptor out of bounds). Only
	// the connection concerned fails.
	ErrCorrupt = &Error{"fabric: peer broke the ring protocol", syscall.ECONNRESET}
	// ErrPeerClosed: Send on a connection the peer has closed.
	ErrPeerClosed = &Error{"fabric: peer closed the connection", syscall.EPIPE}
	// ErrNoNode: no live node has the address dialled.
	ErrNoNode = &Error{"fabric: no node with that address", syscall.EHOSTUNREACH}
	// ErrAddrInUse: Join with an address a live node holds.
	ErrAddrInUse = &Error{"fabric: address held by a live node", syscall.EADDRINUSE}
	// ErrRecordTooLarge: a record body larger than MaxRecord of the ring.
	ErrRecordTooLarge = &Error{"fabric: record larger than the ring allows", syscall.EMSGSIZE}
	// ErrShortBuffer: Recv's buffer cannot hold the next record, which stays
	// in the ring.
	ErrShortBuffer = &Error{"fabric: buffer too small for the record", syscall.ENOBUFS}
	// ErrNoRecord: Release or Pull without a record from Peek.
	ErrNoRecord = errors.New("fabric: no record peeked")
	// ErrWouldBlock: a non-blocking call found nothing to do.
	ErrWouldBlock = &Error{"fabric: operation would block", syscall.EAGAIN}
)

var (
	errNotSealed = errors.New("fabric: shared memory from peer is not sealed against resizing")
	errBadSize   = errors.New("fabric: shared memory from peer has the wrong size")
)

// wrapped is an *Error with detail; errors.Is matches its base error and
// the base's errno.
type wrapped struct {
	base   *Error
	detail string
}

func (w *wrapped) Error() string { return w.base.msg + ": " + w.detail }
func (w *wrapped) Unwrap() error { return w.base }

func errf(base *Error, format string, args ...any) error {
	return &wrapped{base, fmt.Sprintf(format, args...)}
}
