package ultcp

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

// Two-process tests: the child roles run a Stack in a process of their
// own (the test binary re-executed by internal/proc). Each role takes the
// fabric directory, its address and its port, says {"ready":true} once it
// listens, and serves until its stdin closes.

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

func init() {
	proc.Register("echo", roleEcho)
	proc.Register("sink", roleSink)
	proc.Register("source", roleSource)
	proc.Register("http", roleHTTP)
}

type ready struct{ Ready bool }

type sinkResult struct {
	SHA   string
	Bytes int64
	Err   string
}

// childStack starts the child's stack and listener from args
// (dir, address, port, then extra ones).
func childStack(args []string, tweak ...func(*Config)) (*Stack, *Listener, error) {
	if len(args) < 3 {
		return nil, nil, errors.New("need fabric dir, address and port")
	}
	cfg := Config{FabricDir: args[0], Addr: netip.MustParseAddr(args[1])}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := NewStack(cfg)
	if err != nil {
		return nil, nil, err
	}
	l, err := s.ListenTCP("tcp", ":"+args[2])
	if err != nil {
		s.Close()
		return nil, nil, err
	}
	return s, l, proc.Send(ready{true})
}

// untilStdinCloses blocks until the parent closes the child's stdin.
func untilStdinCloses() { io.Copy(io.Discard, os.Stdin) }

// roleEcho echoes every connection until EOF.
func roleEcho(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	echoServer(nil, l)
	untilStdinCloses()
	return nil
}

// roleSink accepts one connection, hashes everything until EOF and reports
// the digest.
func roleSink(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := l.AcceptTCP()
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(h, c)
	res := sinkResult{SHA: hex.EncodeToString(h.Sum(nil)), Bytes: n}
	if err != nil {
		res.Err = err.Error()
	}
	c.Close()
	proc.Send(res)
	untilStdinCloses()
	return nil
}

// roleSource accepts one connection and writes to it until it fails.
func roleSource(args []string) error {
	s, l, err := childStack(args)
	if err != nil {
		return err
	}
	defer s.Close()
	c, err := l.AcceptTCP()
	if err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for {
		if _, err := c.Write(buf); err != nil {
			return nil
		}
	}
}

// startChild starts role on dir at addr:port and waits until it listens.
func startChild(t testing.TB, role, dir string, addr netip.Addr, port int, more ...string) *proc.Child {
	t.Helper()
	ch, err := proc.Start(role, append([]string{dir, addr.String(), strconv.Itoa(port)}, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ch.Stdin().Close()
		if err := ch.Wait(10 * time.Second); err != nil && !t.Failed() {
			var ee interface{ ExitCode() int }
			if !errors.As(err, &ee) || ee.ExitCode() != -1 { // -1: we killed it
				t.Errorf("child %s: %v", role, err)
			}
		}
	})
	var r ready
	if err := ch.Recv(&r, 20*time.Second); err != nil || !r.Ready {
		t.Fatalf("child %s not ready: %v", role, err)
	}
	return ch
}

// twoProcSize is the volume of the transfer tests: less under -short or
// the race detector.
func twoProcSize() int {
	if testing.Short() || raceEnabled {
		return 64 << 20
	}
	return 1 << 30
}

func TestTwoProcessEcho(t *testing.T) {
	dir := testDir(t)
	startChild(t, "echo", dir, addrB, 7)
	a := newStack(t, dir, addrA)
	c, err := a.Dial("tcp", "10.77.0.2:7")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(deadline())
	r := bufio.NewReader(c)
	for i := 0; i < 1000; i++ {
		msg := fmt.Sprintf("line %d\n", i)
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}
}

func twoProcessBulk(t *testing.T, writeSize int, tweak func(*Config)) *Stack {
	dir := testDir(t)
	ch := startChild(t, "sink", dir, addrB, 9)
	a := newStack(t, dir, addrA, tweak)
	d := Dialer{Stack: a}
	c, err := d.DialTCP(t.Context(), "tcp", "10.77.0.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	total := twoProcSize()
	buf := make([]byte, writeSize)
	h := sha256.New()
	start := time.Now()
	c.SetWriteDeadline(time.Now().Add(120 * time.Second))
	for sent, i := 0, 0; sent < total; i++ {
		for j := range buf {
			buf[j] = byte(i + j*13)
		}
		k := min(len(buf), total-sent)
		if _, err := c.Write(buf[:k]); err != nil {
			t.Fatalf("write after %d bytes: %v", sent, err)
		}
		h.Write(buf[:k])
		sent += k
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var res sinkResult
	if err := ch.Recv(&res, 120*time.Second); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if res.Err != "" || res.Bytes != int64(total) || res.SHA != hex.EncodeToString(h.Sum(nil)) {
		t.Fatalf("sink got %d bytes (err %q), sha %s; sent %d", res.Bytes, res.Err, res.SHA, total)
	}
	t.Logf("%d MiB in %v (%.2f GB/s including pattern and SHA-256 on both sides)", total>>20, el, float64(total)/el.Seconds()/1e9)
	return a
}

func TestTwoProcessBulkPIOWithSHA256(t *testing.T) {
	a := twoProcessBulk(t, 256<<10, func(c *Config) { c.DMAThreshold = -1 })
	if st := a.Stats(); st.DMARecords != 0 {
		t.Fatalf("%d DMA records with DMA off", st.DMARecords)
	}
}

func TestTwoProcessBulkDMAWithSHA256(t *testing.T) {
	a := twoProcessBulk(t, 1<<20, func(c *Config) { c.DMAThreshold = 256 << 10 })
	if st := a.Stats(); st.DMARecords == 0 {
		t.Fatal("no DMA records for 1 MiB writes")
	}
}

// A peer process killed in the middle of a transfer resets the
// connection (the fabric notices its death); this process keeps serving.
func TestPeerKilledMidTransferResets(t *testing.T) {
	dir := testDir(t)
	ch := startChild(t, "source", dir, addrB, 9)
	a := newStack(t, dir, addrA)
	c, err := a.Dial("tcp", "10.77.0.2:9")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 64<<10)
	got := 0
	for got < 8<<20 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	ch.Kill()
	for {
		_, err = c.Read(buf)
		if err != nil {
			break
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after the peer was killed: %v, want ECONNRESET", err)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("%#v is not a read *net.OpError", err)
	}
	// The stack still works: a new peer, a new connection.
	startChild(t, "echo", dir, netip.MustParseAddr("10.77.0.3"), 7)
	e, err := a.Dial("tcp", "10.77.0.3:7")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	e.SetDeadline(deadline())
	e.Write([]byte("still here"))
	if b, err := io.ReadAll(io.LimitReader(e, 10)); err != nil || string(b) != "still here" {
		t.Fatalf("echo after the reset: %q, %v", b, err)
	}
}
