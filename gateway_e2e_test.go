package ultcp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/gateway"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// The whole path of issue 7 in one process, without TUN: a node (a
// Stack), the real gateway (package gateway) on an in-memory device, and
// behind the device an outside host played by the engine itself
// (internal/tcp with its defaults: MSS 1460, SACK, timestamps, window
// scaling, CUBIC — the options Linux offers), so that what crosses the
// device is what a kernel would see. An external test package, because
// the gateway's imports (package capture) import this one.

var (
	e2eNode = netip.MustParseAddr("10.77.0.1")
	e2eGW   = netip.MustParseAddr("10.77.0.254")
	e2eHost = netip.MustParseAddrPort("192.0.2.10:80")
)

// host is the outside TCP host: one engine connection, listening on
// e2eHost's port for the node's SYN, driven by the device's writes (the
// gateway's output), a 1 ms ticker for its timers, and the test's reads
// and writes.
type host struct {
	mu      sync.Mutex
	c       *tcp.Conn
	out     []tcp.Segment
	start   time.Time
	self    wire.IPv4Addr
	peer    wire.IPv4Addr
	toGW    chan []byte   // packets for the gateway's Read
	changed chan struct{} // the engine took input (readers and writers look again)
	dropped int           // packets the device had no room for (a loss TCP repairs)
}

// hostConfig is the outside host's engine configuration: the engine's
// defaults (Linux's choices) with Linux-sized buffers.
var hostConfig = tcp.Config{RecvBuf: 1 << 20, MaxRecvBuf: 4 << 20, SendBuf: 1 << 20, NoDelay: true}

func newHost(self netip.AddrPort) *host {
	cfg := hostConfig
	return &host{
		c: tcp.NewListening(&cfg, self.Port(), 0, 0x5eed), start: time.Now(), self: self.Addr().As4(),
		toGW: make(chan []byte, 4096), changed: make(chan struct{}, 1),
	}
}

func (h *host) now() time.Duration { return time.Since(h.start) }

// input takes one packet the gateway wrote to the device: a TCP/IPv4
// packet, possibly a GSO super-packet, which the engine takes whole.
func (h *host) input(pkt []byte) {
	p, err := wire.NewIPv4Packet(pkt)
	if err != nil || p.Protocol() != 6 {
		return
	}
	var seg tcp.Segment
	payload, err := seg.Hdr.Parse(p.Payload())
	if err != nil {
		return
	}
	seg.Payload = payload
	h.mu.Lock()
	h.peer = p.Src()
	h.out = h.c.Input(h.now(), &seg, h.out[:0])
	h.flushLocked()
	h.mu.Unlock()
	h.signal()
}

func (h *host) signal() {
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

// flushLocked hands h.out to the gateway as packets with real checksums.
func (h *host) flushLocked() {
	for i := range h.out {
		s := &h.out[i]
		hl := s.Hdr.EncodedLen()
		b := make([]byte, wire.IPv4HeaderLen+hl+len(s.Payload))
		ip := wire.IPv4Header{TTL: 64, Protocol: 6, DontFrag: true, Src: h.self, Dst: h.peer, PayloadLen: uint16(hl + len(s.Payload))}
		ip.Encode(b)
		if _, err := s.Hdr.Encode(b[wire.IPv4HeaderLen:]); err != nil {
			continue
		}
		copy(b[wire.IPv4HeaderLen+hl:], s.Payload)
		wire.SetTCPChecksum(h.self, h.peer, b[wire.IPv4HeaderLen:wire.IPv4HeaderLen+hl], s.Payload)
		select {
		case h.toGW <- b:
		default:
			h.dropped++
		}
	}
	h.out = h.out[:0]
}

// run drives the engine's timers until ctx ends.
func (h *host) run(ctx context.Context) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		if d := h.c.Deadline(); d != 0 && d <= h.now() {
			h.out = h.c.OnTimer(h.now(), h.out[:0])
			h.flushLocked()
		}
		h.mu.Unlock()
	}
}

// dial replaces the host's listening connection with an active open from
// its address and port lport to node, and waits for the handshake.
func (h *host) dial(t *testing.T, lport uint16, node netip.AddrPort, dl time.Time) {
	t.Helper()
	cfg := hostConfig
	h.mu.Lock()
	h.peer = node.Addr().As4()
	h.c, h.out = tcp.Dial(h.now(), &cfg, lport, node.Port(), 0xd1a1, h.out[:0])
	h.flushLocked()
	h.mu.Unlock()
	for {
		h.mu.Lock()
		st := h.c.State()
		h.mu.Unlock()
		if st == tcp.Established {
			return
		}
		if st == tcp.Closed || !h.wait(dl) {
			t.Fatalf("outside host's dial to %v: state %v", node, st)
		}
	}
}

// readAll reads n bytes from the host's connection and returns their
// SHA-256, or fails at the deadline.
func (h *host) readAll(t *testing.T, n int, dl time.Time) string {
	t.Helper()
	sum := sha256.New()
	if err := h.read(sum, n, dl); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum.Sum(nil))
}

// drain reads and discards n bytes; it gives up at the deadline.
func (h *host) drain(n int, dl time.Time) error { return h.read(io.Discard, n, dl) }

// read reads n bytes from the host's connection into w.
func (h *host) read(w io.Writer, n int, dl time.Time) error {
	buf := make([]byte, 256<<10)
	for got := 0; got < n; {
		h.mu.Lock()
		k, err := h.c.Read(buf[:min(len(buf), n-got)])
		if k > 0 {
			h.out = h.c.Output(h.now(), h.out[:0]) // the window update reading made due
			h.flushLocked()
		}
		h.mu.Unlock()
		w.Write(buf[:k])
		got += k
		if err != nil {
			return fmt.Errorf("outside host read %d of %d bytes: %w", got, n, err)
		}
		if k == 0 && !h.wait(dl) {
			return fmt.Errorf("outside host read %d of %d bytes by the deadline", got, n)
		}
	}
	return nil
}

// reset gives the host a fresh listening connection (for the next
// connection of a benchmark), dropping the old one.
func (h *host) reset() {
	cfg := hostConfig
	h.mu.Lock()
	h.c = tcp.NewListening(&cfg, e2eHost.Port(), 0, 0x5eed+uint32(h.now()))
	h.mu.Unlock()
}

// writeAll sends p from the host; it gives up at the deadline.
func (h *host) writeAll(p []byte, dl time.Time) error {
	for len(p) > 0 {
		h.mu.Lock()
		k, err := h.c.Write(p)
		h.out = h.c.Output(h.now(), h.out[:0])
		h.flushLocked()
		h.mu.Unlock()
		if err != nil {
			return fmt.Errorf("outside host write: %w", err)
		}
		p = p[k:]
		if k == 0 && !h.wait(dl) {
			return fmt.Errorf("outside host could not write %d bytes by the deadline", len(p))
		}
	}
	return nil
}

// wait waits for the engine to take input, at most a millisecond (the
// ticker's timers make progress too), and reports whether dl is ahead.
func (h *host) wait(dl time.Time) bool {
	select {
	case <-h.changed:
	case <-time.After(time.Millisecond):
	}
	return time.Now().Before(dl)
}

// hostDevice is the gateway's device in these tests: what the gateway
// writes goes to a simulated host's engine (input), what the host sends
// (toGW) is what the gateway reads.
type hostDevice struct {
	toGW  <-chan []byte
	input func([]byte)
	done  chan struct{}
	once  sync.Once
}

func newHostDevice(toGW <-chan []byte, input func([]byte)) *hostDevice {
	return &hostDevice{toGW: toGW, input: input, done: make(chan struct{})}
}

func (d *hostDevice) Read(buf []byte) (tun.Packet, error) {
	select {
	case b := <-d.toGW:
		return tun.Packet{Data: buf[:copy(buf, b)]}, nil
	case <-d.done:
		return tun.Packet{}, net.ErrClosed
	}
}

func (d *hostDevice) Write(p tun.Packet) error {
	d.input(append(append([]byte(nil), p.Data...), p.Payload...))
	return nil
}

func (d *hostDevice) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

// e2e starts a fabric, the gateway (with the given custody memory and
// impairment spec) on a hostDevice, and a node stack.
func e2e(t testing.TB, custody int64, impair string) (*ultcp.Stack, *gateway.Gateway, *host) {
	t.Helper()
	var r [6]byte
	rand.Read(r[:])
	dir := filepath.Join("/dev/shm", "ultcp-e2e-test-"+hex.EncodeToString(r[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := newHost(e2eHost)
	dev := newHostDevice(h.toGW, h.input)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := gateway.New(gateway.Config{FabricDir: dir, Addr: e2eGW, Device: dev, Custody: custody, Impair: impair, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		gw.Run(ctx)
	}()
	go h.run(ctx)
	t.Cleanup(func() {
		cancel()
		gw.Close()
		dev.Close()
		<-done
	})
	s, err := ultcp.NewStack(ultcp.Config{Addr: e2eNode, FabricDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, gw, h
}

// pattern is n bytes no two runs of the test share.
func pattern(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// exchange dials the host through the gateway from s, sends up bytes and
// receives down bytes back, checking both by SHA-256, and returns the
// node's connection (closed).
func exchange(t *testing.T, s *ultcp.Stack, h *host, up, down int) *ultcp.Conn {
	t.Helper()
	dl := time.Now().Add(60 * time.Second)
	d := ultcp.Dialer{Stack: s, Timeout: 10 * time.Second}
	c, err := d.DialTCP(context.Background(), "tcp", e2eHost.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(dl)
	data := pattern(up)
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	if got := h.readAll(t, up, dl); got != sha(data) {
		t.Fatalf("the outside host received %d bytes with SHA-256 %s, want %s", up, got, sha(data))
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	back := pattern(down)
	herr := make(chan error, 1)
	go func() { herr <- h.writeAll(back, dl) }()
	got := make([]byte, down)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("node read %v (host: %v)", err, <-herr)
	}
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, back) {
		t.Fatalf("the node received %d bytes that differ from what the host sent", down)
	}
	return c
}

// A node exchanges 4 MiB up and 1 MiB down with an outside host through
// the real gateway: the bytes arrive intact both ways, the node's flow is
// a retaining one (no custody) through the gateway.
func TestThroughRealGatewayNodeExchangesWithOutsideHost(t *testing.T) {
	s, gw, h := e2e(t, 0, "")
	c := exchange(t, s, h, 4<<20, 1<<20)
	i := c.Info()
	if !i.Gateway || i.Custody || i.SndMSS != 1448 {
		t.Fatalf("node's flow: Gateway %v, Custody %v, SndMSS %d; want true, false, 1448", i.Gateway, i.Custody, i.SndMSS)
	}
	if g := s.GatewayStats(); g.Dials != 1 || g.Grants != 0 {
		t.Fatalf("GatewayStats Dials %d, Grants %d; want 1, 0", g.Dials, g.Grants)
	}
	if st := gw.Stats(); st.OutBytes.Load() < 4<<20 || st.InBytes.Load() < 1<<20 {
		t.Fatalf("gateway counted %d bytes out, %d in; want at least 4 MiB and 1 MiB", st.OutBytes.Load(), st.InBytes.Load())
	}
}

// The same through a path that loses 2 % of what goes out, without
// custody: the node retransmits itself, and everything arrives.
func TestThroughRealGatewayLossIsRepairedByTheNode(t *testing.T) {
	s, _, h := e2e(t, 0, "loss=0.02,seed=7")
	c := exchange(t, s, h, 4<<20, 64<<10)
	if st := c.Info().Stats; st.Retransmits == 0 {
		t.Fatal("no retransmission by the node on a path losing 2 %")
	}
}

// With custody (16 MiB) on the same lossy path: the gateway takes custody
// (GRANT), resends what is lost and reports it (LOSS), the node keeps
// nothing and retransmits nothing, and everything arrives.
func TestThroughRealGatewayWithCustodyTheGatewayRepairsLoss(t *testing.T) {
	s, _, h := e2e(t, 16<<20, "loss=0.02,seed=7")
	c := exchange(t, s, h, 4<<20, 64<<10)
	i, g := c.Info(), s.GatewayStats()
	if g.Grants == 0 || !i.Custody {
		t.Fatalf("Grants %d, Custody %v: the gateway never took custody", g.Grants, i.Custody)
	}
	// GRANT came before the SYN-ACK: custody from the first byte, which
	// the writer sent at once.
	if i.RetainedPeak != 0 || i.Stats.Retransmits != 0 {
		t.Fatalf("the node retained up to %d bytes and retransmitted %d segments; want 0, 0",
			i.RetainedPeak, i.Stats.Retransmits)
	}
	if g.Losses == 0 || i.Stats.CustodyLosses == 0 {
		t.Fatalf("LOSS messages %d, CustodyLosses %d on a path losing 2 %%; want > 0", g.Losses, i.Stats.CustodyLosses)
	}
	t.Logf("node: retransmits %d, custody losses %d, retained %d at the end; gateway: GRANTs %d, REVOKEs %d",
		i.Stats.Retransmits, i.Stats.CustodyLosses, i.Retained, g.Grants, g.Revokes)
}

// With custody (16 MiB) on a clean path: the gateway takes custody
// (GRANT), and the node sends the rest keeping nothing for
// retransmission.
func TestThroughRealGatewayCustodyIsGranted(t *testing.T) {
	s, _, h := e2e(t, 16<<20, "")
	c := exchange(t, s, h, 4<<20, 64<<10)
	i, g := c.Info(), s.GatewayStats()
	if g.Grants != 1 || !i.Custody || i.Retained != 0 || i.RetainedPeak != 0 || i.Stats.Retransmits != 0 {
		t.Fatalf("Grants %d, Custody %v, Retained %d, RetainedPeak %d, Retransmits %d; want 1, true, 0, 0, 0",
			g.Grants, i.Custody, i.Retained, i.RetainedPeak, i.Stats.Retransmits)
	}
}

// A host outside dials a node's listener through the gateway: the node
// accepts a connection from the outside address and echoes 1 MiB intact.
func TestThroughRealGatewayOutsideHostDialsNode(t *testing.T) {
	s, _, h := e2e(t, 0, "")
	l, err := s.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dl := time.Now().Add(60 * time.Second)
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		defer c.Close()
		io.Copy(c, c)
	}()
	h.dial(t, 5555, netip.AddrPortFrom(e2eNode, 80), dl)
	c, ok := <-accepted
	if !ok {
		t.Fatal("Accept failed")
	}
	if got := c.RemoteAddr().String(); got != "192.0.2.10:5555" {
		t.Fatalf("accepted a connection from %s, want 192.0.2.10:5555", got)
	}
	data := pattern(1 << 20)
	herr := make(chan error, 1)
	go func() { herr <- h.writeAll(data, dl) }()
	if got := h.readAll(t, len(data), dl); got != sha(data) {
		t.Fatalf("the echo has SHA-256 %s, want %s", got, sha(data))
	}
	if err := <-herr; err != nil {
		t.Fatal(err)
	}
	if g := s.GatewayStats(); g.Inbound != 1 || g.Spoofed != 0 {
		t.Fatalf("Inbound %d, Spoofed %d; want 1, 0", g.Inbound, g.Spoofed)
	}
}

// An outside host dials a node through a gateway with custody, on a path
// that loses 2 %: GRANT reaches the node in SYN-RECEIVED (before the
// host's ACK), so the accepted connection sends in custody from its first
// byte: nothing retained at any time, no retransmission of its own, and
// the host receives 1 MiB intact.
func TestThroughRealGatewayCustodyOfAnAcceptedConnection(t *testing.T) {
	s, _, h := e2e(t, 16<<20, "loss=0.02,seed=5")
	l, err := s.ListenTCP("tcp", ":80")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dl := time.Now().Add(60 * time.Second)
	data := pattern(1 << 20)
	info := make(chan ultcp.ConnInfo, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			close(info)
			return
		}
		defer c.Close()
		c.SetDeadline(dl)
		if _, err := c.Write(data); err != nil {
			close(info)
			return
		}
		info <- c.(*ultcp.Conn).Info()
	}()
	h.dial(t, 5556, netip.AddrPortFrom(e2eNode, 80), dl)
	if got := h.readAll(t, len(data), dl); got != sha(data) {
		t.Fatalf("the host received SHA-256 %s, want %s", got, sha(data))
	}
	i, ok := <-info
	if !ok {
		t.Fatal("the node's Accept or Write failed")
	}
	if !i.Custody || i.RetainedPeak != 0 || i.Stats.Retransmits != 0 {
		t.Fatalf("accepted connection: Custody %v, RetainedPeak %d, Retransmits %d; want true, 0, 0",
			i.Custody, i.RetainedPeak, i.Stats.Retransmits)
	}
	if g := s.GatewayStats(); g.Grants != 1 || g.Losses == 0 {
		t.Fatalf("GRANTs %d, LOSS messages %d; want 1 and some (the gateway repaired the path's losses)", g.Grants, g.Losses)
	}
}

// custodyBenchSize is the size of BenchmarkThroughGatewayCustody's
// transfers: 2 MiB, or ULTCP_CUSTODY_MIB mebibytes.
func custodyBenchSize(b *testing.B) int {
	v := os.Getenv("ULTCP_CUSTODY_MIB")
	if v == "" {
		return 2 << 20
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 || n > 1024 {
		b.Fatalf("ULTCP_CUSTODY_MIB=%q: want a number of MiB from 1 to 1024", v)
	}
	return n << 20
}

// BenchmarkThroughGatewayCustody sends 2 MiB (ULTCP_CUSTODY_MIB) per
// iteration from a node to the outside host through the real gateway on
// a path with 20 ms of one-way delay and 1 % loss on the way out, in
// writes of 64 KiB and of 1 MiB, with and without custody (16 MiB):
// issue #7's custody table. It reports, per transfer, the node's peak
// bytes held for retransmission (ConnInfo.RetainedPeak: sent,
// unacknowledged and not in the gateway's custody, the most at once), the
// time Write blocked in all and at most, the node's own retransmissions
// and the losses the gateway reported (LOSS), and MB/s. At 1 % loss and
// 20 ms a Reno-like flow gets about MSS/RTT·1.22/√p ≈ 0.9 MB/s (Mathis et
// al.). A 2 MiB transfer is mostly slow start, and where its first losses
// fall makes one run take 0.3 s or 3 s: for the table, use
// ULTCP_CUSTODY_MIB=8 or more and several iterations.
func BenchmarkThroughGatewayCustody(b *testing.B) {
	for _, bc := range []struct {
		name    string
		custody int64
		write   int
	}{
		{"retain/64KiB", 0, 64 << 10}, {"custody/64KiB", 16 << 20, 64 << 10},
		{"retain/1MiB", 0, 1 << 20}, {"custody/1MiB", 16 << 20, 1 << 20},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			s, _, h := e2e(b, bc.custody, "delay=20ms,loss=0.01,seed=3")
			size := custodyBenchSize(b)
			data := pattern(size)
			b.SetBytes(int64(size))
			var peak int
			var blocked, maxBlock time.Duration
			var retx, losses uint64
			for b.Loop() {
				c, err := s.Dial("tcp", e2eHost.String())
				if err != nil {
					b.Fatal(err)
				}
				uc := c.(*ultcp.Conn)
				uc.SetDeadline(time.Now().Add(2 * time.Minute))
				werr := make(chan error, 1)
				go func() {
					for off := 0; off < size; off += bc.write {
						t0 := time.Now()
						if _, err := c.Write(data[off:min(off+bc.write, size)]); err != nil {
							werr <- err
							return
						}
						d := time.Since(t0)
						blocked += d
						maxBlock = max(maxBlock, d)
					}
					werr <- nil
				}()
				if err := h.drain(size, time.Now().Add(2*time.Minute)); err != nil {
					b.Fatal(err)
				}
				if err := <-werr; err != nil {
					b.Fatal(err)
				}
				i := uc.Info()
				peak = max(peak, i.RetainedPeak)
				retx, losses = retx+i.Stats.Retransmits, losses+i.Stats.CustodyLosses
				c.Close()
				h.reset()
			}
			b.ReportMetric(float64(peak), "peak-retained-B")
			b.ReportMetric(blocked.Seconds()/float64(b.N), "write-blocked-s/op")
			b.ReportMetric(float64(maxBlock.Microseconds()), "max-write-µs")
			b.ReportMetric(float64(retx)/float64(b.N), "retx/op")
			b.ReportMetric(float64(losses)/float64(b.N), "LOSS/op")
		})
	}
}
