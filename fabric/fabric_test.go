package fabric

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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

// dmaPair returns a connected pair in one process and a function that
// posts a DMA record with a hand-made descriptor on the first.
func dmaPair(t *testing.T) (send func(pid uint32, addr, n uint64, bodyLen int), recv *Conn) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
	return func(pid uint32, addr, n uint64, bodyLen int) {
		buf, err := ca.Reserve(bodyLen)
		if err != nil {
			t.Fatal(err)
		}
		var d [dmaDescLen]byte
		binary.LittleEndian.PutUint32(d[0:], pid)
		binary.LittleEndian.PutUint64(d[8:], addr)
		binary.LittleEndian.PutUint64(d[16:], n)
		copy(buf, d[:])
		ca.tx.commit(bodyLen, kindDMA)
	}, cb
}

func TestDMADescriptorWithAnotherPidIsRejected(t *testing.T) {
	send, cb := dmaPair(t)
	send(uint32(os.Getpid()+1), 0x10000, 100, dmaDescLen)
	if _, err := cb.Peek(); !errors.Is(err, ErrCorrupt) || !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Peek = %v, want ErrCorrupt (ECONNRESET)", err)
	}
}

func TestDMADescriptorLongerThanMaxDMAIsRejected(t *testing.T) {
	send, cb := dmaPair(t)
	send(uint32(os.Getpid()), 0x10000, MaxDMA+1, dmaDescLen)
	if _, err := cb.Peek(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Peek = %v, want ErrCorrupt", err)
	}
}

func TestDMARecordShorterThanDescriptorIsRejected(t *testing.T) {
	send, cb := dmaPair(t)
	send(uint32(os.Getpid()), 0, 0, 8)
	if _, err := cb.Peek(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Peek = %v, want ErrCorrupt", err)
	}
}

func TestDMADescriptorWithUnmappedAddressFailsThePull(t *testing.T) {
	send, cb := dmaPair(t)
	send(uint32(os.Getpid()), 0x1000, 100, dmaDescLen) // page 1 is never mapped
	r, err := cb.Peek()
	if err != nil || !r.DMA || r.DMALen != 100 {
		t.Fatalf("Peek = %+v, %v; want a 100-byte DMA record", r, err)
	}
	if _, err := cb.Pull(make([]byte, 100)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Pull = %v, want ErrCorrupt", err)
	}
}

// pair returns the two ends of a connection between two nodes of this
// process.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	return connect(t, a, b, ConnConfig{})
}

// connect dials b from a with cfg and returns both ends.
func connect(t *testing.T, a, b *Node, cfg ConnConfig) (ca, cb *Conn) {
	t.Helper()
	ca, err := a.Dial(ctx10s(t), b.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	cb, err = b.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	return ca, cb
}

func TestRecvWithShortBufferLeavesTheRecord(t *testing.T) {
	ca, cb := pair(t)
	ca.Send([]byte("twelve bytes"))
	if _, err := cb.Recv(make([]byte, 11)); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("Recv into 11 bytes = %v, want ErrShortBuffer", err)
	}
	buf := make([]byte, 12)
	if n, err := cb.Recv(buf); err != nil || string(buf[:n]) != "twelve bytes" {
		t.Fatalf("Recv = %q, %v", buf[:n], err)
	}
}

func TestReadDeadlineExpiresOnEmptyRing(t *testing.T) {
	_, cb := pair(t)
	cb.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := cb.Recv(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv = %v, want os.ErrDeadlineExceeded", err)
	}
}

func TestNodeCloseResetsPeerConnectionsAndUnregisters(t *testing.T) {
	dir := testDir(t)
	f := openFabric(t, dir)
	a, b := join(t, f, addrA), join(t, f, addrB)
	ca, cb := connect(t, a, b, ConnConfig{})
	done := make(chan error, 1)
	go func() { _, err := cb.Recv(make([]byte, 8)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	a.Close()
	if err := <-done; !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("peer's blocked Recv = %v, want ECONNRESET", err)
	}
	if err := ca.Send([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Send on a closed node's connection = %v, want net.ErrClosed", err)
	}
	if _, err := a.Accept(ctx10s(t)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed node = %v, want net.ErrClosed", err)
	}
	if _, err := os.Stat(filepath.Join(dir, addrA.String()+".sock")); !os.IsNotExist(err) {
		t.Fatalf("the closed node's socket is still registered: %v", err)
	}
	again, err := f.Join(addrA)
	if err != nil {
		t.Fatalf("rejoining the address after Close: %v", err)
	}
	again.Close()
}

func TestReserveCommitSendsOnlyTheCommittedBytes(t *testing.T) {
	ca, cb := pair(t)
	buf, err := ca.Reserve(100)
	if err != nil || len(buf) != 100 {
		t.Fatalf("Reserve(100) = %d bytes, %v", len(buf), err)
	}
	copy(buf, "header|payload")
	if err := ca.Commit(101); err == nil {
		t.Fatal("Commit(101) after Reserve(100) succeeded")
	}
	if err := ca.Commit(14); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	n, err := cb.Recv(got)
	if err != nil || string(got[:n]) != "header|payload" {
		t.Fatalf("Recv = %q, %v", got[:n], err)
	}
	if err := ca.Commit(1); err == nil {
		t.Fatal("Commit without Reserve succeeded")
	}
}

func TestRingOccupancyCountsUnconsumedBytes(t *testing.T) {
	ca, cb := pair(t)
	for range 3 {
		if err := ca.Send(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	// Each record takes its 8-byte header and its body padded to 8.
	if got, want := ca.RingOccupancy(), 3*(8+104); got != want {
		t.Fatalf("occupancy with 3 records queued = %d, want %d", got, want)
	}
	for range 3 {
		if _, err := cb.Recv(make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
	}
	// The consumer publishes its progress when it finds the ring empty
	// and stops polling.
	if _, err := cb.PeekNoWait(); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("PeekNoWait on an empty ring = %v", err)
	}
	if got := ca.RingOccupancy(); got != 0 {
		t.Fatalf("occupancy after everything was consumed = %d, want 0", got)
	}
}

// TestRingOccupancyIsSafeFromAnotherGoroutine reads the occupancy from a
// third goroutine while one sends and one receives (the race detector
// watches); every value lies in [0, RingSize], and once both are done the
// value is exact again.
func TestRingOccupancyIsSafeFromAnotherGoroutine(t *testing.T) {
	ca, cb := pair(t)
	size := ca.RingSize()
	const records = 20000
	done := make(chan error, 2)
	go func() {
		for i := range records {
			if err := ca.Send(make([]byte, 1+i%200)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	go func() {
		buf := make([]byte, 256)
		for range records {
			if _, err := cb.Recv(buf); err != nil {
				done <- err
				return
			}
		}
		cb.PeekNoWait() // finds the ring empty: publishes the tail
		done <- nil
	}()
	reads, finished := 0, 0
	for finished < 2 {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			finished++
		default:
		}
		if o := ca.RingOccupancy(); o < 0 || o > size {
			t.Fatalf("occupancy %d outside [0, %d]", o, size)
		}
		reads++
	}
	if got := ca.RingOccupancy(); got != 0 {
		t.Fatalf("occupancy after everything was read = %d, want 0 (after %d concurrent reads)", got, reads)
	}
	if err := ca.Send(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if got := ca.RingOccupancy(); got != 8+104 {
		t.Fatalf("occupancy with one 100-byte record unread = %d, want 112", got)
	}
}

func TestNodeWaitReportsWatchedConnectionWhenRoomIsMade(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
	ca.SetWatch(true)
	rec := make([]byte, 1000)
	sent := 0
	for ca.Room(len(rec)) {
		if err := ca.Send(rec); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	if sent == 0 || sent > 4 {
		t.Fatalf("%d records of 1000 bytes went into a 4 KiB ring before Room said no", sent)
	}
	go func() {
		time.Sleep(10 * time.Millisecond)
		for range sent {
			cb.Recv(make([]byte, 1000))
		}
		cb.PeekNoWait() // empty: the consumer publishes its progress
	}()
	// The event loop's pattern: wait, try, and wait again while the room
	// made so far is not enough (Room re-arms).
	for waits := 1; ; waits++ {
		got, err := a.Wait(ctx10s(t), nil)
		if err != nil {
			t.Fatalf("wait %d: %v", waits, err)
		}
		if len(got) == 0 || got[0] != ca {
			t.Fatalf("Wait returned %d conns, want the sender's", len(got))
		}
		if ca.Room(len(rec)) {
			return
		}
		if waits > sent {
			t.Fatalf("still no room after %d wake-ups", waits)
		}
	}
}

// TestSleepingPeersLoseNoWakeUp runs both sides with no spinning at all, so
// that every wait goes through arm, re-check and futex sleep, with record
// sizes that keep the 4 KiB ring wrapping (skip records) and full.
func TestSleepingPeersLoseNoWakeUp(t *testing.T) {
	f, err := Open(Config{Dir: testDir(t), SlabSize: 1 << 30, SpinBudget: -1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := join(t, f, addrA), join(t, f, addrB)
	ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
	records := 50000
	if testing.Short() || raceEnabled {
		records = 10000
	}
	deadline := time.Now().Add(20 * time.Second)
	ca.SetWriteDeadline(deadline)
	cb.SetReadDeadline(deadline)
	sizes := func(i int) int { return 1 + (i*2654435761)%MaxRecord(MinRingSize) }
	sent := make(chan error, 1)
	go func() {
		buf := make([]byte, MinRingSize)
		for i := range records {
			fill(buf[:sizes(i)], i)
			if err := ca.Send(buf[:sizes(i)]); err != nil {
				sent <- fmt.Errorf("record %d: %w", i, err)
				return
			}
		}
		sent <- ca.Close()
	}()
	want := make([]byte, MinRingSize)
	for i := range records {
		r, err := cb.Peek()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		fill(want[:sizes(i)], i)
		if !bytes.Equal(r.Data, want[:sizes(i)]) {
			t.Fatalf("record %d: %d bytes, want %d with its pattern", i, len(r.Data), sizes(i))
		}
		cb.Release()
	}
	if _, err := cb.Peek(); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// TestSleepingDMAPeersLoseNoWakeUp is the same for DMA records of up to
// 1 MiB: the sender sleeps through every copy predicted long, the receiver
// through every empty ring.
func TestSleepingDMAPeersLoseNoWakeUp(t *testing.T) {
	f, err := Open(Config{Dir: testDir(t), SlabSize: 1 << 30, SpinBudget: -1})
	if err != nil {
		t.Fatal(err)
	}
	a, b := join(t, f, addrA), join(t, f, addrB)
	ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
	if !ca.DMA() {
		t.Skip("process_vm_readv refused here")
	}
	const records = 2000
	deadline := time.Now().Add(20 * time.Second)
	ca.SetWriteDeadline(deadline)
	cb.SetReadDeadline(deadline)
	sizes := func(i int) int { return (i * 2654435761) % (1 << 20) }
	src := make([]byte, 1<<20)
	fill(src, 3)
	sent := make(chan error, 1)
	go func() {
		for i := range records {
			if err := ca.SendDMA([]byte{byte(i)}, src[:sizes(i)]); err != nil {
				sent <- fmt.Errorf("record %d: %w", i, err)
				return
			}
		}
		sent <- ca.Close()
	}()
	dst := make([]byte, 1+1<<20)
	for i := range records {
		n, err := cb.Recv(dst)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if n != 1+sizes(i) || dst[0] != byte(i) || !bytes.Equal(dst[1:n], src[:sizes(i)]) {
			t.Fatalf("record %d: %d bytes, want %d with its prefix and contents", i, n, 1+sizes(i))
		}
	}
	if _, err := cb.Recv(dst); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

func TestRingPairsAreReusedAfterBothSidesClose(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	buf := make([]byte, 64)
	var p *peer
	for i := range 100 {
		ca, cb := connect(t, a, b, ConnConfig{RingSize: MinRingSize})
		msg := fmt.Sprintf("connection %d", i)
		if err := ca.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if n, err := cb.Recv(buf); err != nil || string(buf[:n]) != msg {
			t.Fatalf("connection %d carried %q, %v", i, buf[:n], err)
		}
		if err := cb.Send([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if n, err := ca.Recv(buf); err != nil || string(buf[:n]) != msg {
			t.Fatalf("connection %d echoed %q, %v", i, buf[:n], err)
		}
		ca.Close()
		if _, err := cb.Recv(buf); err != io.EOF {
			t.Fatalf("connection %d: %v after the dialler closed, want io.EOF", i, err)
		}
		cb.Close()
		// The dialler frees the pair when the acceptor's CLOSE comes back.
		p = ca.peer
		for end := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Microsecond) {
			p.mu.Lock()
			open := len(p.conns)
			p.mu.Unlock()
			if open == 0 {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("connection %d: still open on the dialler's side after both closed", i)
			}
		}
	}
	p.mu.Lock()
	used := p.alloc.nextID
	p.mu.Unlock()
	if used != quarantine+1 {
		t.Fatalf("100 sequential connections used %d fresh ids, want %d (the quarantine, then reuse)", used, quarantine+1)
	}
}

func TestWakeEndsWaitWithNothingReady(t *testing.T) {
	f := openFabric(t, testDir(t))
	a := join(t, f, addrA)
	go func() {
		time.Sleep(10 * time.Millisecond)
		a.Wake()
	}()
	start := time.Now()
	got, err := a.Wait(context.Background(), nil)
	if err != nil || len(got) != 0 {
		t.Fatalf("Wait after Wake = %d conns, %v; want none, nil", len(got), err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("Wait took %v to see Wake", el)
	}
}

func BenchmarkWakeAndWait(b *testing.B) {
	f := openFabric(b, testDir(b))
	a := join(b, f, addrA)
	b.ReportAllocs()
	var buf []*Conn
	for b.Loop() {
		a.Wake()
		buf, _ = a.Wait(context.Background(), buf[:0])
	}
}

func TestConnectForOpenPairFailsOnlyThatPair(t *testing.T) {
	f := openFabric(t, testDir(t))
	a, b := join(t, f, addrA), join(t, f, addrB)
	var ca, cb [2]*Conn
	for i := range ca {
		var err error
		if ca[i], err = a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize}); err != nil {
			t.Fatal(err)
		}
		if cb[i], err = b.Accept(ctx10s(t)); err != nil {
			t.Fatal(err)
		}
	}
	// A broken dialler announces connection 0's pair again while it is open.
	p := ca[0].peer
	if err := p.sendCtl(ctx10s(t), msgConnect, ca[0].key.id, uint64(MinRingSize), ca[0].block); err != nil {
		t.Fatal(err)
	}
	if _, err := cb[0].Recv(make([]byte, 8)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Recv on the contradicted pair: %v, want ErrCorrupt", err)
	}
	if err := ca[1].Send([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if n, err := cb[1].Recv(buf); err != nil || string(buf[:n]) != "still here" {
		t.Fatalf("the other connection carried %q, %v", buf[:n], err)
	}
}
