package wire

import "testing"

func TestParseUDPLiteral(t *testing.T) {
	h, payload, err := ParseUDP(udpDatagram)
	if err != nil {
		t.Fatal(err)
	}
	want := UDPHeader{SrcPort: 5353, DstPort: 53, Checksum: 0x11bb, PayloadLen: 3}
	if h != want || string(payload) != "abc" {
		t.Fatalf("got %+v %q, want %+v \"abc\"", h, payload, want)
	}
	if err := VerifyUDPChecksum(addrA, addrB, udpDatagram); err != nil {
		t.Fatal(err)
	}
}

func TestParseUDPTruncatedHeader(t *testing.T) {
	if _, _, err := ParseUDP(udpDatagram[:7]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseUDPLengthBelowHeader(t *testing.T) {
	b := clone(udpDatagram)
	b[4], b[5] = 0, 7
	if _, _, err := ParseUDP(b); err != ErrBadLength {
		t.Fatalf("err = %v, want ErrBadLength", err)
	}
}

func TestParseUDPLengthBeyondDatagram(t *testing.T) {
	b := clone(udpDatagram)
	b[5] = 12 // one more than present
	if _, _, err := ParseUDP(b); err != ErrBadLength {
		t.Fatalf("err = %v, want ErrBadLength", err)
	}
}

func TestParseUDPTrailingBytesTrimmed(t *testing.T) {
	_, payload, err := ParseUDP(append(clone(udpDatagram), 0, 0))
	if err != nil || string(payload) != "abc" {
		t.Fatalf("payload %q, err %v; want \"abc\", nil", payload, err)
	}
	if err := VerifyUDPChecksum(addrA, addrB, append(clone(udpDatagram), 0xff)); err != nil {
		t.Fatalf("trailing byte entered the checksum: %v", err)
	}
}

func TestVerifyUDPBadChecksum(t *testing.T) {
	b := clone(udpDatagram)
	b[8] = 'A'
	if err := VerifyUDPChecksum(addrA, addrB, b); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

// RFC 768: a zero checksum field means the sender computed none.
func TestVerifyUDPZeroChecksumMeansNone(t *testing.T) {
	b := clone(udpDatagram)
	b[6], b[7] = 0, 0
	b[8] = 'A' // corrupt data is not detectable without a checksum
	if err := VerifyUDPChecksum(addrA, addrB, b); err != nil {
		t.Fatalf("err = %v, want nil", err)
	}
}

// RFC 768: a checksum that computes to 0 is sent as all ones. This
// datagram's payload is chosen so that its sum is exactly 0xffff.
func TestUDPChecksumZeroSentAsAllOnes(t *testing.T) {
	hdr := []byte{0x14, 0xe9, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00}
	ph := PseudoHeaderSum(addrA, addrB, ProtoUDP, 10)
	s := Combine(ph, Sum(hdr), 0)
	payload := []byte{byte(^s >> 8), byte(^s)} // completes the sum to 0xffff
	if got := UDPChecksum(addrA, addrB, hdr, payload); got != 0xffff {
		t.Fatalf("UDPChecksum = %#04x, want 0xffff", got)
	}
	SetUDPChecksum(addrA, addrB, hdr, payload)
	if err := VerifyUDPChecksum(addrA, addrB, append(hdr, payload...)); err != nil {
		t.Fatal(err)
	}
}

func TestUDPEncodeLiteral(t *testing.T) {
	h := UDPHeader{SrcPort: 5353, DstPort: 53, PayloadLen: 3}
	b := make([]byte, 8)
	if n, err := h.Encode(b); err != nil || n != 8 {
		t.Fatalf("Encode = %d, %v", n, err)
	}
	SetUDPChecksum(addrA, addrB, b, []byte("abc"))
	if string(b) != string(udpDatagram[:8]) {
		t.Fatalf("encoded % x, want % x", b, udpDatagram[:8])
	}
}

func TestUDPEncodeErrors(t *testing.T) {
	h := UDPHeader{}
	if _, err := h.Encode(make([]byte, 7)); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
	h.PayloadLen = 65528
	if _, err := h.Encode(make([]byte, 8)); err != ErrTooLong {
		t.Fatalf("err = %v, want ErrTooLong", err)
	}
}
