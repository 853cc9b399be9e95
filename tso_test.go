package ultcp

import (
	"bytes"
	"sync"
	"testing"

	"github.com/ultcp/ultcp/internal/tcp"
	"github.com/ultcp/ultcp/internal/wire"
)

// Tests of TSO towards the gateway (tso.go): which segments one record
// may carry, and what the node puts on a gateway flow's ring.

// tsoMSS is the payload of a full segment through the gateway: MSS 1460
// less the 12 bytes of the timestamp option (RFC 7323 §3, RFC 6691).
const tsoMSS = 1448

// tsoSegs returns n data segments of the given lengths cut one after the
// other from one buffer, from sequence 1000: what the engine emits from
// its send ring, all with the same ACK, window and timestamps.
func tsoSegs(lens ...int) []tcp.Segment {
	total := 0
	for _, l := range lens {
		total += l
	}
	buf := make([]byte, total)
	for i := range buf {
		buf[i] = byte(i)
	}
	segs := make([]tcp.Segment, len(lens))
	off := 0
	for i, l := range lens {
		h := wire.TCPHeader{SrcPort: 40000, DstPort: 80, Seq: 1000 + uint32(off), Ack: 7001, Flags: wire.FlagACK, Window: 502}
		h.Options.HasTimestamp, h.Options.TSVal, h.Options.TSEcr = true, 5000, 1002
		segs[i] = tcp.Segment{Hdr: h, Payload: buf[off : off+l]}
		off += l
	}
	return segs
}

// runs describes segs as (seq, payload length, flags) triples.
type tsoRunDesc struct {
	seq   uint32
	n     int
	flags wire.TCPFlags
}

func describe(segs []tcp.Segment) []tsoRunDesc {
	var d []tsoRunDesc
	for _, s := range segs {
		d = append(d, tsoRunDesc{s.Hdr.Seq, len(s.Payload), s.Hdr.Flags})
	}
	return d
}

func wantRuns(t *testing.T, got []tcp.Segment, want ...tsoRunDesc) {
	t.Helper()
	d := describe(got)
	if len(d) != len(want) {
		t.Fatalf("got %d records %v, want %d %v", len(d), d, len(want), want)
	}
	for i := range want {
		if d[i] != want[i] {
			t.Fatalf("record %d is %+v, want %+v (all: %v)", i, d[i], want[i], d)
		}
	}
}

const noLimit = tsoMaxPacket

func TestTSOFullSegmentsAndAShortLastWithPSHAreOneRecord(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS, tsoMSS, 500)
	segs[3].Hdr.Flags |= wire.FlagPSH
	want := append([]byte(nil), segs[0].Payload[:3*tsoMSS+500]...)
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got, tsoRunDesc{1000, 3*tsoMSS + 500, wire.FlagACK | wire.FlagPSH})
	if !bytes.Equal(got[0].Payload, want) {
		t.Fatal("the merged payload is not the four payloads in order")
	}
	if o := got[0].Hdr.Options; !o.HasTimestamp || o.TSVal != 5000 || o.TSEcr != 1002 {
		t.Fatalf("merged options %+v, want the first segment's timestamps", o)
	}
	for i := 1; i < 4; i++ {
		if segs[i].Payload != nil {
			t.Fatalf("segment %d past the end still holds its payload", i)
		}
	}
}

func TestTSOFINGoesOnTheLastPieceAndEndsTheRun(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS, 100)
	segs[2].Hdr.Flags |= wire.FlagPSH | wire.FlagFIN
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got, tsoRunDesc{1000, 2*tsoMSS + 100, wire.FlagACK | wire.FlagPSH | wire.FlagFIN})
}

// PSH marks the end of a write: the run ends there (PSH on the last piece
// only), and the next write's data starts a new record.
func TestTSOPSHInTheMiddleEndsTheRun(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS, tsoMSS, tsoMSS)
	segs[1].Hdr.Flags |= wire.FlagPSH
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, 2 * tsoMSS, wire.FlagACK | wire.FlagPSH},
		tsoRunDesc{1000 + 2*tsoMSS, 2 * tsoMSS, wire.FlagACK})
}

// A short segment can only be the last of a record: GSO cuts at the
// segment size, so a short one in the middle would move every boundary
// after it.
func TestTSOShortSegmentEndsTheRun(t *testing.T) {
	segs := tsoSegs(tsoMSS, 700, tsoMSS, tsoMSS)
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, tsoMSS + 700, wire.FlagACK},
		tsoRunDesc{1000 + tsoMSS + 700, 2 * tsoMSS, wire.FlagACK})
}

func TestTSOLongerSegmentAfterTheFirstEndsTheRun(t *testing.T) {
	segs := tsoSegs(1000, 1000, tsoMSS)
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, 2000, wire.FlagACK},
		tsoRunDesc{3000, tsoMSS, wire.FlagACK})
}

// A retransmission of a hole followed by new data from SND.MAX: not
// contiguous in sequence space, so two records even though the payloads
// happen to lie side by side in memory.
func TestTSORetransmissionIsNotMergedWithNewDataAfterAHole(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS)
	segs[1].Hdr.Seq += 10 * tsoMSS
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, tsoMSS, wire.FlagACK},
		tsoRunDesc{1000 + 11*tsoMSS, tsoMSS, wire.FlagACK})
}

// Timestamps are replicated from the first segment by TSO; segments with
// another TSval (another tick) are not merged, so replication never
// changes one.
func TestTSODifferentTimestampsAreNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS, tsoMSS)
	segs[2].Hdr.Options.TSVal++
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, 2 * tsoMSS, wire.FlagACK},
		tsoRunDesc{1000 + 2*tsoMSS, tsoMSS, wire.FlagACK})
}

func TestTSODifferentSACKBlocksAreNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS)
	o := &segs[1].Hdr.Options
	o.NumSACK, o.SACK[0] = 1, wire.SACKBlock{Left: 9000, Right: 9100}
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got, tsoRunDesc{1000, tsoMSS, wire.FlagACK}, tsoRunDesc{1000 + tsoMSS, tsoMSS, wire.FlagACK})
}

func TestTSODifferentAckOrWindowIsNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS, tsoMSS)
	segs[1].Hdr.Ack++
	segs[2].Hdr.Window++
	got := coalesceSegments(segs, noLimit)
	if len(got) != 3 {
		t.Fatalf("got %v, want the three segments apart", describe(got))
	}
}

func TestTSOSegmentsWithControlFlagsAreNotMerged(t *testing.T) {
	for _, fl := range []wire.TCPFlags{wire.FlagURG, wire.FlagECE, wire.FlagCWR, wire.FlagRST, wire.FlagSYN} {
		segs := tsoSegs(tsoMSS, tsoMSS)
		segs[1].Hdr.Flags |= fl
		if got := coalesceSegments(segs, noLimit); len(got) != 2 {
			t.Fatalf("flag %v on the second segment: got %v, want two records", fl, describe(got))
		}
		segs = tsoSegs(tsoMSS, tsoMSS)
		segs[0].Hdr.Flags |= fl
		if got := coalesceSegments(segs, noLimit); len(got) != 2 {
			t.Fatalf("flag %v on the first segment: got %v, want two records", fl, describe(got))
		}
	}
}

func TestTSODifferentECNIsNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS)
	segs[0].ECN = tcp.ECNECT0
	if got := coalesceSegments(segs, noLimit); len(got) != 2 {
		t.Fatalf("got %v, want two records", describe(got))
	}
}

// A pure ACK among data segments stays a segment of its own.
func TestTSOPureACKIsNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS)
	ack := segs[0]
	ack.Payload = nil
	segs = append([]tcp.Segment{ack}, segs...)
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got, tsoRunDesc{1000, 0, wire.FlagACK}, tsoRunDesc{1000, 2 * tsoMSS, wire.FlagACK})
}

// Either side of the send ring's wrap the payloads are not adjacent in
// memory: two records.
func TestTSOPayloadsApartInMemoryAreNotMerged(t *testing.T) {
	segs := tsoSegs(tsoMSS, tsoMSS)
	segs[1].Payload = append([]byte(nil), segs[1].Payload...)
	got := coalesceSegments(segs, noLimit)
	wantRuns(t, got, tsoRunDesc{1000, tsoMSS, wire.FlagACK}, tsoRunDesc{1000 + tsoMSS, tsoMSS, wire.FlagACK})
}

// One IPv4 packet at most: 20 + 32 bytes of headers and 45 segments of
// 1448 bytes (65212) fit in 65535, a 46th does not.
func TestTSORecordIsAtMostOneIPv4Packet(t *testing.T) {
	lens := make([]int, 47)
	for i := range lens {
		lens[i] = tsoMSS
	}
	got := coalesceSegments(tsoSegs(lens...), noLimit)
	wantRuns(t, got,
		tsoRunDesc{1000, 45 * tsoMSS, wire.FlagACK},
		tsoRunDesc{1000 + 45*tsoMSS, 2 * tsoMSS, wire.FlagACK})
}

// A ring whose largest record is smaller bounds the record instead.
func TestTSORecordIsAtMostTheRingsLargestRecord(t *testing.T) {
	got := coalesceSegments(tsoSegs(tsoMSS, tsoMSS, tsoMSS), 52+2*tsoMSS)
	wantRuns(t, got, tsoRunDesc{1000, 2 * tsoMSS, wire.FlagACK}, tsoRunDesc{1000 + 2*tsoMSS, tsoMSS, wire.FlagACK})
}

func BenchmarkTSOCoalesce45Segments(b *testing.B) {
	lens := make([]int, 45)
	for i := range lens {
		lens[i] = tsoMSS
	}
	orig := tsoSegs(lens...)
	segs := make([]tcp.Segment, len(orig))
	b.ReportAllocs()
	for b.Loop() {
		copy(segs, orig)
		if got := coalesceSegments(segs, noLimit); len(got) != 1 {
			b.Fatalf("%d records", len(got))
		}
	}
}

// Through the (fake) gateway, a 64 KiB write goes on the ring as a few
// TSO records, not one record per segment: the first is the initial
// window (RFC 6928: 10 segments) in one record, the headers of its first
// segment in front; every record but the last holds whole segments; PSH
// is on the last only; the node's capture shows the records as they went
// on the ring; and the engine still counts 1448-byte segments.
func TestTSOBulkWriteThroughGatewayGoesAsFewRecords(t *testing.T) {
	dir := testDir(t)
	var mu sync.Mutex
	var captured [][]byte
	a := newStack(t, dir, addrA, func(c *Config) {
		c.Capture = func(out bool, headers, payload []byte) {
			if !out || len(payload) == 0 {
				return
			}
			mu.Lock()
			captured = append(captured, append(append([]byte(nil), headers...), payload...))
			mu.Unlock()
		}
	})
	f, c := establishOutside(t, a, joinGateway(t, dir))
	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 7)
	}
	segsBefore := c.Info().Stats.SegsOut
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		done <- err
	}()
	var got []byte
	var records [][]byte
	for len(got) < len(data) {
		rec := f.record(t)
		records = append(records, rec)
		var seg tcp.Segment
		p, err := decodeRecord(rec, len(rec), f.node.Addr().As4(), f.ext.Addr().As4(), &seg)
		if err != nil {
			t.Fatal(err)
		}
		if seg.Hdr.Seq != f.rcv {
			t.Fatalf("record %d at SEQ=%d, want %d", len(records), seg.Hdr.Seq, f.rcv)
		}
		if len(rec) > tsoMaxPacket {
			t.Fatalf("record %d is %d bytes, more than one IPv4 packet", len(records), len(rec))
		}
		last := len(got)+len(p) == len(data)
		if !last && (len(p)%tsoMSS != 0 || seg.Hdr.Flags != wire.FlagACK) {
			t.Fatalf("record %d: %d payload bytes, flags %v; want whole segments of %d and ACK only before the last", len(records), len(p), seg.Hdr.Flags, tsoMSS)
		}
		if last && seg.Hdr.Flags != wire.FlagACK|wire.FlagPSH {
			t.Fatalf("last record's flags %v, want ACK|PSH", seg.Hdr.Flags)
		}
		if len(records) == 1 && len(p) != 10*tsoMSS {
			t.Fatalf("first record carries %d bytes, want the initial window, 10 segments (%d)", len(p), 10*tsoMSS)
		}
		got = append(got, p...)
		f.rcv += uint32(len(p))
		f.send(t, wire.FlagACK, nil)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the records' payloads are not the bytes written")
	}
	segs := (len(data) + tsoMSS - 1) / tsoMSS
	if n := c.Info().Stats.SegsOut - segsBefore; n < uint64(segs) {
		t.Fatalf("engine counted %d segments out, want at least %d (one per MSS)", n, segs)
	}
	if len(records) >= segs/2 {
		t.Fatalf("%d records for %d segments: not coalesced", len(records), segs)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(captured) != len(records) {
		t.Fatalf("capture saw %d data packets, the ring carried %d records", len(captured), len(records))
	}
	for i := range records {
		if !bytes.Equal(captured[i], records[i]) {
			t.Fatalf("captured packet %d differs from ring record %d", i, i)
		}
	}
}
