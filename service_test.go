package ultcp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/gateway"
	"github.com/ultcp/ultcp/gateway/lb"
	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Services through the real gateway (issue 8), in one process: member
// stacks listen on a service address, the gateway spreads connections
// from an outside host (the engine, as in gateway_e2e_test.go, here with
// one engine connection per local port) over them.

var (
	svcVIP   = netip.MustParseAddrPort("10.77.255.1:80")
	svcHost  = netip.MustParseAddr("192.0.2.20")
	svcNodes = []netip.Addr{netip.MustParseAddr("10.77.0.11"), netip.MustParseAddr("10.77.0.12")}
)

// multiHost is an outside host with many engine connections, told apart
// by local port.
type multiHost struct {
	mu      sync.Mutex
	conns   map[uint16]*tcp.Conn
	peers   map[uint16]wire.IPv4Addr
	out     []tcp.Segment
	start   time.Time
	toGW    chan []byte
	changed chan struct{}
}

func (h *multiHost) now() time.Duration { return time.Since(h.start) }

func (h *multiHost) input(pkt []byte) {
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
	if c := h.conns[seg.Hdr.DstPort]; c != nil && h.peers[seg.Hdr.DstPort] == p.Src() {
		h.out = c.Input(h.now(), &seg, h.out[:0])
		h.flushLocked(h.peers[seg.Hdr.DstPort])
	}
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *multiHost) flushLocked(dst wire.IPv4Addr) {
	self := svcHost.As4()
	for i := range h.out {
		s := &h.out[i]
		hl := s.Hdr.EncodedLen()
		b := make([]byte, wire.IPv4HeaderLen+hl+len(s.Payload))
		ip := wire.IPv4Header{TTL: 64, Protocol: 6, DontFrag: true, Src: self, Dst: dst, PayloadLen: uint16(hl + len(s.Payload))}
		ip.Encode(b)
		if _, err := s.Hdr.Encode(b[wire.IPv4HeaderLen:]); err != nil {
			continue
		}
		copy(b[wire.IPv4HeaderLen+hl:], s.Payload)
		wire.SetTCPChecksum(self, dst, b[wire.IPv4HeaderLen:wire.IPv4HeaderLen+hl], s.Payload)
		select {
		case h.toGW <- b:
		default: // a loss; TCP repairs it
		}
	}
	h.out = h.out[:0]
}

func (h *multiHost) run(ctx context.Context) {
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		for port, c := range h.conns {
			if d := c.Deadline(); d != 0 && d <= h.now() {
				h.out = c.OnTimer(h.now(), h.out[:0])
				h.flushLocked(h.peers[port])
			}
		}
		h.mu.Unlock()
	}
}

// get opens a connection from lport to dst, sends req (once the
// handshake is done), reads until the peer closes and returns what it
// read, and closes its side.
func (h *multiHost) get(lport uint16, dst netip.AddrPort, req string, dl time.Time) (string, error) {
	return h.exchange(lport, dst, req, dl, true)
}

// exchange is get, closing its side only if close: otherwise the
// connection stays half-closed, the peer's FIN taken, its own not sent.
func (h *multiHost) exchange(lport uint16, dst netip.AddrPort, req string, dl time.Time, close bool) (string, error) {
	cfg := hostConfig
	h.mu.Lock()
	var c *tcp.Conn
	c, h.out = tcp.Dial(h.now(), &cfg, lport, dst.Port(), 0x1000+uint32(lport), h.out[:0])
	h.conns[lport], h.peers[lport] = c, dst.Addr().As4()
	h.flushLocked(dst.Addr().As4())
	h.mu.Unlock()
	written := req == ""
	var got []byte
	buf := make([]byte, 4096)
	for time.Now().Before(dl) {
		h.mu.Lock()
		if !written && c.State() == tcp.Established {
			// After the handshake, in a segment of its own, as a
			// kernel's write after connect(2) returned.
			c.Write([]byte(req))
			written = true
		}
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		h.out = c.Output(h.now(), h.out[:0]) // the request, or the window update reading made due
		h.flushLocked(dst.Addr().As4())
		st := c.State()
		h.mu.Unlock()
		if errors.Is(err, io.EOF) {
			if close {
				h.mu.Lock()
				h.out = c.Close(h.now(), h.out[:0])
				h.flushLocked(dst.Addr().As4())
				h.mu.Unlock()
			}
			return string(got), nil
		}
		if err != nil || st == tcp.Closed {
			return string(got), errors.New("connection failed: " + st.String())
		}
		if n == 0 {
			select {
			case <-h.changed:
			case <-time.After(time.Millisecond):
			}
		}
	}
	return string(got), errors.New("deadline")
}

// serviceSetup starts a gateway on a multiHost's device with vip's policy
// set, and one member stack per address in svcNodes, each answering
// "NODE LOCALADDR\n" on the service and closing.
func serviceSetup(t *testing.T, p lb.Policy) (*gateway.Gateway, *multiHost, []net.Listener) {
	return serviceSetupWith(t, p, nil)
}

// serviceSetupWith is serviceSetup where member i is a stuck member if
// stuck[i]: it never accepts, and its stack leaves what arrives in the
// ring (Config.Grace of an hour), as a process that stopped would.
func serviceSetupWith(t *testing.T, p lb.Policy, stuck []bool) (*gateway.Gateway, *multiHost, []net.Listener) {
	t.Helper()
	var r [6]byte
	rand.Read(r[:])
	dir := filepath.Join("/dev/shm", "ultcp-svc-test-"+hex.EncodeToString(r[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	h := &multiHost{conns: map[uint16]*tcp.Conn{}, peers: map[uint16]wire.IPv4Addr{}, start: time.Now(),
		toGW: make(chan []byte, 4096), changed: make(chan struct{}, 1)}
	dev := newHostDevice(h.toGW, h.input)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	gw, err := gateway.New(gateway.Config{FabricDir: dir, Addr: e2eGW, Device: dev, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.SetServicePolicy(svcVIP, p); err != nil {
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
	var ls []net.Listener
	for i, a := range svcNodes {
		isStuck := i < len(stuck) && stuck[i]
		cfg := ultcp.Config{Addr: a, FabricDir: dir, Logger: quiet}
		if isStuck {
			cfg.Grace = time.Hour
		}
		s, err := ultcp.NewStack(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		l, err := s.Listen("tcp", svcVIP.String())
		if err != nil {
			t.Fatal(err)
		}
		if l.Addr().String() != svcVIP.String() {
			t.Fatalf("service listener's Addr %v, want %v", l.Addr(), svcVIP)
		}
		ls = append(ls, l)
		if isStuck {
			continue
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				// Read what the client sent, if anything, so that
				// Close does not reset (RFC 9293 §3.10.4: unread data).
				c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
				c.Read(make([]byte, 512))
				c.Write([]byte(a.String() + " " + c.LocalAddr().String() + "\n"))
				c.Close()
			}
		}()
	}
	waitMembers(t, gw, len(svcNodes))
	return gw, h, ls
}

// waitMembers waits until the gateway shows n members of svcVIP up.
func waitMembers(t *testing.T, gw *gateway.Gateway, n int) {
	t.Helper()
	dl := time.Now().Add(5 * time.Second)
	for {
		up := 0
		for _, m := range gw.Services()[svcVIP] {
			if m.State == "up" {
				up++
			}
		}
		if up == n {
			return
		}
		if time.Now().After(dl) {
			t.Fatalf("gateway shows %d members of %v up after 5 s, want %d: %+v", up, svcVIP, n, gw.Services())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Round robin over two members: eight connections to the service go four
// to each, every answer comes from the service's address (the member's
// connection has the VIP as its local address), and after one member
// closes its listener the next four all go to the other.
func TestServiceSpreadsConnectionsAndMembersLeaveByClosing(t *testing.T) {
	gw, h, ls := serviceSetup(t, lb.RoundRobin)
	dl := time.Now().Add(20 * time.Second)
	count := map[string]int{}
	for i := range 8 {
		got, err := h.get(uint16(41000+i), svcVIP, "", dl)
		if err != nil {
			t.Fatalf("connection %d: %v (read %q)", i, err, got)
		}
		node, local, _ := strings.Cut(strings.TrimSpace(got), " ")
		if local != svcVIP.String() {
			t.Fatalf("connection %d: member %s answered with local address %q, want %v", i, node, local, svcVIP)
		}
		count[node]++
	}
	if count[svcNodes[0].String()] != 4 || count[svcNodes[1].String()] != 4 {
		t.Fatalf("round robin gave %v, want 4 each", count)
	}
	ls[0].Close()
	waitMembers(t, gw, 1)
	for i := range 4 {
		got, err := h.get(uint16(42000+i), svcVIP, "", dl)
		if err != nil {
			t.Fatalf("connection %d after the leave: %v", i, err)
		}
		if node, _, _ := strings.Cut(got, " "); node != svcNodes[1].String() {
			t.Fatalf("connection %d after %v left went to %s", i, svcNodes[0], node)
		}
	}
	for _, m := range gw.Services()[svcVIP] {
		if m.Addr == svcNodes[0] && (m.State != "left" || m.Assigned != 4) {
			t.Fatalf("member that left: %+v, want state left with 4 assigned", m)
		}
	}
	// The same in the Prometheus output.
	dlm := time.Now().Add(2 * time.Second)
	for {
		got := map[string]float64{}
		mfs, err := gw.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "ultcp_gateway_service_connections_assigned_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "member" {
						got[lp.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
		if got[svcNodes[0].String()] == 4 && got[svcNodes[1].String()] == 8 {
			break
		}
		if time.Now().After(dlm) {
			t.Fatalf("ultcp_gateway_service_connections_assigned_total by member %v, want 4 and 8", got)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A member that answered and sent its FIN has no work left on that
// connection, even while the outside end keeps its side open: the
// gateway stops counting the flow as the FIN goes through (it still
// forwards it). Four half-closed connections over two members leave
// both at zero open connections in the gateway's view.
func TestServiceMemberFINEndsItsConnectionForTheScheduler(t *testing.T) {
	gw, h, _ := serviceSetup(t, lb.LeastConn)
	dl := time.Now().Add(20 * time.Second)
	for i := range 4 {
		if got, err := h.exchange(uint16(44000+i), svcVIP, "", dl, false); err != nil {
			t.Fatalf("connection %d: %v (read %q)", i, err, got)
		}
	}
	if open := gw.Stats().Flows.Load(); open < 4 {
		t.Fatalf("the gateway has %d flows, want the 4 half-closed ones still forwarded", open)
	}
	// The view is published every 100 ms.
	for wait := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		conns, assigned := 0, uint64(0)
		for _, m := range gw.Services()[svcVIP] {
			conns += m.Conns
			assigned += m.Assigned
		}
		if conns == 0 && assigned == 4 {
			return
		}
		if time.Now().After(wait) {
			t.Fatalf("members hold %d connections of the 4 assigned after 2 s, want 0: %+v", conns, gw.Services()[svcVIP])
		}
	}
}

// A stack cannot make a service of a live node's address.
func TestServiceListenOnALiveNodesAddressFails(t *testing.T) {
	var r [6]byte
	rand.Read(r[:])
	dir := filepath.Join("/dev/shm", "ultcp-svc-test-"+hex.EncodeToString(r[:]))
	t.Cleanup(func() { os.RemoveAll(dir) })
	a, err := ultcp.NewStack(ultcp.Config{Addr: svcNodes[0], FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ultcp.NewStack(ultcp.Config{Addr: svcNodes[1], FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if l, err := a.Listen("tcp", svcNodes[1].String()+":80"); err == nil {
		l.Close()
		t.Fatalf("Listen on %v (a live node's address) succeeded", svcNodes[1])
	}
	// The port stays free for a listen on the stack's own address.
	l, err := a.Listen("tcp", ":80")
	if err != nil {
		t.Fatalf("Listen on the stack's own port 80 after the failed service listen: %v", err)
	}
	l.Close()
}

// A member that holds data and consumes none is removed within a second
// (gateway/lb's stall timeout, 250 ms): the connection it held is reset,
// and every later one goes to the other member.
func TestServiceMemberThatStopsConsumingIsRemovedAndItsConnectionReset(t *testing.T) {
	gw, h, _ := serviceSetupWith(t, lb.RoundRobin, []bool{true, false})
	dl := time.Now().Add(20 * time.Second)
	// Round robin starts with the first member to join; either may be
	// first, so two connections make sure the stuck one gets one.
	start := time.Now()
	var failed int
	for i := range 2 {
		got, err := h.get(uint16(43000+i), svcVIP, "GET / HTTP/1.0\r\n\r\n", dl)
		if err != nil {
			failed++
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("the stuck member's connection failed only after %v", took)
			}
			continue
		}
		if node, _, _ := strings.Cut(got, " "); node != svcNodes[1].String() {
			t.Fatalf("connection %d answered by %q, want the live member %v", i, got, svcNodes[1])
		}
	}
	if failed != 1 {
		t.Fatalf("%d of 2 connections failed, want the stuck member's one", failed)
	}
	for i := range 4 {
		got, err := h.get(uint16(44000+i), svcVIP, "", dl)
		if err != nil {
			t.Fatalf("connection %d after the removal: %v", i, err)
		}
		if node, _, _ := strings.Cut(got, " "); node != svcNodes[1].String() {
			t.Fatalf("connection %d after the removal went to %q", i, got)
		}
	}
	dlm := time.Now().Add(2 * time.Second)
	for {
		var stuck gateway.ServiceMember
		for _, m := range gw.Services()[svcVIP] {
			if m.Addr == svcNodes[0] {
				stuck = m
			}
		}
		if stuck.State == "removed" && stuck.Removals == 1 && stuck.Resets == 1 {
			break
		}
		if time.Now().After(dlm) {
			t.Fatalf("stuck member: %+v; want removed once, one connection reset", stuck)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
