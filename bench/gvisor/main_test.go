package main

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkedStacks builds the helper's two stacks in one process, joined by
// the same kind of socketpair the harness makes, and tears them down when
// the test ends.
func linkedStacks(t *testing.T) (server, client *stack.Stack) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	server, err = newStack(serverAddr, fds[0])
	if err != nil {
		t.Fatalf("server stack: %v", err)
	}
	client, err = newStack(clientAddr, fds[1])
	if err != nil {
		t.Fatalf("client stack: %v", err)
	}
	t.Cleanup(func() {
		server.Close()
		client.Close()
		// The fdbased dispatchers see end of file and stop.
		for _, fd := range fds {
			_ = unix.Shutdown(fd, unix.SHUT_RDWR)
			_ = unix.Close(fd)
		}
	})
	return server, client
}

// echoConn connects a client to an echo server across the two stacks.
func echoConn(t *testing.T, srv, cl *stack.Stack) *gonet.TCPConn {
	t.Helper()
	l, err := gonet.ListenTCP(srv, fullAddr(serverAddr), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until the client closes
	}()
	c, err := gonet.DialTCP(cl, fullAddr(serverAddr), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatalf("deadline: %v", err)
	}
	return c
}

// roundTrip writes want and reads back as many bytes, writing from
// another goroutine so that a message larger than the windows cannot
// deadlock.
func roundTrip(t *testing.T, c *gonet.TCPConn, want []byte) []byte {
	t.Helper()
	werr := make(chan error, 1)
	go func() { _, err := c.Write(want); werr <- err }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo of %d bytes: %v", len(want), err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("writing %d bytes: %v", len(want), err)
	}
	return got
}

// TestEchoReturnsWhatWasWritten checks that gVisor over the helper's link
// delivers bytes intact and in order: the harness times bytes coming back
// but does not compare them, so this test does. Sizes: one byte, an odd
// size over one 64 KiB packet, and 4 MiB (the largest point). The bytes
// are seeded random, so a reordered or repeated segment cannot match by
// accident.
func TestEchoReturnsWhatWasWritten(t *testing.T) {
	srv, cl := linkedStacks(t)
	c := echoConn(t, srv, cl)
	rng := rand.NewChaCha8([32]byte{'u', 'l', 't', 'c', 'p'})
	for _, size := range []int{1, 65536 + 7, 4 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := make([]byte, size)
			_, _ = rng.Read(want)
			got := roundTrip(t, c, want)
			if i := firstDiff(got, want); i >= 0 {
				t.Fatalf("echo of %d bytes differs at byte %d: got %#x, want %#x", size, i, got[i], want[i])
			}
		})
	}
}

// TestLinkDropsNothingAt4MiB checks the reason for growSendBuffer: fdbased
// drops a packet the socket cannot take, and TCP then retransmits it after
// a timeout, which the harness would time as gVisor's latency. A 4 MiB
// echo must need no retransmission in either stack.
func TestLinkDropsNothingAt4MiB(t *testing.T) {
	srv, cl := linkedStacks(t)
	c := echoConn(t, srv, cl)
	roundTrip(t, c, make([]byte, 4<<20))
	for name, s := range map[string]*stack.Stack{"server": srv, "client": cl} {
		if n := s.Stats().TCP.Retransmits.Value(); n != 0 {
			t.Errorf("%s stack retransmitted %d segments, want 0 (the link dropped packets)", name, n)
		}
	}
}

// firstDiff is the index of the first byte where a and b (equal lengths)
// differ, or -1.
func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}
