package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// pcapRecord is one record as a reader following pcap-savefile(5) sees it.
// (gopacket's pcapgo would do, but it pulls in golang.org/x/net, which the
// module does not require; this reader is written from the format's
// description, not from the writer.)
type pcapRecord struct {
	sec, usec, incl, orig uint32
	data                  []byte
}

// readPcap parses a little-endian microsecond pcap file.
func readPcap(t *testing.T, file []byte) (snaplen, linktype uint32, recs []pcapRecord) {
	t.Helper()
	if len(file) < 24 || binary.LittleEndian.Uint32(file) != 0xa1b2c3d4 {
		t.Fatalf("not a little-endian microsecond pcap file: % x", file[:min(len(file), 24)])
	}
	le := binary.LittleEndian
	if le.Uint16(file[4:]) != 2 || le.Uint16(file[6:]) != 4 {
		t.Fatalf("version %d.%d, want 2.4", le.Uint16(file[4:]), le.Uint16(file[6:]))
	}
	snaplen, linktype = le.Uint32(file[16:]), le.Uint32(file[20:])
	for b := file[24:]; len(b) > 0; {
		if len(b) < 16 {
			t.Fatalf("truncated record header (%d bytes)", len(b))
		}
		r := pcapRecord{sec: le.Uint32(b), usec: le.Uint32(b[4:]), incl: le.Uint32(b[8:]), orig: le.Uint32(b[12:])}
		if r.incl > snaplen || r.incl > r.orig || int(r.incl) > len(b)-16 {
			t.Fatalf("record %d: incl_len %d, orig_len %d, snaplen %d, %d bytes left", len(recs), r.incl, r.orig, snaplen, len(b)-16)
		}
		r.data = b[16 : 16+r.incl]
		b = b[16+r.incl:]
		recs = append(recs, r)
	}
	return snaplen, linktype, recs
}

// synHeaders is a SYN from 10.77.0.1:49152 to 10.77.0.2:7 with an MSS
// option, as the stack hands it over: tot_len set, both checksums zero.
var synHeaders = []byte{
	0x45, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, // IPv4, checksum 0
	0x0a, 0x4d, 0x00, 0x01, 0x0a, 0x4d, 0x00, 0x02,
	0xc0, 0x00, 0x00, 0x07, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, // ports, seq, ack
	0x60, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, // offset 6, SYN, window, checksum 0, urg
	0x02, 0x04, 0xff, 0xd7, // MSS 65495
}

// fakeClock returns t, then t plus one microsecond, and so on.
func fakeClock(t time.Time) func() time.Time {
	return func() time.Time {
		now := t
		t = t.Add(time.Microsecond)
		return now
	}
}

var t0 = time.Unix(1_700_000_000, 123_456_000)

func TestFileHeaderIsClassicPcapLinktypeRaw(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xd4, 0xc3, 0xb2, 0xa1, // magic, little-endian, microseconds
		0x02, 0x00, 0x04, 0x00, // version 2.4
		0, 0, 0, 0, 0, 0, 0, 0, // thiszone, sigfigs
		0xff, 0xff, 0x00, 0x00, // snaplen 65535
		0x65, 0x00, 0x00, 0x00, // LINKTYPE_RAW
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("file header\n got % x\nwant % x", buf.Bytes(), want)
	}
}

func TestSYNRecordGetsChecksumsFilledIn(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Now: fakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	in := bytes.Clone(synHeaders)
	w.Capture(true, in, nil)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(in, synHeaders) {
		t.Fatal("Capture modified the headers it was handed")
	}
	rec := buf.Bytes()[fileHeaderLen:]
	wantRec := []byte{
		0x00, 0xf1, 0x53, 0x65, // ts_sec 1700000000
		0x40, 0xe2, 0x01, 0x00, // ts_usec 123456
		0x2c, 0x00, 0x00, 0x00, // incl_len 44
		0x2c, 0x00, 0x00, 0x00, // orig_len 44
	}
	if !bytes.Equal(rec[:recordHeaderLen], wantRec) {
		t.Fatalf("record header\n got % x\nwant % x", rec[:recordHeaderLen], wantRec)
	}
	pkt := rec[recordHeaderLen:]
	want := bytes.Clone(synHeaders)
	want[10], want[11] = 0x26, 0x30 // RFC 791 header checksum
	want[36], want[37] = 0xc5, 0x58 // RFC 9293 §3.1 checksum over the pseudo-header
	if !bytes.Equal(pkt, want) {
		t.Fatalf("packet\n got % x\nwant % x", pkt, want)
	}
}

// bigHeaders returns IPv4+TCP headers (timestamps option) for a DMA
// record of a BIG TCP packet: tot_len 0, PSH|ACK|FIN.
func bigHeaders(seq uint32) []byte {
	h := []byte{
		0x45, 0x00, 0x00, 0x00, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00,
		0x0a, 0x4d, 0x00, 0x02, 0x0a, 0x4d, 0x00, 0x01,
		0x00, 0x07, 0xc0, 0x00, 0, 0, 0, 0, 0x00, 0x00, 0x10, 0x00,
		0x80, 0x19, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // offset 8, ACK|PSH|FIN
		0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 1, 0, 0, 0, 2, // NOP NOP TS
	}
	binary.BigEndian.PutUint32(h[24:], seq)
	return h
}

// readAll decodes every record of a capture, checking each decodes as
// IPv4+TCP with valid checksums.
func readAll(t *testing.T, file []byte) []gopacket.Packet {
	t.Helper()
	_, linktype, recs := readPcap(t, file)
	if linktype != uint32(layers.LinkTypeRaw) {
		t.Fatalf("link type %d, want LINKTYPE_RAW", linktype)
	}
	var pkts []gopacket.Packet
	for i, rec := range recs {
		data := rec.data
		if rec.incl != rec.orig {
			t.Fatalf("record %d truncated: %d of %d", i, rec.incl, rec.orig)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
		if el := p.ErrorLayer(); el != nil {
			t.Fatalf("record %d does not decode: %v", i, el.Error())
		}
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("record %d is not IPv4/TCP: %v", i, p)
		}
		if int(ip.Length) != len(data) {
			t.Fatalf("record %d: tot_len %d, record %d bytes", i, ip.Length, len(data))
		}
		if _, v := ip.VerifyChecksum(); !v.Valid {
			t.Fatalf("record %d: bad IPv4 checksum %#04x, want %#04x", i, v.Actual, v.Correct)
		}
		tcp.SetNetworkLayerForChecksum(ip)
		if err, v := tcp.VerifyChecksum(); err != nil || !v.Valid {
			t.Fatalf("record %d: bad TCP checksum %#04x, want %#04x (%v)", i, v.Actual, v.Correct, err)
		}
		pkts = append(pkts, p)
	}
	return pkts
}

func TestBigTCPPacketIsSplitLikeTSO(t *testing.T) {
	payload := make([]byte, 200_000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Now: fakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	w.Capture(true, bigHeaders(1000), payload)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	pkts := readAll(t, buf.Bytes())
	// 52 bytes of headers leave 65483 bytes of payload per packet:
	// 65483 + 65483 + 65483 + 3551.
	wantLens := []int{65483, 65483, 65483, 3551}
	if len(pkts) != len(wantLens) {
		t.Fatalf("%d packets, want %d", len(pkts), len(wantLens))
	}
	var joined []byte
	seq := uint32(1000)
	for i, p := range pkts {
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if len(tcp.Payload) != wantLens[i] {
			t.Errorf("packet %d: %d payload bytes, want %d", i, len(tcp.Payload), wantLens[i])
		}
		if tcp.Seq != seq {
			t.Errorf("packet %d: seq %d, want %d", i, tcp.Seq, seq)
		}
		if ip.Id != 0x1234+uint16(i) {
			t.Errorf("packet %d: IP id %#x", i, ip.Id)
		}
		last := i == len(pkts)-1
		if tcp.FIN != last || tcp.PSH != last || !tcp.ACK {
			t.Errorf("packet %d: FIN %v PSH %v ACK %v; FIN and PSH belong on the last piece only", i, tcp.FIN, tcp.PSH, tcp.ACK)
		}
		if len(tcp.Options) != 3 || tcp.Options[2].OptionType != layers.TCPOptionKindTimestamps {
			t.Errorf("packet %d: options %v, want the timestamps repeated", i, tcp.Options)
		}
		seq += uint32(len(tcp.Payload))
		joined = append(joined, tcp.Payload...)
	}
	if !bytes.Equal(joined, payload) {
		t.Fatal("the pieces do not join into the original payload")
	}
}

func TestSnapLenKeepsTheHeadOfEachPacket(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{SnapLen: 64, Now: fakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	h := bigHeaders(1)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+1000))
	w.Capture(false, h, make([]byte, 1000))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	snap, _, recs := readPcap(t, buf.Bytes())
	if snap != 64 {
		t.Fatalf("snaplen %d, want 64", snap)
	}
	if len(recs) != 1 || len(recs[0].data) != 64 || recs[0].orig != 1052 {
		t.Fatalf("records %+v; want one of 64 bytes, orig_len 1052", recs)
	}
}

func TestNonTCPBytesAreRecordedUnchanged(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Options{Now: fakeClock(t0)})
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte{0x60, 1, 2, 3, 4}
	w.Capture(false, garbage, []byte{5, 6})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()[fileHeaderLen+recordHeaderLen:]
	if !bytes.Equal(got, []byte{0x60, 1, 2, 3, 4, 5, 6}) {
		t.Fatalf("recorded % x", got)
	}
}

type failingWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.n < len(p) {
		return 0, errDiskFull
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteErrorStopsTheCaptureAndIsReported(t *testing.T) {
	w, err := NewWriter(&failingWriter{n: fileHeaderLen})
	if err != nil {
		t.Fatal(err)
	}
	// More than the 256 KiB buffer, so the error surfaces during capture.
	for range 10 {
		w.Capture(true, bigHeaders(1), make([]byte, 60_000))
	}
	if !errors.Is(w.Err(), errDiskFull) {
		t.Fatalf("Err() = %v, want the write error", w.Err())
	}
	if err := w.Close(); !errors.Is(err, errDiskFull) {
		t.Fatalf("Close() = %v, want the write error", err)
	}
	if err := w.Close(); err != ErrClosed {
		t.Fatalf("second Close() = %v, want ErrClosed", err)
	}
}

func BenchmarkCapture1448(b *testing.B) {
	w, err := NewWriter(io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	h := bigHeaders(1)
	binary.BigEndian.PutUint16(h[2:], uint16(len(h)+1448))
	payload := make([]byte, 1448)
	b.ReportAllocs()
	b.SetBytes(int64(len(h) + len(payload)))
	for b.Loop() {
		w.Capture(true, h, payload)
	}
}
