package wire

import "testing"

func TestParseARPLiteralRequest(t *testing.T) {
	a, err := ParseARP(arpFrame[14:])
	if err != nil {
		t.Fatal(err)
	}
	want := ARP{Op: ARPRequest, SenderMAC: MAC{2, 0, 0, 0, 0, 1}, SenderIP: addrA, TargetIP: addrB}
	if a != want {
		t.Fatalf("got %+v, want %+v", a, want)
	}
}

func TestARPEncodeReply(t *testing.T) {
	a := ARP{Op: ARPReply, SenderMAC: MAC{2, 0, 0, 0, 0, 2}, SenderIP: addrB, TargetMAC: MAC{2, 0, 0, 0, 0, 1}, TargetIP: addrA}
	b := make([]byte, 28)
	n, err := a.Encode(b)
	if err != nil || n != 28 {
		t.Fatalf("Encode = %d, %v", n, err)
	}
	want := []byte{
		0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // Ethernet, IPv4, 6, 4, reply
		0x02, 0, 0, 0, 0, 0x02, 10, 77, 0, 2, // sender
		0x02, 0, 0, 0, 0, 0x01, 10, 77, 0, 1, // target
	}
	if string(b) != string(want) {
		t.Fatalf("encoded % x\nwant    % x", b, want)
	}
}

func TestParseARPTruncated(t *testing.T) {
	if _, err := ParseARP(arpFrame[14:41]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if _, err := ParseARP(arpFrame[14:21]); err != ErrTruncated {
		t.Fatalf("7 bytes: err = %v, want ErrTruncated", err)
	}
}

func TestParseARPNotIPv4OverEthernet(t *testing.T) {
	cases := []struct {
		i int
		v byte
	}{
		{1, 6},    // hardware type 6, IEEE 802
		{3, 0xdd}, // protocol 0x08dd instead of 0x0800
		{4, 8},    // 8-byte hardware addresses (EUI-64)
		{5, 16},   // 16-byte protocol addresses (IPv6)
	}
	for _, c := range cases {
		i, v := c.i, c.v
		b := clone(arpFrame[14:])
		b[i] = v
		if _, err := ParseARP(b); err != ErrUnsupported {
			t.Fatalf("byte %d = %#x: err = %v, want ErrUnsupported", i, v, err)
		}
	}
}

func TestARPEncodeBufferTooSmall(t *testing.T) {
	var a ARP
	if _, err := a.Encode(make([]byte, 27)); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
}
