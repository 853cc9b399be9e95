package wire

import (
	"encoding/binary"
	"errors"
	"testing"
)

// fixIPv4Checksum recomputes a test packet's header checksum with the
// reference sum, after a test has edited the header.
func fixIPv4Checksum(p []byte) []byte {
	hl := int(p[0]&0x0f) * 4
	p[10], p[11] = 0, 0
	binary.BigEndian.PutUint16(p[10:12], ^refSum(p[:hl]))
	return p
}

func TestParseIPv4LiteralSYN(t *testing.T) {
	h, payload, err := ParseIPv4(synPacket)
	if err != nil {
		t.Fatal(err)
	}
	want := IPv4Header{
		TOS: 0, ID: 0x1c46, DontFrag: true, TTL: 64, Protocol: ProtoTCP,
		Src: addrA, Dst: addrB, PayloadLen: 40,
	}
	if h != want {
		t.Fatalf("header = %+v, want %+v", h, want)
	}
	if len(payload) != 40 || payload[0] != 0x9c {
		t.Fatalf("payload = % x, want the 40-byte TCP header", payload)
	}
}

func TestIPv4ViewAccessors(t *testing.T) {
	p, err := NewIPv4Packet(synPacket)
	if err != nil {
		t.Fatal(err)
	}
	if p.HeaderLen() != 20 || p.TotalLen() != 60 || p.Checksum() != 0x09da ||
		p.IsFragment() || len(p.Options()) != 0 || p.Src().String() != "10.77.0.1" {
		t.Fatalf("view fields wrong: hl %d total %d cksum %#x frag %v opts %d src %s",
			p.HeaderLen(), p.TotalLen(), p.Checksum(), p.IsFragment(), len(p.Options()), p.Src())
	}
}

// Ethernet pads a frame to 60 bytes; the padding must not become payload.
func TestParseIPv4TrimsTrailingPadding(t *testing.T) {
	b := append(clone(dataPacket), 0, 0, 0) // 57 + 3 padding bytes
	_, payload, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(payload) != 37 {
		t.Fatalf("payload length = %d, want 37 (total length 57 − 20)", len(payload))
	}
}

func TestParseIPv4SkipsOptions(t *testing.T) {
	// IHL 6: one word of options (record-route-style kind 7 is not
	// interpreted; here NOP, NOP, NOP, EOL) before the TCP header.
	b := append(clone(synPacket[:20]), 0x01, 0x01, 0x01, 0x00)
	b = append(b, synPacket[20:]...)
	b[0] = 0x46
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	fixIPv4Checksum(b)
	h, payload, err := ParseIPv4(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.PayloadLen != 40 || len(payload) != 40 || payload[0] != 0x9c {
		t.Fatalf("PayloadLen %d, payload % x: options not skipped", h.PayloadLen, payload[:4])
	}
	p, _ := NewIPv4Packet(b)
	if got := p.Options(); len(got) != 4 || got[3] != 0 {
		t.Fatalf("Options() = % x, want 01 01 01 00", got)
	}
}

func TestParseIPv4TruncatedHeader(t *testing.T) {
	if _, _, err := ParseIPv4(synPacket[:19]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseIPv4Empty(t *testing.T) {
	if _, _, err := ParseIPv4(nil); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseIPv4VersionNot4(t *testing.T) {
	b := clone(synPacket)
	b[0] = 0x65 // version 6
	if _, _, err := ParseIPv4(fixIPv4Checksum(b)); err != ErrBadVersion {
		t.Fatalf("err = %v, want ErrBadVersion", err)
	}
}

func TestParseIPv4IHLBelow5(t *testing.T) {
	b := clone(synPacket)
	b[0] = 0x44
	if _, _, err := ParseIPv4(b); err != ErrBadHeaderLen {
		t.Fatalf("err = %v, want ErrBadHeaderLen", err)
	}
}

func TestParseIPv4IHLBeyondPacket(t *testing.T) {
	b := clone(synPacket[:24]) // IHL 15 says 60 bytes of header, 24 present
	b[0] = 0x4f
	binary.BigEndian.PutUint16(b[2:4], 24)
	if _, _, err := ParseIPv4(b); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseIPv4IHLBeyondTotalLength(t *testing.T) {
	b := clone(synPacket)
	b[0] = 0x4f                            // 60-byte header in a packet whose total length is...
	binary.BigEndian.PutUint16(b[2:4], 40) // ...40
	if _, _, err := ParseIPv4(fixIPv4Checksum(b)); err != ErrBadHeaderLen {
		t.Fatalf("err = %v, want ErrBadHeaderLen", err)
	}
}

func TestParseIPv4TotalLengthLongerThanPacket(t *testing.T) {
	b := clone(synPacket)
	binary.BigEndian.PutUint16(b[2:4], 61) // one byte more than present
	if _, _, err := ParseIPv4(fixIPv4Checksum(b)); err != ErrBadTotalLen {
		t.Fatalf("err = %v, want ErrBadTotalLen", err)
	}
}

func TestParseIPv4TotalLengthBelowHeader(t *testing.T) {
	b := clone(synPacket)
	binary.BigEndian.PutUint16(b[2:4], 19)
	if _, _, err := ParseIPv4(fixIPv4Checksum(b)); err != ErrBadTotalLen {
		t.Fatalf("err = %v, want ErrBadTotalLen", err)
	}
}

func TestParseIPv4TotalLengthShorterThanPacketTrims(t *testing.T) {
	b := clone(synPacket)
	binary.BigEndian.PutUint16(b[2:4], 30) // 10 bytes of payload declared
	h, payload, err := ParseIPv4(fixIPv4Checksum(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.PayloadLen != 10 || len(payload) != 10 {
		t.Fatalf("PayloadLen %d, len(payload) %d, want 10 and 10", h.PayloadLen, len(payload))
	}
}

func TestParseIPv4BadHeaderChecksum(t *testing.T) {
	b := clone(synPacket)
	b[11] ^= 0x01
	if _, _, err := ParseIPv4(b); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

func TestParseIPv4CorruptAddressFailsChecksum(t *testing.T) {
	b := clone(synPacket)
	b[15] = 0x09 // 10.77.0.9: the checksum no longer matches
	if _, _, err := ParseIPv4(b); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

func TestParseIPv4FragmentMoreFragments(t *testing.T) {
	b := clone(synPacket)
	b[6] = 0x20 // MF, offset 0: the first fragment
	h, _, err := ParseIPv4(fixIPv4Checksum(b))
	if err != ErrFragment {
		t.Fatalf("err = %v, want ErrFragment", err)
	}
	if !h.MoreFrags || h.ID != 0x1c46 {
		t.Fatalf("fragment header not returned: %+v", h)
	}
}

func TestParseIPv4FragmentNonZeroOffset(t *testing.T) {
	b := clone(synPacket)
	b[6], b[7] = 0x00, 0xb9 // offset 185 × 8 = 1480, the last fragment
	h, _, err := ParseIPv4(fixIPv4Checksum(b))
	if err != ErrFragment {
		t.Fatalf("err = %v, want ErrFragment", err)
	}
	if h.FragOffset != 185 {
		t.Fatalf("FragOffset = %d, want 185", h.FragOffset)
	}
}

func TestParseIPv4DontFragmentIsNotAFragment(t *testing.T) {
	if _, _, err := ParseIPv4(synPacket); errors.Is(err, ErrFragment) {
		t.Fatal("DF alone was taken for a fragment")
	}
}

func TestIPv4EncodeLiteralSYN(t *testing.T) {
	h := IPv4Header{ID: 0x1c46, DontFrag: true, TTL: 64, Protocol: ProtoTCP, Src: addrA, Dst: addrB, PayloadLen: 40}
	b := make([]byte, 20)
	n, err := h.Encode(b)
	if err != nil || n != 20 {
		t.Fatalf("Encode = %d, %v", n, err)
	}
	if string(b) != string(synPacket[:20]) {
		t.Fatalf("encoded\n% x\nwant\n% x", b, synPacket[:20])
	}
}

func TestIPv4EncodeRoundTrip(t *testing.T) {
	h := IPv4Header{TOS: 0xb8, ID: 0xffff, MoreFrags: true, FragOffset: 0x1fff, TTL: 1, Protocol: ProtoUDP,
		Src: IPv4Addr{192, 0, 2, 1}, Dst: IPv4Addr{198, 51, 100, 7}, PayloadLen: 3}
	b := make([]byte, 23)
	if _, err := h.Encode(b); err != nil {
		t.Fatal(err)
	}
	got, _, err := ParseIPv4(b)
	if err != ErrFragment { // MF is set, so parsing reports a fragment
		t.Fatalf("err = %v, want ErrFragment", err)
	}
	if got != h {
		t.Fatalf("round trip: got %+v, want %+v", got, h)
	}
}

func TestIPv4EncodeBufferTooSmall(t *testing.T) {
	h := IPv4Header{}
	if _, err := h.Encode(make([]byte, 19)); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
}

func TestIPv4EncodePayloadTooLong(t *testing.T) {
	h := IPv4Header{PayloadLen: 65516} // 20 + 65516 > 65535
	if _, err := h.Encode(make([]byte, 20)); err != ErrTooLong {
		t.Fatalf("err = %v, want ErrTooLong", err)
	}
}

func TestIPv4SetTTLKeepsChecksumValid(t *testing.T) {
	b := clone(synPacket)
	p, _ := NewIPv4Packet(b)
	p.SetTTL(p.TTL() - 1)
	if p.TTL() != 63 {
		t.Fatalf("TTL = %d, want 63", p.TTL())
	}
	if err := p.VerifyChecksum(); err != nil {
		t.Fatal("checksum invalid after SetTTL")
	}
}

func TestIPv4SetAddressesKeepChecksumValid(t *testing.T) {
	b := clone(synPacket)
	p, _ := NewIPv4Packet(b)
	p.SetSrc(IPv4Addr{192, 0, 2, 200})
	p.SetDst(IPv4Addr{203, 0, 113, 9})
	if err := p.VerifyChecksum(); err != nil {
		t.Fatal("checksum invalid after SetSrc/SetDst")
	}
	if p.Src() != (IPv4Addr{192, 0, 2, 200}) || p.Dst() != (IPv4Addr{203, 0, 113, 9}) {
		t.Fatalf("addresses = %s → %s", p.Src(), p.Dst())
	}
}

func TestIPv4ParseIntoReusedHeader(t *testing.T) {
	var h IPv4Header
	if _, err := h.Parse(synPacket); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Parse(dataPacket); err != nil {
		t.Fatal(err)
	}
	fresh, _, _ := ParseIPv4(dataPacket)
	if h != fresh {
		t.Fatalf("reused header %+v, fresh parse %+v", h, fresh)
	}
	if _, err := h.Parse(synPacket[:19]); err != ErrTruncated || h != (IPv4Header{}) {
		t.Fatalf("after a failed parse: %v, %+v; want ErrTruncated and a zero header", err, h)
	}
}
