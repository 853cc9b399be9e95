package wire

// Fuzz targets, one per parser. Each checks properties, not just the
// absence of a panic: lengths stay within the input, and whatever parses
// encodes to bytes that parse back to the same value. IPv4 and TCP are
// also compared with gopacket whenever both accept the input.

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

func FuzzIPv4(f *testing.F) {
	f.Add(synPacket)
	f.Add(dataPacket)
	f.Add(append(clone(dataPacket), 0, 0, 0)) // Ethernet padding
	withOpts := append(clone(synPacket[:20]), 0x94, 0x04, 0x00, 0x00)
	withOpts = append(withOpts, synPacket[20:]...)
	withOpts[0] = 0x46
	binary.BigEndian.PutUint16(withOpts[2:], uint16(len(withOpts)))
	f.Add(fixIPv4Checksum(withOpts))
	frag := clone(synPacket)
	frag[6] = 0x20
	f.Add(fixIPv4Checksum(frag))
	f.Add(synPacket[:19])
	f.Fuzz(func(t *testing.T, b []byte) {
		checkIPv4(t, b)
		// Random bytes almost never carry a valid header checksum; check
		// a copy with the checksum fixed too, so the fuzzer explores what
		// lies behind the checksum test.
		if len(b) >= IPv4HeaderLen && int(b[0]&0x0f)*4 <= len(b) && b[0]&0x0f >= 5 {
			checkIPv4(t, fixIPv4Checksum(clone(b)))
		}
	})
}

func checkIPv4(t *testing.T, b []byte) {
	h, payload, err := ParseIPv4(b)
	if err != nil && err != ErrFragment {
		return
	}
	p, _ := NewIPv4Packet(b)
	if p.TotalLen() > len(b) || p.HeaderLen() > p.TotalLen() || p.HeaderLen() < IPv4HeaderLen {
		t.Fatalf("accepted lengths outside the input: hl %d total %d len %d", p.HeaderLen(), p.TotalLen(), len(b))
	}
	if len(payload) != int(h.PayloadLen) || !bytes.Equal(payload, b[p.HeaderLen():p.TotalLen()]) {
		t.Fatalf("payload %d bytes, PayloadLen %d", len(payload), h.PayloadLen)
	}
	if (err == ErrFragment) != (h.MoreFrags || h.FragOffset != 0) {
		t.Fatalf("fragment error %v for MF %v offset %d", err, h.MoreFrags, h.FragOffset)
	}
	out := make([]byte, IPv4HeaderLen+len(payload))
	if _, eerr := h.Encode(out); eerr != nil {
		t.Fatalf("encode of a parsed header: %v", eerr)
	}
	copy(out[IPv4HeaderLen:], payload)
	h2, payload2, err2 := ParseIPv4(out)
	if err2 != err || h2 != h || !bytes.Equal(payload2, payload) {
		t.Fatalf("round trip: %v %+v, want %v %+v", err2, h2, err, h)
	}
	// gopacket checks IP options, which we skip, and not the checksum;
	// compare only when it accepts the input.
	var ip layers.IPv4
	if ip.DecodeFromBytes(b, gopacket.NilDecodeFeedback) == nil {
		if ip.TTL != h.TTL || ip.Id != h.ID || IPv4Addr(ip.SrcIP) != h.Src || IPv4Addr(ip.DstIP) != h.Dst ||
			ip.FragOffset != h.FragOffset || uint8(ip.Protocol) != h.Protocol || len(ip.Payload) != len(payload) {
			t.Fatalf("gopacket disagrees: %+v vs %+v", ip, h)
		}
	}
}

func FuzzTCP(f *testing.F) {
	f.Add(synPacket[20:])
	f.Add(dataPacket[20:])
	f.Add(tcpWithOptions(TCPOptNOP, TCPOptNOP, TCPOptSACK, 10, 0, 0, 0, 1, 0, 0, 0, 2))
	f.Add(tcpWithOptions(0xfd, 0x06, 0xde, 0xad, 0xbe, 0xef, TCPOptEOL, 0))
	f.Add(tcpWithOptions(TCPOptMSS, 0, 0, 0))
	f.Add(dataPacket[20:39])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseTCP(b)
		if err != nil {
			return
		}
		hl := int(b[12]>>4) * 4
		if hl < TCPHeaderLen || hl > len(b) || !bytes.Equal(payload, b[hl:]) {
			t.Fatalf("data offset %d, payload %d bytes, input %d bytes", hl, len(payload), len(b))
		}
		if h.Options.NumSACK > MaxSACKBlocks {
			t.Fatalf("NumSACK %d", h.Options.NumSACK)
		}
		n := h.EncodedLen()
		if n > TCPHeaderLen+TCPMaxOptionsLen || n%4 != 0 {
			t.Fatalf("EncodedLen %d for a header that arrived in %d bytes", n, hl)
		}
		out := make([]byte, n, n+len(payload))
		if m, eerr := h.Encode(out); eerr != nil || m != n {
			t.Fatalf("encode of a parsed header: %d, %v (EncodedLen %d)", m, eerr, n)
		}
		h2, payload2, err2 := ParseTCP(append(out, payload...))
		if err2 != nil || h2 != h || !bytes.Equal(payload2, payload) {
			t.Fatalf("round trip: %v\n got %+v\nwant %+v", err2, h2, h)
		}
		var tc layers.TCP
		if tc.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
			t.Fatalf("gopacket rejects a segment we accept")
		}
		got := TCPHeader{SrcPort: uint16(tc.SrcPort), DstPort: uint16(tc.DstPort), Seq: tc.Seq, Ack: tc.Ack,
			Flags: gpFlags(&tc), Window: tc.Window, Checksum: tc.Checksum, Urgent: tc.Urgent, Options: h.Options}
		// gopacket stops early, silently, on an MPTCP option (kind 30) it
		// finds malformed, and keeps the rest as padding; RFC 9293 §3.2
		// makes an unknown-to-us kind with a valid length skippable.
		// Compare options only when gopacket read them all.
		stopped := len(tc.Padding) > 0 &&
			(len(tc.Options) == 0 || tc.Options[len(tc.Options)-1].OptionType != layers.TCPOptionKindEndList)
		if !stopped {
			got.Options = gpOptions(t, &tc)
		}
		if got != h || !bytes.Equal(tc.Payload, payload) {
			t.Fatalf("gopacket disagrees:\n %+v\nwant %+v", got, h)
		}
	})
}

func FuzzUDP(f *testing.F) {
	f.Add(udpDatagram)
	f.Add(append(clone(udpDatagram), 0xff))
	f.Add(udpDatagram[:7])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseUDP(b)
		if err != nil {
			return
		}
		if UDPHeaderLen+int(h.PayloadLen) > len(b) || len(payload) != int(h.PayloadLen) {
			t.Fatalf("PayloadLen %d, payload %d, input %d", h.PayloadLen, len(payload), len(b))
		}
		_ = VerifyUDPChecksum(addrA, addrB, b) // must not panic
		out := make([]byte, UDPHeaderLen, UDPHeaderLen+len(payload))
		if _, eerr := h.Encode(out); eerr != nil {
			t.Fatalf("encode of a parsed header: %v", eerr)
		}
		h2, payload2, err2 := ParseUDP(append(out, payload...))
		if err2 != nil || h2 != h || !bytes.Equal(payload2, payload) {
			t.Fatalf("round trip: %v %+v, want %+v", err2, h2, h)
		}
	})
}

func FuzzICMPv4(f *testing.F) {
	f.Add(echoRequest)
	f.Add(fragNeeded)
	f.Add(echoRequest[:7])
	f.Fuzz(func(t *testing.T, b []byte) {
		checkICMPv4(t, b)
		// As for IPv4: also check a copy whose checksum is right.
		if len(b) >= ICMPv4HeaderLen {
			c := clone(b)
			SetICMPv4Checksum(c[:ICMPv4HeaderLen], c[ICMPv4HeaderLen:])
			checkICMPv4(t, c)
		}
	})
}

func checkICMPv4(t *testing.T, b []byte) {
	// The quote parser sees arbitrary bytes too: a forged ICMP error
	// is the classic attack on it.
	if ih, q, qerr := QuotedIPv4(b); qerr == nil {
		if len(q) < 8 || len(q) > len(b)-IPv4HeaderLen || int(ih.PayloadLen) > 0xffff-IPv4HeaderLen {
			t.Fatalf("quote: %d data bytes from %d input bytes", len(q), len(b))
		}
	}
	h, payload, err := ParseICMPv4(b)
	if err != nil {
		return
	}
	if len(payload) != len(b)-ICMPv4HeaderLen {
		t.Fatalf("payload %d bytes from %d", len(payload), len(b))
	}
	out := make([]byte, ICMPv4HeaderLen, len(b))
	if _, eerr := h.Encode(out); eerr != nil {
		t.Fatalf("encode of a parsed header: %v", eerr)
	}
	out = append(out, payload...)
	// The field verified, so computing it afresh gives the same value,
	// except that a field of 0xffff verifies where 0 is computed.
	if c := ICMPv4Checksum(b[:ICMPv4HeaderLen], payload); c != h.Checksum && (c != 0 || h.Checksum != 0xffff) {
		t.Fatalf("ICMPv4Checksum %#04x disagrees with the verified field %#04x", c, h.Checksum)
	}
	h2, payload2, err2 := ParseICMPv4(out)
	if err2 != nil || h2 != h || !bytes.Equal(payload2, payload) {
		t.Fatalf("round trip: %v %+v, want %+v", err2, h2, h)
	}
}

func FuzzEthernet(f *testing.F) {
	f.Add(arpFrame)
	f.Add(arpFrame[:13])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, payload, err := ParseEthernet(b)
		if err != nil {
			return
		}
		if len(payload) != len(b)-EthernetHeaderLen {
			t.Fatalf("payload %d bytes from %d", len(payload), len(b))
		}
		out := make([]byte, EthernetHeaderLen)
		if _, eerr := h.Encode(out); eerr != nil {
			t.Fatalf("encode of a parsed header: %v", eerr)
		}
		if !bytes.Equal(out, b[:EthernetHeaderLen]) {
			t.Fatalf("encoded % x, input % x", out, b[:EthernetHeaderLen])
		}
		h2, _, err2 := ParseEthernet(out)
		if err2 != nil || h2 != h {
			t.Fatalf("round trip: %v %+v, want %+v", err2, h2, h)
		}
	})
}

func FuzzARP(f *testing.F) {
	f.Add(arpFrame[14:])
	f.Add(arpFrame[14:42])
	f.Add(arpFrame[14:41])
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseARP(b)
		if err != nil {
			return
		}
		out := make([]byte, ARPLen)
		if _, eerr := a.Encode(out); eerr != nil {
			t.Fatalf("encode of a parsed packet: %v", eerr)
		}
		// Every field of an IPv4-over-Ethernet ARP packet is represented,
		// so the encoding is the input's first 28 bytes.
		if !bytes.Equal(out, b[:ARPLen]) {
			t.Fatalf("encoded % x, input % x", out, b[:ARPLen])
		}
		a2, err2 := ParseARP(out)
		if err2 != nil || a2 != a {
			t.Fatalf("round trip: %v %+v, want %+v", err2, a2, a)
		}
	})
}

// FuzzSum checks the fast checksum against the textbook one, and Combine
// against a one-pass sum, on arbitrary data and split points.
func FuzzSum(f *testing.F) {
	f.Add([]byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, uint16(3))
	f.Add(bytes.Repeat([]byte{0xff}, 77), uint16(33))
	f.Fuzz(func(t *testing.T, b []byte, split uint16) {
		want := refSum(b)
		if got := Sum(b); got != want {
			t.Fatalf("Sum = %#04x, reference %#04x", got, want)
		}
		k := int(split) % (len(b) + 1)
		if got := Combine(Sum(b[:k]), Sum(b[k:]), k); got != want {
			t.Fatalf("Combine at %d = %#04x, want %#04x", k, got, want)
		}
	})
}
