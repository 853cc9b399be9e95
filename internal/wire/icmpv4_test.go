package wire

import "testing"

func TestParseICMPv4LiteralEchoRequest(t *testing.T) {
	h, payload, err := ParseICMPv4(echoRequest)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != ICMPv4Echo || h.Code != 0 || h.EchoID() != 0x1234 || h.EchoSeq() != 1 || h.IsError() {
		t.Fatalf("header = %+v (id %#x seq %d)", h, h.EchoID(), h.EchoSeq())
	}
	if string(payload) != "ping" {
		t.Fatalf("payload = %q, want \"ping\"", payload)
	}
}

// An echo reply is the request with the type changed (RFC 792); build it
// with the constructor and compare bytes.
func TestICMPv4EncodeEchoReply(t *testing.T) {
	h := ICMPv4EchoHeader(true, 0x1234, 1)
	b := make([]byte, 12)
	n, err := h.Encode(b)
	if err != nil || n != 8 {
		t.Fatalf("Encode = %d, %v", n, err)
	}
	copy(b[8:], "ping")
	SetICMPv4Checksum(b[:8], b[8:])
	want := []byte{
		0x00, 0x00, 0x0e, 0xfa, // type 0, code 0, checksum 0x0efa (request's + 0x0800)
		0x12, 0x34, 0x00, 0x01,
		'p', 'i', 'n', 'g',
	}
	if string(b) != string(want) {
		t.Fatalf("encoded % x, want % x", b, want)
	}
}

func TestParseICMPv4LiteralFragmentationNeeded(t *testing.T) {
	h, payload, err := ParseICMPv4(fragNeeded)
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != ICMPv4DestUnreachable || h.Code != ICMPv4FragmentationNeeded || !h.IsError() {
		t.Fatalf("header = %+v", h)
	}
	if h.NextHopMTU() != 1480 {
		t.Fatalf("NextHopMTU = %d, want 1480", h.NextHopMTU())
	}
	ip, quoted, err := QuotedIPv4(payload)
	if err != nil {
		t.Fatal(err)
	}
	if ip.Src != addrA || ip.Dst != addrB || ip.Protocol != ProtoTCP || ip.PayloadLen != 40 {
		t.Fatalf("quoted header = %+v", ip)
	}
	if len(quoted) != 8 || quoted[0] != 0x9c || quoted[1] != 0x40 {
		t.Fatalf("quoted data = % x, want the first 8 TCP bytes", quoted)
	}
}

func TestICMPv4UnreachableEveryCodeRoundTrips(t *testing.T) {
	for code := ICMPv4NetUnreachable; code <= ICMPv4PrecedenceCutoff; code++ {
		var mtu uint16
		if code == ICMPv4FragmentationNeeded {
			mtu = 576
		}
		h := ICMPv4UnreachableHeader(code, mtu)
		b := make([]byte, 8+28)
		h.Encode(b)
		copy(b[8:], fragNeeded[8:])
		SetICMPv4Checksum(b[:8], b[8:])
		got, payload, err := ParseICMPv4(b)
		if err != nil {
			t.Fatalf("code %d: %v", code, err)
		}
		if got.Type != ICMPv4DestUnreachable || got.Code != code || got.NextHopMTU() != mtu {
			t.Fatalf("code %d: got %+v, MTU %d", code, got, got.NextHopMTU())
		}
		if _, _, err := QuotedIPv4(payload); err != nil {
			t.Fatalf("code %d: quote: %v", code, err)
		}
	}
}

func TestICMPv4NextHopMTUOnlyForFragmentationNeeded(t *testing.T) {
	h := ICMPv4Header{Type: ICMPv4DestUnreachable, Code: ICMPv4PortUnreachable, Rest: 1500}
	if h.NextHopMTU() != 0 {
		t.Fatalf("NextHopMTU = %d for port unreachable, want 0", h.NextHopMTU())
	}
}

func TestParseICMPv4TruncatedHeader(t *testing.T) {
	if _, _, err := ParseICMPv4(echoRequest[:7]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseICMPv4BadChecksum(t *testing.T) {
	b := clone(echoRequest)
	b[len(b)-1] = 'G'
	if _, _, err := ParseICMPv4(b); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

func TestQuotedIPv4TooShortForEightBytes(t *testing.T) {
	if _, _, err := QuotedIPv4(fragNeeded[8:35]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated (20-byte header + 7 bytes)", err)
	}
}

func TestQuotedIPv4IHLBeyondQuote(t *testing.T) {
	q := clone(fragNeeded[8:])
	q[0] = 0x4f // a 60-byte header cannot be in a 28-byte quote
	if _, _, err := QuotedIPv4(q); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestQuotedIPv4BadVersion(t *testing.T) {
	q := clone(fragNeeded[8:])
	q[0] = 0x65
	if _, _, err := QuotedIPv4(q); err != ErrBadVersion {
		t.Fatalf("err = %v, want ErrBadVersion", err)
	}
}

func TestICMPv4EncodeBufferTooSmall(t *testing.T) {
	h := ICMPv4EchoHeader(false, 1, 1)
	if _, err := h.Encode(make([]byte, 7)); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
}
