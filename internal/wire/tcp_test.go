package wire

import (
	"encoding/binary"
	"testing"
)

// tcpWithOptions builds a 20-byte TCP header (ports 1 → 2, ACK) followed by
// opts, with the data offset covering exactly the options. len(opts) must
// be a multiple of 4.
func tcpWithOptions(opts ...byte) []byte {
	b := make([]byte, 20, 20+len(opts))
	b[1], b[3] = 1, 2
	b[12] = uint8((20+len(opts))/4) << 4
	b[13] = uint8(FlagACK)
	return append(b, opts...)
}

func TestParseTCPLiteralSYN(t *testing.T) {
	h, payload, err := ParseTCP(synPacket[20:])
	if err != nil {
		t.Fatal(err)
	}
	want := TCPHeader{
		SrcPort: 40000, DstPort: 80, Seq: 0x01020304, Ack: 0,
		Flags: FlagSYN, Window: 64240, Checksum: 0x5376, Urgent: 0,
		Options: TCPOptions{
			MSS: 1460, HasWScale: true, WScale: 7, SACKPermitted: true,
			HasTimestamp: true, TSVal: 0x11223344, TSEcr: 0,
		},
	}
	if h != want {
		t.Fatalf("header = %+v\nwant     %+v", h, want)
	}
	if len(payload) != 0 {
		t.Fatalf("payload = % x, want none", payload)
	}
}

func TestParseTCPLiteralDataWithTimestamps(t *testing.T) {
	h, payload, err := ParseTCP(dataPacket[20:])
	if err != nil {
		t.Fatal(err)
	}
	want := TCPHeader{
		SrcPort: 80, DstPort: 40000, Seq: 0xa0b0c0d0, Ack: 0x01020305,
		Flags: FlagACK | FlagPSH, Window: 501, Checksum: 0xd569,
		Options: TCPOptions{HasTimestamp: true, TSVal: 100, TSEcr: 0x11223344},
	}
	if h != want {
		t.Fatalf("header = %+v\nwant     %+v", h, want)
	}
	if string(payload) != "hello" {
		t.Fatalf("payload = %q, want \"hello\"", payload)
	}
}

func TestTCPEncodeLiteralSYN(t *testing.T) {
	h, _, _ := ParseTCP(synPacket[20:])
	b := make([]byte, 60)
	n, err := h.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if n != h.EncodedLen() || string(b[:n]) != string(synPacket[20:]) {
		t.Fatalf("encoded (%d bytes, EncodedLen %d)\n% x\nwant\n% x", n, h.EncodedLen(), b[:n], synPacket[20:])
	}
}

func TestTCPEncodeLiteralDataNOPNOPTimestamps(t *testing.T) {
	h := TCPHeader{
		SrcPort: 80, DstPort: 40000, Seq: 0xa0b0c0d0, Ack: 0x01020305,
		Flags: FlagACK | FlagPSH, Window: 501,
		Options: TCPOptions{HasTimestamp: true, TSVal: 100, TSEcr: 0x11223344},
	}
	b := make([]byte, 60)
	n, err := h.Encode(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := SetTCPChecksum(addrB, addrA, b[:n], []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if string(b[:n]) != string(dataPacket[20:52]) {
		t.Fatalf("encoded\n% x\nwant\n% x", b[:n], dataPacket[20:52])
	}
}

func TestParseTCPTruncatedHeader(t *testing.T) {
	if _, _, err := ParseTCP(dataPacket[20:39]); err != ErrTruncated {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
}

func TestParseTCPDataOffsetBelow5(t *testing.T) {
	for off := range 5 {
		b := clone(dataPacket[20:])
		b[12] = uint8(off) << 4
		if _, _, err := ParseTCP(b); err != ErrBadDataOffset {
			t.Fatalf("data offset %d: err = %v, want ErrBadDataOffset", off, err)
		}
	}
}

func TestParseTCPDataOffsetBeyondSegment(t *testing.T) {
	b := clone(dataPacket[20:52]) // header only: 32 bytes
	b[12] = 9 << 4                // claims 36
	if _, _, err := ParseTCP(b); err != ErrBadDataOffset {
		t.Fatalf("err = %v, want ErrBadDataOffset", err)
	}
}

func TestParseTCPOptionLengthZero(t *testing.T) {
	b := tcpWithOptions(0xfe, 0x00, 0x01, 0x01) // kind 254, length 0
	if _, _, err := ParseTCP(b); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

func TestParseTCPOptionLengthOne(t *testing.T) {
	b := tcpWithOptions(TCPOptMSS, 0x01, 0x01, 0x01)
	if _, _, err := ParseTCP(b); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

func TestParseTCPOptionLengthPastEnd(t *testing.T) {
	b := tcpWithOptions(0x01, 0x01, TCPOptTimestamp, 10) // needs 10, 2 left
	if _, _, err := ParseTCP(b); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

func TestParseTCPOptionLengthByteMissing(t *testing.T) {
	b := tcpWithOptions(0x01, 0x01, 0x01, TCPOptWScale) // kind in the last byte
	if _, _, err := ParseTCP(b); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

// The option area ends at the data offset even when payload follows: an
// option must not run into the data.
func TestParseTCPOptionMustNotRunIntoPayload(t *testing.T) {
	b := tcpWithOptions(0x01, 0x01, TCPOptTimestamp, 10)
	b = append(b, 1, 2, 3, 4, 5, 6, 7, 8) // 8 payload bytes would "complete" it
	if _, _, err := ParseTCP(b); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

func TestParseTCPKnownOptionWrongLength(t *testing.T) {
	cases := []struct {
		name string
		opts []byte
	}{
		{"MSS length 3", []byte{TCPOptMSS, 3, 0x05, 0x01}},
		{"window scale length 4", []byte{TCPOptWScale, 4, 7, 0}},
		{"SACK-permitted length 3", []byte{TCPOptSACKPermitted, 3, 0, 1}},
		{"timestamps length 8", []byte{TCPOptTimestamp, 8, 0, 0, 0, 1, 0, 0}},
		{"SACK with no block", []byte{TCPOptSACK, 2, 1, 1}},
		{"SACK length not 2+8n", []byte{TCPOptSACK, 6, 0, 0, 0, 1, 0, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, _, err := ParseTCP(tcpWithOptions(c.opts...)); err != ErrBadOption {
				t.Fatalf("err = %v, want ErrBadOption", err)
			}
		})
	}
}

func TestParseTCPUnknownOptionSkipped(t *testing.T) {
	b := tcpWithOptions(
		TCPOptNOP, TCPOptNOP,
		0xfd, 0x06, 0xde, 0xad, 0xbe, 0xef, // kind 253 (RFC 4727 experiment), 6 bytes
		TCPOptMSS, 4, 0x02, 0x18, // MSS 536 after it
	)
	h, _, err := ParseTCP(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Options.MSS != 536 {
		t.Fatalf("MSS = %d, want 536: the unknown option was not skipped by its length", h.Options.MSS)
	}
}

func TestParseTCPEOLEndsOptions(t *testing.T) {
	b := tcpWithOptions(TCPOptMSS, 4, 0x05, 0xb4, TCPOptEOL, 0xff, 0x00, 0x7f) // garbage after EOL
	h, _, err := ParseTCP(b)
	if err != nil {
		t.Fatal(err)
	}
	if h.Options != (TCPOptions{MSS: 1460}) {
		t.Fatalf("Options = %+v, want MSS 1460 only", h.Options)
	}
}

func TestParseTCPSACKBlocks(t *testing.T) {
	for n := 1; n <= 4; n++ {
		opts := []byte{TCPOptNOP, TCPOptNOP, TCPOptSACK, uint8(2 + 8*n)}
		var want [MaxSACKBlocks]SACKBlock
		for i := range n {
			want[i] = SACKBlock{Left: uint32(1000 * (i + 1)), Right: uint32(1000*(i+1) + 500)}
			opts = binary.BigEndian.AppendUint32(opts, want[i].Left)
			opts = binary.BigEndian.AppendUint32(opts, want[i].Right)
		}
		h, _, err := ParseTCP(tcpWithOptions(opts...))
		if err != nil {
			t.Fatalf("%d blocks: %v", n, err)
		}
		if int(h.Options.NumSACK) != n || h.Options.SACK != want {
			t.Fatalf("%d blocks: got %d %v, want %v", n, h.Options.NumSACK, h.Options.SACK, want)
		}
	}
}

func TestTCPEncodeEveryOptionCombinationRoundTrips(t *testing.T) {
	b := make([]byte, 60)
	for mask := range 32 {
		for nsack := 0; nsack <= MaxSACKBlocks; nsack++ {
			h := TCPHeader{SrcPort: 1, DstPort: 2, Seq: 3, Ack: 4, Flags: FlagACK, Window: 5, Urgent: 6}
			o := &h.Options
			if mask&1 != 0 {
				o.MSS = 1460
			}
			if mask&2 != 0 {
				o.HasWScale, o.WScale = true, 14
			}
			o.SACKPermitted = mask&4 != 0
			if mask&8 != 0 {
				o.HasTimestamp, o.TSVal, o.TSEcr = true, 0xdeadbeef, 0xfeedface
			}
			o.NumSACK = uint8(nsack)
			for i := range nsack {
				o.SACK[i] = SACKBlock{uint32(i) * 10, uint32(i)*10 + 5}
			}
			n, err := h.Encode(b)
			if h.EncodedLen() > 60 {
				if err != ErrOptionsTooLong {
					t.Fatalf("%+v: EncodedLen %d, err = %v, want ErrOptionsTooLong", h.Options, h.EncodedLen(), err)
				}
				continue
			}
			if err != nil || n != h.EncodedLen() || n%4 != 0 {
				t.Fatalf("%+v: Encode = %d, %v; EncodedLen %d", h.Options, n, err, h.EncodedLen())
			}
			got, _, err := ParseTCP(b[:n])
			if err != nil || got != h {
				t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, h)
			}
		}
	}
}

func TestTCPEncodeFourSACKBlocksWithTimestampsTooLong(t *testing.T) {
	h := TCPHeader{Options: TCPOptions{HasTimestamp: true, NumSACK: 4}}
	if _, err := h.Encode(make([]byte, 80)); err != ErrOptionsTooLong {
		t.Fatalf("err = %v, want ErrOptionsTooLong (12 + 36 > 40)", err)
	}
	h.Options.NumSACK = 3
	if n, err := h.Encode(make([]byte, 80)); err != nil || n != 60 {
		t.Fatalf("3 blocks with timestamps: %d, %v, want 60, nil", n, err)
	}
}

func TestTCPEncodeTooManySACKBlocks(t *testing.T) {
	h := TCPHeader{Options: TCPOptions{NumSACK: 5}}
	if _, err := h.Encode(make([]byte, 80)); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
}

func TestTCPEncodeBufferTooSmall(t *testing.T) {
	h, _, _ := ParseTCP(synPacket[20:])
	if _, err := h.Encode(make([]byte, 39)); err != ErrBufferTooSmall {
		t.Fatalf("err = %v, want ErrBufferTooSmall", err)
	}
}

func TestVerifyTCPChecksumLiteral(t *testing.T) {
	if err := VerifyTCPChecksum(addrA, addrB, synPacket[20:]); err != nil {
		t.Fatalf("SYN: %v", err)
	}
	if err := VerifyTCPChecksum(addrB, addrA, dataPacket[20:]); err != nil {
		t.Fatalf("data: %v", err)
	}
}

func TestVerifyTCPBadChecksum(t *testing.T) {
	b := clone(dataPacket[20:])
	b[len(b)-1] ^= 0x20 // "hellO"
	if err := VerifyTCPChecksum(addrB, addrA, b); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

// The pseudo-header is covered: the right bytes sent to the wrong address
// must fail.
func TestVerifyTCPChecksumWrongAddress(t *testing.T) {
	if err := VerifyTCPChecksum(addrB, IPv4Addr{10, 77, 0, 3}, dataPacket[20:]); err != ErrBadChecksum {
		t.Fatalf("err = %v, want ErrBadChecksum", err)
	}
}

func TestTCPChecksumSeparatePayloadOddLengths(t *testing.T) {
	h, _, _ := ParseTCP(dataPacket[20:])
	hdr := make([]byte, 60)
	n, _ := h.Encode(hdr)
	hdr = hdr[:n]
	payload := []byte("an odd-length payload!!")
	for k := 0; k <= len(payload); k++ {
		hdr[16], hdr[17] = 0xaa, 0x55 // whatever the field holds is ignored
		if err := SetTCPChecksum(addrA, addrB, hdr, payload[:k]); err != nil {
			t.Fatal(err)
		}
		seg := append(clone(hdr), payload[:k]...)
		if err := VerifyTCPChecksum(addrA, addrB, seg); err != nil {
			t.Fatalf("payload length %d: %v", k, err)
		}
	}
}

// A peer may pack window scale, timestamps and three SACK blocks into 39
// option bytes; the aligned layout would need 44. Encoding falls back to
// packing them, so whatever parses can be sent again.
func TestTCPEncodePackedWhenAlignedLayoutDoesNotFit(t *testing.T) {
	opts := []byte{
		TCPOptWScale, 3, 2,
		TCPOptTimestamp, 10, 0, 0, 0, 1, 0, 0, 0, 2,
		TCPOptSACK, 26,
		0, 0, 0, 10, 0, 0, 0, 20,
		0, 0, 0, 30, 0, 0, 0, 40,
		0, 0, 0, 50, 0, 0, 0, 60,
		TCPOptEOL,
	}
	h, _, err := ParseTCP(tcpWithOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 60)
	n, err := h.Encode(b)
	if err != nil || n != 60 || n != h.EncodedLen() {
		t.Fatalf("Encode = %d, %v; EncodedLen %d; want 60", n, err, h.EncodedLen())
	}
	got, _, err := ParseTCP(b[:n])
	if err != nil || got != h {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, h)
	}
}

// The stack reuses one header value for every segment: Parse must leave
// nothing behind from the previous one (here the SYN's MSS, window scale
// and SACK-permitted).
func TestTCPParseIntoReusedHeaderClearsPreviousOptions(t *testing.T) {
	var h TCPHeader
	if _, err := h.Parse(synPacket[20:]); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Parse(dataPacket[20:]); err != nil {
		t.Fatal(err)
	}
	fresh, _, _ := ParseTCP(dataPacket[20:])
	if h != fresh {
		t.Fatalf("reused header %+v\nfresh parse  %+v", h, fresh)
	}
}

func TestTCPParseErrorLeavesHeaderZero(t *testing.T) {
	h, _, _ := ParseTCP(synPacket[20:])
	if _, err := h.Parse(tcpWithOptions(TCPOptMSS, 0, 0, 0)); err != ErrBadOption {
		t.Fatalf("err = %v, want ErrBadOption", err)
	}
	if h != (TCPHeader{}) {
		t.Fatalf("header after a failed parse = %+v, want zero", h)
	}
}

func TestTCPFlagsString(t *testing.T) {
	for f, want := range map[TCPFlags]string{
		0:                           "0",
		FlagSYN | FlagACK:           "SYN|ACK",
		FlagFIN | FlagPSH | FlagACK: "FIN|PSH|ACK",
		FlagCWR | FlagECE | FlagURG: "URG|ECE|CWR",
	} {
		if got := f.String(); got != want {
			t.Errorf("%08b: String = %q, want %q", uint8(f), got, want)
		}
	}
}

// An MSS option carrying 0 parses as MSS 0, which TCPOptions defines as
// "absent": the engine then applies the RFC 9293 §3.7.1 default (536)
// rather than a segment size of 0. The option itself is well formed.
func TestParseTCPMSSZeroReadsAsAbsent(t *testing.T) {
	h, _, err := ParseTCP(tcpWithOptions(TCPOptMSS, 4, 0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if h.Options.MSS != 0 {
		t.Fatalf("MSS = %d, want 0", h.Options.MSS)
	}
}

// A tiny MSS is passed through as sent; clamping it to a floor is the
// engine's policy, not the parser's.
func TestParseTCPTinyMSSPassedThrough(t *testing.T) {
	h, _, err := ParseTCP(tcpWithOptions(TCPOptMSS, 4, 0, 1))
	if err != nil || h.Options.MSS != 1 {
		t.Fatalf("MSS = %d, %v; want 1, nil", h.Options.MSS, err)
	}
}

// RFC 7323 §2.3: a shift above 14 is used as 14 by the receiver; the
// parser reports what was sent so the engine can apply (and log) that.
func TestParseTCPWindowScaleAbove14PassedThrough(t *testing.T) {
	h, _, err := ParseTCP(tcpWithOptions(TCPOptNOP, TCPOptWScale, 3, 15))
	if err != nil || !h.Options.HasWScale || h.Options.WScale != 15 {
		t.Fatalf("WScale = %d (has %v), %v; want 15", h.Options.WScale, h.Options.HasWScale, err)
	}
}
