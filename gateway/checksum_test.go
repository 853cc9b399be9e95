package gateway

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

func TestCopySumOfRFC1071ExampleBytes(t *testing.T) {
	// RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
	src := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	dst := make([]byte, len(src))
	if got := copySum(dst, src); got != 0xddf2 {
		t.Fatalf("copySum = %#04x, want 0xddf2", got)
	}
	if !bytes.Equal(dst, src) {
		t.Fatalf("copied % x, want % x", dst, src)
	}
}

func TestCopySumAgreesWithWireSumAtEveryLengthUpTo300(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	src := make([]byte, 300)
	for i := range src {
		src[i] = byte(r.Uint32())
	}
	for n := 0; n <= len(src); n++ {
		dst := make([]byte, n+8)
		for i := range dst {
			dst[i] = 0xaa
		}
		if got, want := copySum(dst, src[:n]), wire.Sum(src[:n]); got != want {
			t.Fatalf("n=%d: copySum %#04x, wire.Sum %#04x", n, got, want)
		}
		if !bytes.Equal(dst[:n], src[:n]) || dst[n] != 0xaa {
			t.Fatalf("n=%d: copy wrong or wrote past the source length", n)
		}
	}
}

func TestCopySumOfAllOnesIsNotMinusZeroTrouble(t *testing.T) {
	// Sums that carry out of every word: 0xff bytes fold to 0xffff.
	src := bytes.Repeat([]byte{0xff}, 1000)
	if got, want := copySum(make([]byte, 1000), src), wire.Sum(src); got != want {
		t.Fatalf("copySum %#04x, wire.Sum %#04x", got, want)
	}
}

func TestClampMSSLowersOnlyALargerMSS(t *testing.T) {
	for _, tc := range []struct {
		opts    []byte
		clamp   uint16
		changed bool
		want    []byte
	}{
		{mssOpt(1460), 1360, true, mssOpt(1360)},
		{mssOpt(1200), 1360, false, mssOpt(1200)},
		{append([]byte{1, 1, 4, 2}, mssOpt(9000)...), 1460, true, append([]byte{1, 1, 4, 2}, mssOpt(1460)...)}, // NOP NOP SACK-permitted, then MSS
		{[]byte{0, 0, 0, 0}, 1460, false, []byte{0, 0, 0, 0}},                                                  // end of options
		{[]byte{2, 3, 0xff, 0xff}, 1460, false, []byte{2, 3, 0xff, 0xff}},                                      // MSS with a bad length
		{[]byte{8, 0, 2, 4}, 1460, false, []byte{8, 0, 2, 4}},                                                  // length 0: malformed list
		{[]byte{1, 1, 1, 2}, 1460, false, []byte{1, 1, 1, 2}},                                                  // kind without its length byte
	} {
		th := make([]byte, 20+len(tc.opts))
		copy(th[20:], tc.opts)
		if got := clampMSS(th, tc.clamp); got != tc.changed || !bytes.Equal(th[20:], tc.want) {
			t.Errorf("options % x clamp %d: changed %v, now % x; want %v, % x", tc.opts, tc.clamp, got, th[20:], tc.changed, tc.want)
		}
	}
}

func BenchmarkCopySum(b *testing.B) {
	for _, n := range []int{1448, 65000} {
		src := make([]byte, n)
		dst := make([]byte, n)
		b.Run(fmt.Sprintf("onepass/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				copySum(dst, src)
			}
		})
		b.Run(fmt.Sprintf("copy+sum/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst, src)
				wire.Sum(dst)
			}
		})
		b.Run(fmt.Sprintf("copy/%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				copy(dst, src)
			}
		})
	}
}

// nullDevice discards what is written (the benchmarks measure the
// gateway's own work per packet, not the kernel's).
type nullDevice struct{ n int }

func (d *nullDevice) Read([]byte) (tun.Packet, error) { select {} }
func (d *nullDevice) Write(p tun.Packet) error        { d.n += p.Len(); return nil }
func (d *nullDevice) Close() error                    { return nil }

// BenchmarkOutbound measures what the event loop spends on one node
// segment on its way to the device, after the record is read: checks,
// MSS/TTL, checksums (offloaded or computed while copying), the device
// write call (a no-op here).
func BenchmarkOutbound(b *testing.B) {
	for _, soft := range []bool{false, true} {
		for _, n := range []int{64, 1448, 64000} {
			name := fmt.Sprintf("offload/%d", n)
			if soft {
				name = fmt.Sprintf("soft/%d", n)
			}
			b.Run(name, func(b *testing.B) {
				g := &Gateway{cfg: Config{SoftChecksum: soft}, dev: &nullDevice{}, clamp: 1460, cust: noCustody{},
					out: make([]byte, tun.MaxPacketLen), subnet: netip.MustParsePrefix("10.77.0.0/16"), addr: gw4}
				g.batch.buf = make([]byte, tun.MaxPacketLen)
				f := &Flow{Key: FlowKey{Node: node4, NodePort: 80, Remote: remote4, RemotePort: 40000}, keyed: true, mssOut: 1460, synNode: true, synRemote: true}
				// Segments that never coalesce (PSH on each), as a
				// request-response flow sends them.
				rec := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: 1, ack: 1, flags: flagACK | flagPSH, opts: tsOpt(1, 2), payload: make([]byte, n), zeroChecksums: true}.bytes()
				b.ReportAllocs()
				b.SetBytes(int64(len(rec)))
				for b.Loop() {
					h := g.hdr[:copy(g.hdr[:], rec[:52])]
					binary.BigEndian.PutUint32(h[24:], 1)
					g.sendTCP(0, f, h, 20, rec[52:], false, n)
				}
			})
		}
	}
}

// BenchmarkOutboundCoalesced measures the same for a bulk flow whose
// node sends MSS-sized records: each is copied into the GSO batch, and
// every 45th completes a 64 KiB GSO write.
func BenchmarkOutboundCoalesced(b *testing.B) {
	g := &Gateway{dev: &nullDevice{}, clamp: 1460, cust: noCustody{},
		out: make([]byte, tun.MaxPacketLen), subnet: netip.MustParsePrefix("10.77.0.0/16"), addr: gw4}
	g.batch.buf = make([]byte, tun.MaxPacketLen)
	f := &Flow{Key: FlowKey{Node: node4, NodePort: 80, Remote: remote4, RemotePort: 40000}, keyed: true, mssOut: 1460, synNode: true, synRemote: true}
	rec := seg{src: node4, dst: remote4, sport: 80, dport: 40000, seq: 1, ack: 1, flags: flagACK, opts: tsOpt(1, 2), payload: make([]byte, 1448), zeroChecksums: true}.bytes()
	seq := uint32(1)
	b.ReportAllocs()
	b.SetBytes(int64(len(rec)))
	for b.Loop() {
		h := g.hdr[:copy(g.hdr[:], rec[:52])]
		binary.BigEndian.PutUint32(h[24:], seq)
		seq += 1448
		g.sendTCP(0, f, h, 20, rec[52:], false, 1448)
	}
	g.flushBatch(0)
}

// BenchmarkInbound measures what the event loop spends on one packet from
// the device for an established flow: checks, conntrack lookup, the copy
// onto the node's ring (a goroutine plays the node and drains it).
func BenchmarkInbound(b *testing.B) {
	for _, n := range []int{64, 1448, 64000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			base, err := os.MkdirTemp("/dev/shm", "ultcp-gw-bench-")
			if err != nil {
				b.Fatal(err)
			}
			defer os.RemoveAll(base)
			dir := filepath.Join(base, "fabric")
			g, err := New(Config{FabricDir: dir, Addr: gwAddr, Device: &nullDevice{}, RingSize: 4 << 20, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Close()
			fab, _ := fabric.Open(fabric.Config{Dir: dir, SlabSize: 1 << 30})
			node, err := fab.Join(nodeAddr)
			if err != nil {
				b.Fatal(err)
			}
			defer node.Close()
			g.fromOutside(g.now(), tun.Packet{Data: outsideSYN().bytes()})
			c, err := node.Accept(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					if _, err := c.Peek(); err != nil {
						return
					}
					c.Release()
				}
			}()
			pkt := seg{src: remote4, dst: node4, sport: 40000, dport: 80, seq: 1001, ack: 5001, flags: flagACK, payload: make([]byte, n)}.bytes()
			flow := g.flows.byKey[FlowKey{Node: node4, NodePort: 80, Remote: remote4, RemotePort: 40000}]
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			for b.Loop() {
				pkt[8] = 64
				g.fromOutside(0, tun.Packet{Data: pkt, DataValid: true})
				for len(flow.queue) > 0 { // the node is behind: wait for room as the loop would
					g.flushQueue(flow)
				}
			}
			b.StopTimer()
			g.closeFlow(flow, closeShutdown)
			<-done
		})
	}
}
