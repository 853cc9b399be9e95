package wire

import "testing"

func TestParseEthernetLiteral(t *testing.T) {
	h, payload, err := ParseEthernet(arpFrame)
	if err != nil {
		t.Fatal(err)
	}
	want := EthernetHeader{Dst: BroadcastMAC, Src: MAC{2, 0, 0, 0, 0, 1}, EtherType: EtherTypeARP}
	if h != want || len(payload) != 46 {
		t.Fatalf("got %+v (%d payload bytes), want %+v (46)", h, len(payload), want)
	}
	if h.Src.String() != "02:00:00:00:00:01" {
		t.Fatalf("String = %s", h.Src)
	}
}

func TestParseEthernetTruncatedHeader(t *testing.T) {
	if _, _, err := ParseEthernet(arpFrame[:13]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

// An 802.3 frame carries a length (< 0x0600) where Ethernet II has a type.
func TestParseEthernet8023LengthUnsupported(t *testing.T) {
	b := clone(arpFrame)
	b[12], b[13] = 0x00, 0x2e
	if _, _, err := ParseEthernet(b); err != ErrUnsupported {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

func TestEthernetEncodeLiteral(t *testing.T) {
	h := EthernetHeader{Dst: BroadcastMAC, Src: MAC{2, 0, 0, 0, 0, 1}, EtherType: EtherTypeARP}
	b := make([]byte, 14)
	if n, err := h.Encode(b); err != nil || n != 14 || string(b) != string(arpFrame[:14]) {
		t.Fatalf("Encode = %d, %v: % x", n, err, b)
	}
	if _, err := h.Encode(b[:13]); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
}
