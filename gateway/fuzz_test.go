package gateway

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/link/tun"
)

// fuzzGateway is a gateway that is not running: the fuzz function calls
// its packet handlers directly, as the event loop would, on one goroutine.
func fuzzGateway(f *testing.F) (*Gateway, *fabric.Conn) {
	base, err := os.MkdirTemp("/dev/shm", "ultcp-gw-fuzz-")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "fabric")
	g, err := New(Config{FabricDir: dir, Addr: gwAddr, Device: &nullDevice{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { g.Close() })
	fab, err := fabric.Open(fabric.Config{Dir: dir, SlabSize: 1 << 30})
	if err != nil {
		f.Fatal(err)
	}
	n, err := fab.Join(nodeAddr)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	c, err := n.Dial(context.Background(), gwAddr, fabric.ConnConfig{})
	if err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5e9)
	defer cancel()
	gc, err := g.node.Accept(ctx)
	if err != nil {
		f.Fatal(err)
	}
	_ = c
	return g, gc
}

// FuzzFromDevice: any bytes and any virtio-net metadata from the device
// are dropped and counted or forwarded, never a panic.
func FuzzFromDevice(f *testing.F) {
	f.Add(outsideSYN().bytes(), false, false, uint16(0))
	f.Add(seg{src: remote4, dst: node4, sport: 1, dport: 2, seq: 3, ack: 4, flags: flagACK, payload: []byte("x")}.bytes(), false, false, uint16(0))
	f.Add(echoRequest(node4), false, false, uint16(0))
	f.Add(echoRequest(noNode4), true, false, uint16(0))
	f.Add([]byte{0x45, 0, 0, 20}, false, true, uint16(1448))
	g, _ := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, b []byte, dataValid, needsCsum bool, gso uint16) {
		p := tun.Packet{Data: append([]byte(nil), b...), DataValid: dataValid, NeedsCsum: needsCsum, GSOSize: gso}
		g.fromOutside(g.now(), p)
		for _, fl := range g.flows.byConn {
			g.closeFlow(fl, closeShutdown) // keep the table (and the fabric's slab) small
		}
	})
}

// FuzzFromNode: any record on a node's connection is dropped and counted
// or forwarded, never a panic; a bad one closes its flow.
func FuzzFromNode(f *testing.F) {
	f.Add(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7000, flags: flagSYN, opts: mssOpt(1460), zeroChecksums: true}.bytes(), false, 0)
	f.Add(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 1, flags: flagACK, payload: make([]byte, 3000), zeroChecksums: true}.bytes(), false, 0)
	f.Add(seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7001, ack: 1, flags: flagACK, zeroChecksums: true}.bytes(), true, 100000)
	f.Add([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 253, 0, 0, 10, 77, 0, 2, 10, 77, 0, 1, 'U', 'C', 1, 3, 0, 0, 0, 0}, false, 0)
	g, conn := fuzzGateway(f)
	f.Fuzz(func(t *testing.T, b []byte, dma bool, dmaLen int) {
		if dmaLen < 0 || dmaLen > 1<<20 {
			dmaLen = 0
		}
		fl := &Flow{conn: conn, fromNode: true}
		g.flows.add(fl)
		// A SYN first, so that later records meet a keyed flow too.
		syn := seg{src: node4, dst: remote4, sport: 50000, dport: 443, seq: 7000, flags: flagSYN, zeroChecksums: true}.bytes()
		if len(b) > 0 && b[0]&1 == 1 {
			g.fromNode(g.now(), fl, fabric.Record{Data: syn})
		}
		if !fl.closed {
			r := fabric.Record{Data: append([]byte(nil), b...), DMA: dma}
			if dma {
				r.DMALen = dmaLen
			}
			g.fromNode(g.now(), fl, r)
			g.flushBatch(g.now())
		}
		if !fl.closed {
			fl.closed = true
			g.flows.remove(fl)
		}
	})
}
