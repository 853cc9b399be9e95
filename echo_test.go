package ultcp

import (
	"bytes"
	"io"
	"net"
	"testing"
)

// echoServer accepts connections on l and echoes each until EOF.
func echoServer(_ testing.TB, l net.Listener) {
	go serveEach(l, func(c net.Conn) {
		defer c.Close()
		io.Copy(c, c)
	})
}

// serveEach accepts connections on l until it fails (closed), handling
// each on a goroutine of its own.
func serveEach(l net.Listener, handle func(net.Conn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go handle(c)
	}
}

func TestEchoBetweenTwoStacksInOneProcess(t *testing.T) {
	dir := testDir(t)
	a, b := newStack(t, dir, addrA), newStack(t, dir, addrB)
	l, err := b.Listen("tcp", ":7")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	c, err := a.Dial("tcp", "10.77.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline())
	for _, msg := range []string{"hello", "ultcp", string(bytes.Repeat([]byte("x"), 100000))} {
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading the echo of %d bytes: %v", len(msg), err)
		}
		if string(got) != msg {
			t.Fatalf("echo differs (%d bytes)", len(msg))
		}
	}
	if la := c.LocalAddr().String(); la[:10] != "10.77.0.1:" {
		t.Fatalf("local address %s", la)
	}
	if ra := c.RemoteAddr().String(); ra != "10.77.0.2:7" {
		t.Fatalf("remote address %s", ra)
	}
}
