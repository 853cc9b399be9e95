package wire

import "testing"

// benchSegment is a typical bulk-data segment: IPv4 + TCP with the NOP,
// NOP, timestamps layout and 1448 bytes of payload (a 1500-byte MTU).
var benchHeader = TCPHeader{
	SrcPort: 80, DstPort: 40000, Seq: 0xa0b0c0d0, Ack: 0x01020305,
	Flags: FlagACK | FlagPSH, Window: 501,
	Options: TCPOptions{HasTimestamp: true, TSVal: 100, TSEcr: 0x11223344},
}

var benchIP = IPv4Header{DontFrag: true, TTL: 64, Protocol: ProtoTCP, Src: addrB, Dst: addrA}

func benchSegment(b *testing.B) []byte {
	payload := make([]byte, 1448)
	for i := range payload {
		payload[i] = byte(i)
	}
	pkt := make([]byte, 1500)
	h := benchHeader
	n, err := h.Encode(pkt[IPv4HeaderLen:])
	if err != nil {
		b.Fatal(err)
	}
	SetTCPChecksum(addrB, addrA, pkt[IPv4HeaderLen:IPv4HeaderLen+n], payload)
	copy(pkt[IPv4HeaderLen+n:], payload)
	ip := benchIP
	ip.PayloadLen = uint16(n + len(payload))
	ip.Encode(pkt)
	if len(pkt) != IPv4HeaderLen+n+len(payload) {
		b.Fatalf("segment is %d bytes", IPv4HeaderLen+n+len(payload))
	}
	return pkt
}

// Sinks keep results alive. The parse loops fold a few fields into a
// local and store it once, so the benchmark measures parsing rather than
// copying 100-byte values into globals.
var (
	sinkN   int
	sinkSum uint16
	sinkU32 uint32
)

// BenchmarkParseIPv4TCP: the receive path's header work, without the TCP
// checksum (see BenchmarkParseIPv4TCPVerify), parsing into header values
// the caller owns, as the stack does.
func BenchmarkParseIPv4TCP(b *testing.B) {
	pkt := benchSegment(b)
	b.ReportAllocs()
	var (
		acc uint32
		ip  IPv4Header
		h   TCPHeader
	)
	for b.Loop() {
		l4, err := ip.Parse(pkt)
		if err != nil {
			b.Fatal(err)
		}
		payload, err := h.Parse(l4)
		if err != nil {
			b.Fatal(err)
		}
		acc += h.Seq + h.Options.TSVal + uint32(len(payload)) + uint32(ip.TTL)
	}
	sinkU32 = acc
}

// BenchmarkParseIPv4TCPFunc is the same through ParseIPv4 and ParseTCP,
// which return the headers by value.
func BenchmarkParseIPv4TCPFunc(b *testing.B) {
	pkt := benchSegment(b)
	b.ReportAllocs()
	var acc uint32
	for b.Loop() {
		ip, l4, err := ParseIPv4(pkt)
		if err != nil {
			b.Fatal(err)
		}
		h, payload, err := ParseTCP(l4)
		if err != nil {
			b.Fatal(err)
		}
		acc += h.Seq + h.Options.TSVal + uint32(len(payload)) + uint32(ip.TTL)
	}
	sinkU32 = acc
}

// BenchmarkParseIPv4TCPVerify adds the TCP checksum over 1480 bytes.
func BenchmarkParseIPv4TCPVerify(b *testing.B) {
	pkt := benchSegment(b)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	var (
		acc uint32
		ip  IPv4Header
		h   TCPHeader
	)
	for b.Loop() {
		l4, err := ip.Parse(pkt)
		if err != nil {
			b.Fatal(err)
		}
		payload, err := h.Parse(l4)
		if err != nil {
			b.Fatal(err)
		}
		if err := VerifyTCPChecksum(ip.Src, ip.Dst, l4); err != nil {
			b.Fatal(err)
		}
		acc += h.Seq + h.Options.TSVal + uint32(len(payload)) + uint32(ip.TTL)
	}
	sinkU32 = acc
}

// BenchmarkEncodeIPv4TCP: the send path's header work (IPv4 header with
// its checksum, TCP header with timestamps), without the TCP checksum.
func BenchmarkEncodeIPv4TCP(b *testing.B) {
	buf := make([]byte, 80)
	b.ReportAllocs()
	for b.Loop() {
		h := benchHeader
		n, err := h.Encode(buf[IPv4HeaderLen:])
		if err != nil {
			b.Fatal(err)
		}
		ip := benchIP
		ip.PayloadLen = uint16(n + 1448)
		m, err := ip.Encode(buf)
		if err != nil {
			b.Fatal(err)
		}
		sinkN = n + m
	}
}

// BenchmarkEncodeIPv4TCPChecksum adds the TCP checksum with the 1448-byte
// payload in its own slice, as the stack builds segments.
func BenchmarkEncodeIPv4TCPChecksum(b *testing.B) {
	buf := make([]byte, 80)
	payload := make([]byte, 1448)
	b.SetBytes(int64(IPv4HeaderLen + benchHeader.EncodedLen() + len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		h := benchHeader
		n, err := h.Encode(buf[IPv4HeaderLen:])
		if err != nil {
			b.Fatal(err)
		}
		SetTCPChecksum(addrB, addrA, buf[IPv4HeaderLen:IPv4HeaderLen+n], payload)
		ip := benchIP
		ip.PayloadLen = uint16(n + len(payload))
		m, err := ip.Encode(buf)
		if err != nil {
			b.Fatal(err)
		}
		sinkN = n + m
	}
}

func benchChecksum(b *testing.B, n int) {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	for b.Loop() {
		sinkSum = Checksum(data)
	}
}

func BenchmarkChecksum1500(b *testing.B) { benchChecksum(b, 1500) }
func BenchmarkChecksum64K(b *testing.B)  { benchChecksum(b, 64*1024) }
