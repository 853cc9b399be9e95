package fabric

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/proc"
)

// startChild starts role with the fabric directory and address first, and
// waits for it to say it has joined.
func startChild(t *testing.T, role, dir string, addr fmt.Stringer, more ...string) *proc.Child {
	t.Helper()
	ch, err := proc.Start(role, append([]string{dir, addr.String()}, more...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Kill(); ch.Wait(10 * time.Second) })
	var r ready
	if err := ch.Recv(&r, 20*time.Second); err != nil || !r.Ready {
		t.Fatalf("child %s not ready: %v", role, err)
	}
	return ch
}

// transferSize is the volume of the big transfer tests: 1 GiB, less with
// -short or under the race detector (which slows every byte down).
func transferSize() int64 {
	if testing.Short() {
		return 64 << 20
	}
	if raceEnabled {
		return 256 << 20
	}
	return 1 << 30
}

func TestTransferPIOBetweenProcessesIsOrderedAndLossless(t *testing.T) {
	dir := testDir(t)
	ch := startChild(t, "sink", dir, addrB, "peek")
	a := join(t, openFabric(t, dir), addrA)
	c, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	total := transferSize()
	start := time.Now()
	sum, sent, err := stream(c, 1, total, 256<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	var res sinkResult
	if err := ch.Recv(&res, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if res.Err != "" || res.Bytes != sent || res.SHA != sum {
		t.Fatalf("receiver got %d bytes in %d records, err %q, sha %s; sent %d bytes, sha %s", res.Bytes, res.Records, res.Err, res.SHA, sent, sum)
	}
	t.Logf("%d MiB in %d records, %v (%.2f GB/s including SHA-256 on both sides)", total>>20, res.Records, el, float64(total)/el.Seconds()/1e9)
}

func TestTransferDMABetweenProcessesIsOrderedAndLossless(t *testing.T) {
	dir := testDir(t)
	ch := startChild(t, "sink", dir, addrB, "recv")
	a := join(t, openFabric(t, dir), addrA)
	c, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if !c.DMA() {
		t.Skip("the kernel refuses process_vm_readv here; the PIO fallback is tested separately")
	}
	total := transferSize()
	start := time.Now()
	sum, sent, err := stream(c, 2, total, 1<<20, true)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	var res sinkResult
	if err := ch.Recv(&res, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	if res.Err != "" || res.Bytes != sent || res.SHA != sum {
		t.Fatalf("receiver got %d bytes in %d records, err %q, sha %s; sent %d bytes, sha %s", res.Bytes, res.Records, res.Err, res.SHA, sent, sum)
	}
	t.Logf("%d MiB in %d records, %v (%.2f GB/s including SHA-256 on both sides)", total>>20, res.Records, el, float64(total)/el.Seconds()/1e9)
}

// TestDialCloseAsFastAsPossibleNeverFailsThePeer opens and closes fresh
// connections back to back while the acceptor closes each one from its own
// goroutine. Ring pairs are reused as soon as both sides closed, so a side
// that told the peer "closed" before forgetting the pair would receive the
// CONNECT of the pair's next connection while it still holds the old one
// (this failed the whole peer within about 3000 dials before the fix).
func TestDialCloseAsFastAsPossibleNeverFailsThePeer(t *testing.T) {
	conns := 20000
	if testing.Short() || raceEnabled {
		conns = 5000
	}
	dir := testDir(t)
	ch := startChild(t, "accept-close", dir, addrB, strconv.Itoa(conns))
	a := join(t, openFabric(t, dir), addrA)
	ctx := ctx10s(t)
	end := time.Now().Add(20 * time.Second)
	dialled := 0
	for ; dialled < conns && time.Now().Before(end); dialled++ {
		c, err := a.Dial(ctx, addrB, ConnConfig{RingSize: MinRingSize})
		if err == nil {
			err = c.Err()
		}
		if err != nil {
			var res acceptCloseResult
			ch.Recv(&res, time.Second)
			t.Fatalf("dial %d: %v (acceptor: %d accepted, %q)", dialled, err, res.Accepted, res.Err)
		}
		c.Close()
	}
	if dialled < conns {
		// Bounded in time on a slow machine: tell the child how many.
		t.Logf("only %d connections in 20 s", dialled)
		ch.Kill()
		return
	}
	var res acceptCloseResult
	if err := ch.Recv(&res, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if res.Err != "" || res.Accepted != conns {
		t.Fatalf("acceptor accepted %d of %d connections: %s", res.Accepted, conns, res.Err)
	}
}

func TestTenThousandConnectionsBetweenProcesses(t *testing.T) {
	const conns = 10000
	dir := testDir(t)
	ch := startChild(t, "echo-loop", dir, addrB, strconv.Itoa(conns))
	a := join(t, openFabric(t, dir), addrA)
	ctx := ctx10s(t)
	cs := make([]*Conn, conns)
	for i := range cs {
		c, err := a.Dial(ctx, addrB, ConnConfig{RingSize: MinRingSize})
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		cs[i] = c
	}
	// Every connection carries its own number and must bring it back.
	for i, c := range cs {
		if err := c.Send([]byte(strconv.Itoa(i))); err != nil {
			t.Fatalf("send on %d: %v", i, err)
		}
	}
	buf := make([]byte, 16)
	for i, c := range cs {
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := c.Recv(buf)
		if err != nil || string(buf[:n]) != strconv.Itoa(i) {
			t.Fatalf("connection %d echoed %q, %v", i, buf[:n], err)
		}
	}
	for _, c := range cs {
		c.Close()
	}
	var res map[string]int
	if err := ch.Recv(&res, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if res["finished"] != conns {
		t.Fatalf("child saw %d connections end, want %d", res["finished"], conns)
	}
}

// killAndTime kills the child after the caller has blocked and returns
// how long the blocked call took to fail after the kill.
func killDuring(t *testing.T, ch *proc.Child, blocked func() error) (time.Duration, error) {
	t.Helper()
	killed := make(chan time.Time, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		killed <- time.Now()
		ch.Kill()
	}()
	err := blocked()
	return time.Since(<-killed), err
}

func TestSIGKILLedPeerResetsBlockedRecvPromptly(t *testing.T) {
	dir := testDir(t)
	a := join(t, openFabric(t, dir), addrA)
	ch := startChild(t, "stream-then-stall", dir, addrB, addrA.String())
	c, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	for i := range 100 {
		if n, err := c.Recv(buf); err != nil || string(buf[:n]) != strconv.Itoa(i) {
			t.Fatalf("record %d: %q, %v", i, buf[:n], err)
		}
	}
	took, err := killDuring(t, ch, func() error { _, err := c.Recv(buf); return err })
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("blocked Recv returned %v, want ECONNRESET", err)
	}
	t.Logf("blocked Recv returned ECONNRESET %v after SIGKILL", took)
	if took > time.Second {
		t.Fatalf("blocked Recv took %v to notice the SIGKILL", took)
	}
	// The dead peer's segment is released as soon as its last connection
	// is closed here, before the node goes.
	c.Close()
	if maps, _ := os.ReadFile("/proc/self/maps"); bytes.Contains(maps, []byte("memfd:ultcp-segment")) {
		t.Error("the dead peer's segment is still mapped after its last connection closed")
	}
	checkNoLeftovers(t, dir, a)
}

func TestSIGKILLedPeerResetsBlockedSendPromptly(t *testing.T) {
	dir := testDir(t)
	ch := startChild(t, "accept-and-stall", dir, addrB)
	a := join(t, openFabric(t, dir), addrA)
	c, err := a.Dial(ctx10s(t), addrB, ConnConfig{RingSize: MinRingSize})
	if err != nil {
		t.Fatal(err)
	}
	rec := make([]byte, 1000)
	took, err := killDuring(t, ch, func() error {
		for {
			if err := c.Send(rec); err != nil {
				return err
			}
		}
	})
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("blocked Send returned %v, want ECONNRESET", err)
	}
	t.Logf("blocked Send returned ECONNRESET %v after SIGKILL", took)
	if took > time.Second {
		t.Fatalf("blocked Send took %v to notice the SIGKILL", took)
	}
	checkNoLeftovers(t, dir, a)
}

// checkNoLeftovers closes the surviving node and checks that the fabric
// keeps no segment: only the lock file, once a new start has removed the
// dead node's registration.
func checkNoLeftovers(t *testing.T, dir string, survivor *Node) {
	t.Helper()
	survivor.Close()
	if _, err := Open(Config{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != "lock" {
			t.Errorf("fabric directory still holds %s after both nodes are gone", e.Name())
		}
	}
	// The segment was never a file; check that no mapping or descriptor
	// of this process keeps its memory alive either.
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(maps, []byte("memfd:ultcp-segment")) {
		t.Error("a peer segment is still mapped after both nodes are gone")
	}
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if target, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.Contains(target, "ultcp-segment") {
			t.Errorf("descriptor %s still holds %s", fd.Name(), target)
		}
	}
}

func TestHostilePeerScribblingFailsOnlyItsOwnConnections(t *testing.T) {
	dir := testDir(t)
	a := join(t, openFabric(t, dir), addrA)
	const honestBytes = 256 << 20
	honest := startChild(t, "source", dir, addrB, addrA.String(), strconv.Itoa(honestBytes), "5")
	ch, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	honestDone := make(chan sinkResult, 1)
	go func() { honestDone <- sink(ch, "peek") }()

	hostile := startChild(t, "hostile", dir, addrC, addrA.String())
	cc, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	cc.SetReadDeadline(time.Now().Add(20 * time.Second))
	var herr error
	for herr == nil {
		_, herr = cc.Peek()
		if herr == nil {
			cc.Release()
		}
	}
	if !errors.Is(herr, syscall.ECONNRESET) {
		t.Fatalf("connection from the hostile peer failed with %v, want an ECONNRESET error", herr)
	}
	t.Logf("hostile connection: %v", herr)
	var scribbled map[string]bool
	if err := hostile.Recv(&scribbled, 10*time.Second); err != nil {
		t.Fatal(err)
	}

	got := <-honestDone
	var want sinkResult
	if err := honest.Recv(&want, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got.Err != "" || got.SHA != want.SHA || got.Bytes != want.Bytes {
		t.Fatalf("honest transfer: %d bytes, err %q, sha %s; want %d bytes, sha %s", got.Bytes, got.Err, got.SHA, want.Bytes, want.SHA)
	}
	// And the victim still serves new connections.
	d := join(t, openFabric(t, dir), netip.MustParseAddr("10.77.0.4"))
	dc, err := d.Dial(ctx10s(t), addrA, ConnConfig{})
	if err != nil {
		t.Fatalf("dial after the attack: %v", err)
	}
	ac, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatalf("accept after the attack: %v", err)
	}
	buf := make([]byte, 8)
	if err := dc.Send([]byte("after")); err != nil {
		t.Fatal(err)
	}
	if n, err := ac.Recv(buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("record after the attack: %q, %v", buf[:n], err)
	}
}

func TestPeerCannotResizeSharedMemoryUnderTransfer(t *testing.T) {
	dir := testDir(t)
	a := join(t, openFabric(t, dir), addrA)
	total := int64(256 << 20)
	if testing.Short() {
		total = 32 << 20
	}
	ch := startChild(t, "truncater", dir, addrB, addrA.String(), strconv.FormatInt(total, 10), "9")
	c, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	got := sink(c, "peek")
	var res truncResult
	if err := ch.Recv(&res, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	want := []string{"operation not permitted", "operation not permitted", "operation not permitted", "operation not permitted"}
	if fmt.Sprint(res.Errors) != fmt.Sprint(want) {
		t.Errorf("shrink, shrink, grow, seal-write returned %q, want EPERM for each", res.Errors)
	}
	if got.Err != "" || got.SHA != res.SHA || got.Bytes != res.Bytes {
		t.Fatalf("transfer: %d bytes, err %q, sha %s; want %d bytes, sha %s", got.Bytes, got.Err, got.SHA, res.Bytes, res.SHA)
	}
	// Our view of the segment still has its full size.
	a.mu.Lock()
	p := a.peers[addrB]
	a.mu.Unlock()
	if p != nil && !p.dead.Load() {
		var st unix.Stat_t
		if err := unix.Fstat(p.memFd, &st); err != nil || uint64(st.Size) != p.l.size {
			t.Errorf("segment size now %d (%v), want %d", st.Size, err, p.l.size)
		}
	}
}

func TestRecordsSentBeforeCloseSurviveThePeersExit(t *testing.T) {
	dir := testDir(t)
	a := join(t, openFabric(t, dir), addrA)
	startChild(t, "send-close-exit", dir, addrB, addrA.String())
	c, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	// Read nothing before the death notice has arrived.
	for end := time.Now().Add(5 * time.Second); !c.peer.dead.Load(); {
		if time.Now().After(end) {
			t.Fatal("the child's exit was not noticed in 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	buf := make([]byte, 16)
	for i := range 1000 {
		n, err := c.Recv(buf)
		if err != nil || string(buf[:n]) != strconv.Itoa(i) {
			t.Fatalf("record %d: %q, %v", i, buf[:n], err)
		}
	}
	if _, err := c.Recv(buf); err != io.EOF {
		t.Fatalf("after the last record: %v, want io.EOF", err)
	}
	c.Close()
}

func TestEveryRecordSizeWrapsBetweenProcesses(t *testing.T) {
	dir := testDir(t)
	a := join(t, openFabric(t, dir), addrA)
	ch := startChild(t, "every-size", dir, addrB, addrA.String())
	c, err := a.Accept(ctx10s(t))
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, MinRingSize)
	for size := 1; size <= MaxRecord(MinRingSize); size++ {
		r, err := c.Peek()
		if err != nil {
			t.Fatalf("record of %d bytes: %v", size, err)
		}
		fill(want[:size], size)
		if !bytes.Equal(r.Data, want[:size]) {
			t.Fatalf("record of %d bytes arrived as %d bytes or with other contents", size, len(r.Data))
		}
		c.Release()
	}
	if _, err := c.Peek(); err != io.EOF {
		t.Fatalf("after the last size: %v, want io.EOF", err)
	}
	var res map[string]int
	if err := ch.Recv(&res, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if want := 3*MinRingSize - MaxRecord(MinRingSize); res["refused"] != want {
		t.Fatalf("%d oversized records refused, want all %d", res["refused"], want)
	}
}
