package tcp

import (
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
)

// benchPair returns an established connection with timestamps and window
// scaling (the common case on real paths), its peer's ISS 300 and MSS 1460.
func benchConn(b *testing.B, cfg Config) *Conn {
	b.Helper()
	c, _ := Dial(0, &cfg, localPort, peerPort, 100, nil)
	s := Segment{Hdr: wire.TCPHeader{SrcPort: peerPort, DstPort: localPort, Seq: 300, Ack: 101,
		Flags: wire.FlagSYN | wire.FlagACK, Window: 65535,
		Options: wire.TCPOptions{MSS: 1460, HasWScale: true, WScale: 7, HasTimestamp: true, TSVal: 1, TSEcr: c.tsNow(0)}}}
	c.Input(time.Millisecond, &s, nil)
	if c.state != Established {
		b.Fatalf("handshake failed: %v", c.state)
	}
	return c
}

// BenchmarkReceiverInOrderData is the receive fast path: one in-order
// full-sized data segment in (an ACK goes out for every second one, as
// delayed ACK prescribes), the application consumes it with Peek/Discard.
// One op is one segment.
func BenchmarkReceiverInOrderData(b *testing.B) {
	// A fixed 256 KiB buffer: auto-tuning's one-time growth would
	// otherwise show up in B/op.
	c := benchConn(b, Config{RecvBuf: 256 << 10, MaxRecvBuf: 256 << 10})
	payload := make([]byte, 1448)
	seg := Segment{Hdr: wire.TCPHeader{SrcPort: peerPort, DstPort: localPort, Seq: 301, Ack: 101,
		Flags: wire.FlagACK, Window: 1000,
		Options: wire.TCPOptions{HasTimestamp: true, TSVal: 2, TSEcr: c.tsNow(0)}}, Payload: payload}
	out := make([]Segment, 0, 8)
	now := 2 * time.Millisecond
	acks := 0
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		out = c.Input(now, &seg, out[:0])
		acks += len(out)
		seg.Hdr.Seq += uint32(len(payload))
		now += time.Microsecond
		seg.Hdr.Options.TSVal = uint32(now / time.Millisecond)
		for {
			p, _ := c.Peek()
			if len(p) == 0 {
				break
			}
			c.Discard(len(p))
		}
	}
	if c.Stats().BytesIn == 0 || acks == 0 {
		b.Fatalf("nothing received (%d ACKs)", acks)
	}
}

// BenchmarkSenderAckProcessing is the send fast path: an ACK for one
// full-sized segment arrives, and the engine emits the next segment from
// its send buffer, which the application keeps full. One op is one ACK
// in and one data segment out.
func BenchmarkSenderAckProcessing(b *testing.B) {
	c := benchConn(b, Config{NoDelay: true})
	mss := c.SndMSS()
	chunk := make([]byte, mss)
	out := make([]Segment, 0, 64)
	now := 2 * time.Millisecond
	for c.Writable() >= mss {
		c.Write(chunk)
	}
	out = c.Output(now, out[:0])
	ack := Segment{Hdr: wire.TCPHeader{SrcPort: peerPort, DstPort: localPort, Seq: 301, Ack: 101,
		Flags: wire.FlagACK, Window: 65535,
		Options: wire.TCPOptions{HasTimestamp: true, TSVal: 2, TSEcr: c.tsNow(0)}}}
	sent := 0
	b.ReportAllocs()
	b.SetBytes(int64(mss))
	for b.Loop() {
		ack.Hdr.Ack += uint32(mss)
		out = c.Input(now, &ack, out[:0])
		sent += len(out)
		c.Write(chunk)
		now += time.Microsecond
	}
	if sent == 0 {
		b.Fatal("nothing sent")
	}
}

// BenchmarkCustodyWriteDirect is the node stack's send path over the
// fabric: custody mode, WriteDirect from the application's buffer, one
// ACK per segment. Nothing is copied into the engine. One op is one ACK
// in and one segment out of the caller's buffer.
func BenchmarkCustodyWriteDirect(b *testing.B) {
	c := benchConn(b, Config{NoDelay: true, Custody: true})
	mss := c.SndMSS()
	app := make([]byte, 1<<20)
	out := make([]Segment, 0, 64)
	now := 2 * time.Millisecond
	off := 0
	ack := Segment{Hdr: wire.TCPHeader{SrcPort: peerPort, DstPort: localPort, Seq: 301, Ack: 101,
		Flags: wire.FlagACK, Window: 65535,
		Options: wire.TCPOptions{HasTimestamp: true, TSVal: 2, TSEcr: c.tsNow(0)}}}
	var n int
	n, out, _ = c.WriteDirect(now, app, out[:0])
	off += n
	b.ReportAllocs()
	b.SetBytes(int64(mss))
	for b.Loop() {
		ack.Hdr.Ack += uint32(mss)
		out = c.Input(now, &ack, out[:0])
		if off+mss > len(app) {
			off = 0
		}
		n, out, _ = c.WriteDirect(now, app[off:off+mss], out[:0])
		off += n
		now += time.Microsecond
	}
	if c.sb.allocated() {
		b.Fatal("custody WriteDirect copied into the send buffer")
	}
}
