package fabric

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

var (
	addrA = netip.MustParseAddr("10.77.0.1")
	addrB = netip.MustParseAddr("10.77.0.2")
	addrC = netip.MustParseAddr("10.77.0.3")
)

// testDir returns a fabric directory under /dev/shm that no other test run
// uses, removed at the end.
func testDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "ultcp-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "fabric")
}

func openFabric(t testing.TB, dir string) *Fabric {
	t.Helper()
	f, err := Open(Config{Dir: dir, SlabSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func join(t testing.TB, f *Fabric, a netip.Addr) *Node {
	t.Helper()
	n, err := f.Join(a)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func ctx10s(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestDialAcceptSendRecvInOneProcess(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	ctx := ctx10s(t)
	ca, err := a.Dial(ctx, addrB, ConnConfig{RingSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	cb, err := b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cb.RemoteAddr() != addrA || ca.RemoteAddr() != addrB {
		t.Fatalf("addresses: accepted from %v, dialled %v", cb.RemoteAddr(), ca.RemoteAddr())
	}
	for i := range 1000 {
		msg := []byte(fmt.Sprintf("record %d", i))
		if err := ca.Send(msg); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := cb.Recv(buf)
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("record %d: got %q, %v", i, buf[:n], err)
		}
		if err := cb.Send(buf[:n]); err != nil {
			t.Fatal(err)
		}
		n, err = ca.Recv(buf)
		if err != nil || string(buf[:n]) != string(msg) {
			t.Fatalf("echo %d: got %q, %v", i, buf[:n], err)
		}
	}
	ca.Close()
	if _, err := cb.Recv(make([]byte, 64)); err != io.EOF {
		t.Fatalf("Recv after peer close = %v, want io.EOF", err)
	}
	if err := cb.Send([]byte("x")); !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Send after peer close = %v, want ErrPeerClosed", err)
	}
	cb.Close()
}

func TestJoinRefusesAddressOfLiveNode(t *testing.T) {
	f := openFabric(t, testDir(t))
	join(t, f, addrA)
	if _, err := f.Join(addrA); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("second Join = %v, want ErrAddrInUse", err)
	}
}

func TestJoinRefusesAddressOutsideSubnet(t *testing.T) {
	f := openFabric(t, testDir(t))
	if _, err := f.Join(netip.MustParseAddr("192.168.1.1")); err == nil {
		t.Fatal("Join(192.168.1.1) succeeded outside 10.77.0.0/16")
	}
}

func TestDialUnknownAddressFailsWithNoNode(t *testing.T) {
	f := openFabric(t, testDir(t))
	a := join(t, f, addrA)
	if _, err := a.Dial(ctx10s(t), addrC, ConnConfig{}); !errors.Is(err, ErrNoNode) {
		t.Fatalf("Dial = %v, want ErrNoNode", err)
	}
}

func TestSendDMAFallsBackToPIOAndLogsOnce(t *testing.T) {
	dir := testDir(t)
	var logbuf bytes.Buffer
	fa, err := Open(Config{Dir: dir, SlabSize: 1 << 30, Logger: slog.New(slog.NewTextHandler(&logbuf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	fb, err := Open(Config{Dir: dir, SlabSize: 1 << 30, NoDMA: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := join(t, fa, addrA), join(t, fb, addrB)
	ca, err := a.Dial(ctx10s(t), addrB, ConnConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if ca.DMA() {
		t.Fatal("DMA() = true towards a node that cannot pull")
	}
	cb, err := b.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := ca.SendDMA([]byte("hdr:"), []byte("payload")); err != nil {
			t.Fatal(err)
		}
		r, err := cb.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if r.DMA || string(r.Data) != "hdr:payload" {
			t.Fatalf("received %+v, want a PIO record \"hdr:payload\"", r)
		}
		cb.Release()
	}
	if got := strings.Count(logbuf.String(), "falls back to PIO"); got != 1 {
		t.Fatalf("fallback logged %d times, want once:\n%s", got, logbuf.String())
	}
}

func TestNodeWaitReportsWatchedConnectionWithRecord(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	var conns []*Conn
	for range 3 {
		c, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize})
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	var accepted []*Conn
	for range 3 {
		c, err := b.Accept(ctx10s(t))
		if err != nil {
			t.Fatal(err)
		}
		c.SetWatch(true)
		if _, err := c.PeekNoWait(); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("PeekNoWait on a new connection = %v, want ErrWouldBlock", err)
		}
		accepted = append(accepted, c)
	}
	short, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if got, err := b.Wait(short, nil); !errors.Is(err, context.DeadlineExceeded) || len(got) != 0 {
		t.Fatalf("Wait with nothing to do = %d conns, %v; want DeadlineExceeded", len(got), err)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		conns[1].Send([]byte("one"))
	}()
	got, err := b.Wait(ctx10s(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != accepted[1] {
		t.Fatalf("Wait returned %d conns, want exactly the second", len(got))
	}
	if r, err := got[0].PeekNoWait(); err != nil || string(r.Data) != "one" {
		t.Fatalf("PeekNoWait = %q, %v", r.Data, err)
	}
}
