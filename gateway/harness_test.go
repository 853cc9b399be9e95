package gateway

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// memDevice is the in-memory packet device of the unit tests: the test
// injects packets the gateway reads, and receives copies of the packets it
// writes (header fields as written, Data and Payload joined).
type memDevice struct {
	in   chan tun.Packet
	out  chan tun.Packet
	done chan struct{}
	once sync.Once
}

func newMemDevice() *memDevice {
	return &memDevice{in: make(chan tun.Packet, 256), out: make(chan tun.Packet, 4096), done: make(chan struct{})}
}

func (d *memDevice) Read(buf []byte) (tun.Packet, error) {
	select {
	case p := <-d.in:
		n := copy(buf, p.Data)
		p.Data = buf[:n]
		return p, nil
	case <-d.done:
		return tun.Packet{}, net.ErrClosed
	}
}

func (d *memDevice) Write(p tun.Packet) error {
	// The real device refuses what its header cannot describe.
	var h [tun.VnetHdrLen]byte
	if err := p.EncodeVnetHdr(h[:]); err != nil {
		return err
	}
	q := p
	q.Data = append(append([]byte(nil), p.Data...), p.Payload...)
	q.Payload = nil
	select {
	case d.out <- q:
		return nil
	default:
		return errors.New("memDevice: output full")
	}
}

func (d *memDevice) Close() error {
	d.once.Do(func() { close(d.done) })
	return nil
}

var (
	gwAddr    = netip.MustParseAddr("10.77.0.1")
	nodeAddr  = netip.MustParseAddr("10.77.0.2")
	node4     = wire.IPv4Addr{10, 77, 0, 2}
	gw4       = wire.IPv4Addr{10, 77, 0, 1}
	remote4   = wire.IPv4Addr{192, 168, 77, 2}
	noNode4   = wire.IPv4Addr{10, 77, 9, 9}
	testClock atomic.Int64 // nanoseconds added to the real clock by tests
)

// harness is a gateway on a memDevice and a fabric of its own, with one
// raw node (no TCP stack: the tests play its records literally).
type harness struct {
	t    *testing.T
	dir  string
	dev  *memDevice
	g    *Gateway
	node *fabric.Node
	fab  *fabric.Fabric
	skew atomic.Int64
	done chan error
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	base, err := os.MkdirTemp("/dev/shm", "ultcp-gw-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	h := &harness{t: t, dir: filepath.Join(base, "fabric"), dev: newMemDevice(), done: make(chan error, 1)}
	cfg := Config{FabricDir: h.dir, Addr: gwAddr, Device: h.dev, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g.clock = func() time.Duration { return time.Since(g.start) + time.Duration(h.skew.Load()) }
	h.g = g
	h.fab, err = fabric.Open(fabric.Config{Dir: h.dir, SlabSize: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	h.node, err = h.fab.Join(nodeAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { h.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-h.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5 s after cancel")
		}
		h.node.Close()
	})
	return h
}

// inject hands the gateway a packet as if the kernel had written it to
// the device.
func (h *harness) inject(p tun.Packet) {
	h.dev.in <- p
}

// devOut waits for the next packet the gateway writes.
func (h *harness) devOut() tun.Packet {
	h.t.Helper()
	select {
	case p := <-h.dev.out:
		return p
	case <-time.After(5 * time.Second):
		h.t.Fatal("no packet on the device within 5 s")
		return tun.Packet{}
	}
}

// noDevOut checks that the gateway writes nothing for a while.
func (h *harness) noDevOut() {
	h.t.Helper()
	select {
	case p := <-h.dev.out:
		h.t.Fatalf("unexpected packet on the device: % x", p.Data)
	case <-time.After(50 * time.Millisecond):
	}
}

// accept waits for the fabric connection the gateway opens to the node.
func (h *harness) accept() *fabric.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.node.Accept(ctx)
	if err != nil {
		h.t.Fatalf("node Accept: %v", err)
	}
	return c
}

// dial opens a fabric connection from the node to the gateway, as the node
// side does for a flow to the outside.
func (h *harness) dial() *fabric.Conn {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.node.Dial(ctx, gwAddr, fabric.ConnConfig{RingSize: 1 << 20})
	if err != nil {
		h.t.Fatalf("node Dial: %v", err)
	}
	return c
}

// recv reads the next record on c.
func (h *harness) recv(c *fabric.Conn) []byte {
	h.t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<17)
	n, err := c.Recv(buf)
	if err != nil {
		h.t.Fatalf("node Recv: %v", err)
	}
	return buf[:n]
}

// waitFor polls cond for up to 5 s.
func (h *harness) waitFor(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("waited 5 s for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// advance moves the gateway's clock on by d and returns once the event
// loop sleeps. The loop reads its clock once an iteration, before it
// drains the device: a packet injected before it slept again could be
// handled at a time read before the move.
func (h *harness) advance(d time.Duration) {
	h.t.Helper()
	h.skew.Add(int64(d))
	h.waitFor("the event loop to sleep", h.g.sleeping.Load)
}

// seg describes a TCP segment literally.
type seg struct {
	src, dst         wire.IPv4Addr
	sport, dport     uint16
	seq, ack         uint32
	flags            byte
	win              uint16
	zeroWin          bool // window 0 (else win, default 65535)
	opts             []byte
	payload          []byte
	ttl              byte
	zeroChecksums    bool // as a node writes it on the fabric
	corruptChecksums bool
}

// bytes builds the IPv4 packet.
func (s seg) bytes() []byte {
	thl := 20 + len(s.opts)
	n := 20 + thl + len(s.payload)
	b := make([]byte, n)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	binary.BigEndian.PutUint16(b[6:], 0x4000)
	b[8] = s.ttl
	if b[8] == 0 {
		b[8] = 64
	}
	b[9] = 6
	copy(b[12:], s.src[:])
	copy(b[16:], s.dst[:])
	th := b[20:]
	binary.BigEndian.PutUint16(th[0:], s.sport)
	binary.BigEndian.PutUint16(th[2:], s.dport)
	binary.BigEndian.PutUint32(th[4:], s.seq)
	binary.BigEndian.PutUint32(th[8:], s.ack)
	th[12] = byte(thl/4) << 4
	th[13] = s.flags
	win := s.win
	if win == 0 && !s.zeroWin {
		win = 65535
	}
	binary.BigEndian.PutUint16(th[14:], win)
	copy(th[20:], s.opts)
	copy(th[thl:], s.payload)
	if !s.zeroChecksums {
		binary.BigEndian.PutUint16(b[10:], wire.Checksum(b[:20]))
		binary.BigEndian.PutUint16(th[16:], wire.TCPChecksum(s.src, s.dst, th[:thl], s.payload))
		if s.corruptChecksums {
			th[16] ^= 0xff
		}
	}
	return b
}

// mssOpt is the MSS option (RFC 9293 §3.2).
func mssOpt(mss uint16) []byte { return []byte{2, 4, byte(mss >> 8), byte(mss)} }

// tsOpt is NOP NOP timestamps (RFC 7323 §3), 12 bytes.
func tsOpt(val, ecr uint32) []byte {
	b := []byte{1, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[4:], val)
	binary.BigEndian.PutUint32(b[8:], ecr)
	return b
}

// finishPartial completes a NEEDS_CSUM packet's checksum as the kernel
// would (sum from CsumStart to the end into the field holding the
// pseudo-header sum) and returns the packet.
func finishPartial(p tun.Packet) []byte {
	b := append([]byte(nil), p.Data...)
	if !p.NeedsCsum {
		return b
	}
	at := int(p.CsumStart) + int(p.CsumOffset)
	partial := binary.BigEndian.Uint16(b[at:])
	b[at], b[at+1] = 0, 0
	s := wire.Combine(partial, wire.Sum(b[p.CsumStart:]), 0)
	binary.BigEndian.PutUint16(b[at:], ^s)
	return b
}

// checkOutsideChecksums verifies a packet the gateway wrote: the IPv4
// header checksum and, once the kernel's part is done, the TCP checksum.
func checkOutsideChecksums(t *testing.T, p tun.Packet) {
	t.Helper()
	if p.GSOSize != 0 {
		return // the kernel finishes each segment's checksum
	}
	b := finishPartial(p)
	if wire.Checksum(b[:20]) != 0 {
		t.Fatalf("IPv4 header checksum wrong: % x", b[:20])
	}
	if b[9] == 6 {
		if err := wire.VerifyTCPChecksum(wire.IPv4Addr(b[12:16]), wire.IPv4Addr(b[16:20]), b[20:]); err != nil {
			t.Fatalf("TCP checksum wrong: %v", err)
		}
	}
	if b[9] == 1 && wire.Checksum(b[20:]) != 0 {
		t.Fatal("ICMP checksum wrong")
	}
}
