package tun

import (
	"bytes"
	"errors"
	"testing"
)

// withBody returns a virtio-net header followed by n zero bytes of packet.
func withBody(hdr []byte, n int) []byte {
	return append(append([]byte(nil), hdr...), make([]byte, n)...)
}

// hdrFields is Packet without its slices, so that tests can compare with ==.
type hdrFields struct {
	GSOSize, HdrLen       uint16
	ECN                   bool
	NeedsCsum, DataValid  bool
	CsumStart, CsumOffset uint16
}

func fieldsOf(p Packet) hdrFields {
	return hdrFields{p.GSOSize, p.HdrLen, p.ECN, p.NeedsCsum, p.DataValid, p.CsumStart, p.CsumOffset}
}

// Literal headers as the kernel's tun_put_user writes them (little endian,
// TUNSETVNETLE), and the fields they mean.
var goodHeaders = []struct {
	name string
	hdr  []byte
	body int
	want hdrFields
}{
	{
		name: "plain packet, checksum computed",
		hdr:  []byte{0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		body: 60,
	},
	{
		name: "DATA_VALID (kernel checked the checksum)",
		hdr:  []byte{0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},
		body: 60,
		want: hdrFields{DataValid: true},
	},
	{
		name: "UDP with partial checksum at 20+6",
		hdr:  []byte{0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x06, 0x00},
		body: 28,
		want: hdrFields{NeedsCsum: true, CsumStart: 20, CsumOffset: 6},
	},
	{
		name: "TCPV4 super-packet, gso_size 1448, hdr_len 52",
		hdr:  []byte{0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00},
		body: 52 + 44*1448,
		want: hdrFields{NeedsCsum: true, HdrLen: 52, GSOSize: 1448, CsumStart: 20, CsumOffset: 16},
	},
	{
		name: "TCPV4|ECN super-packet",
		hdr:  []byte{0x01, 0x81, 0x28, 0x00, 0xb4, 0x05, 0x14, 0x00, 0x10, 0x00},
		body: 40 + 3*1460,
		want: hdrFields{NeedsCsum: true, ECN: true, HdrLen: 40, GSOSize: 1460, CsumStart: 20, CsumOffset: 16},
	},
	{
		name: "largest packet",
		hdr:  []byte{0x01, 0x01, 0x28, 0x00, 0xb4, 0x05, 0x14, 0x00, 0x10, 0x00},
		body: MaxPacketLen,
		want: hdrFields{NeedsCsum: true, HdrLen: 40, GSOSize: 1460, CsumStart: 20, CsumOffset: 16},
	},
}

func TestDecodePacketReadsLiteralHeaders(t *testing.T) {
	for _, tc := range goodHeaders {
		t.Run(tc.name, func(t *testing.T) {
			b := withBody(tc.hdr, tc.body)
			p, err := DecodePacket(b)
			if err != nil {
				t.Fatalf("DecodePacket: %v", err)
			}
			if got := fieldsOf(p); got != tc.want {
				t.Errorf("fields %+v, want %+v", got, tc.want)
			}
			if len(p.Data) != tc.body || &p.Data[0] != &b[VnetHdrLen] {
				t.Errorf("Data is %d bytes not aliasing b[%d:], want the %d-byte body in place", len(p.Data), VnetHdrLen, tc.body)
			}
		})
	}
}

func TestEncodeVnetHdrWritesLiteralHeaders(t *testing.T) {
	for _, tc := range goodHeaders {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.want
			p := Packet{Data: make([]byte, tc.body), GSOSize: w.GSOSize, HdrLen: w.HdrLen, ECN: w.ECN,
				NeedsCsum: w.NeedsCsum, DataValid: w.DataValid, CsumStart: w.CsumStart, CsumOffset: w.CsumOffset}
			got := make([]byte, VnetHdrLen)
			if err := p.EncodeVnetHdr(got); err != nil {
				t.Fatalf("EncodeVnetHdr: %v", err)
			}
			if !bytes.Equal(got, tc.hdr) {
				t.Errorf("header % x, want % x", got, tc.hdr)
			}
		})
	}
}

func TestEncodeVnetHdrCountsPayloadInLength(t *testing.T) {
	// Headers in Data, payload in a separate view: the checksum field at
	// 20+16 lies in Data, the super-packet's length is 52+2896.
	p := Packet{Data: make([]byte, 52), Payload: make([]byte, 2*1448), GSOSize: 1448,
		NeedsCsum: true, CsumStart: 20, CsumOffset: 16, HdrLen: 52}
	got := make([]byte, VnetHdrLen)
	if err := p.EncodeVnetHdr(got); err != nil {
		t.Fatal(err)
	}
	want := []byte{0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00}
	if !bytes.Equal(got, want) {
		t.Errorf("header % x, want % x", got, want)
	}
	if p.Len() != 52+2896 {
		t.Errorf("Len %d, want %d", p.Len(), 52+2896)
	}
}

func TestDecodePacketRejectsBadHeaders(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"9 bytes", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrShortPacket},
		{"empty", nil, ErrShortPacket},
		{"unknown flag RSC_INFO", withBody([]byte{0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0}, 40), ErrBadVnetHdr},
		{"NEEDS_CSUM and DATA_VALID", withBody([]byte{0x03, 0, 0, 0, 0, 0, 0x14, 0, 0x10, 0}, 40), ErrBadVnetHdr},
		{"GSO UDP", withBody([]byte{0x01, 0x03, 0, 0, 0xa8, 0x05, 0x14, 0, 0x06, 0}, 40), ErrBadVnetHdr},
		{"GSO TCPV6", withBody([]byte{0x01, 0x04, 0, 0, 0xa8, 0x05, 0x14, 0, 0x10, 0}, 40), ErrBadVnetHdr},
		{"GSO UDP_L4", withBody([]byte{0x01, 0x05, 0, 0, 0xa8, 0x05, 0x14, 0, 0x06, 0}, 40), ErrBadVnetHdr},
		{"gso_size 0 with TCPV4", withBody([]byte{0x01, 0x01, 0, 0, 0, 0, 0x14, 0, 0x10, 0}, 40), ErrBadGSO},
		{"gso_size with GSO NONE", withBody([]byte{0x00, 0x00, 0, 0, 0xa8, 0x05, 0, 0, 0, 0}, 40), ErrBadGSO},
		{"ECN with GSO NONE", withBody([]byte{0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}, 40), ErrBadGSO},
		{"TCPV4 without NEEDS_CSUM", withBody([]byte{0x00, 0x01, 0, 0, 0xa8, 0x05, 0, 0, 0, 0}, 40), ErrBadGSO},
		{"TCPV4 with UDP checksum offset", withBody([]byte{0x01, 0x01, 0, 0, 0xa8, 0x05, 0x14, 0, 0x06, 0}, 40), ErrBadGSO},
		{"TCPV4 gso_size GSO_BY_FRAGS", withBody([]byte{0x01, 0x01, 0, 0, 0xff, 0xff, 0x14, 0, 0x10, 0}, 40), ErrBadGSO},
		{"checksum field past the end", withBody([]byte{0x01, 0, 0, 0, 0, 0, 0x14, 0, 0x10, 0}, 37), ErrBadVnetHdr},
		{"csum_start without NEEDS_CSUM", withBody([]byte{0x00, 0, 0, 0, 0, 0, 0x14, 0, 0, 0}, 40), ErrBadVnetHdr},
		{"hdr_len past the end", withBody([]byte{0x00, 0, 0x29, 0, 0, 0, 0, 0, 0, 0}, 40), ErrBadVnetHdr},
		{"65536-byte packet", withBody(make([]byte, VnetHdrLen), MaxPacketLen+1), ErrTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := DecodePacket(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("DecodePacket = %+v, %v; want an error wrapping %q", fieldsOf(p), err, tc.want)
			}
		})
	}
}

func TestEncodeVnetHdrRejectsBadPackets(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Packet
		want error
	}{
		{"GSO without NEEDS_CSUM", Packet{Data: make([]byte, 3000), GSOSize: 1448}, ErrBadGSO},
		{"GSO with checksum at UDP's offset", Packet{Data: make([]byte, 3000), GSOSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 6}, ErrBadGSO},
		{"GSO_BY_FRAGS", Packet{Data: make([]byte, 3000), GSOSize: 0xffff, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}, ErrBadGSO},
		{"ECN without GSO", Packet{Data: make([]byte, 40), ECN: true}, ErrBadGSO},
		{"NEEDS_CSUM and DATA_VALID", Packet{Data: make([]byte, 40), NeedsCsum: true, DataValid: true, CsumStart: 20, CsumOffset: 16}, ErrBadVnetHdr},
		{"checksum field beyond the packet", Packet{Data: make([]byte, 36), NeedsCsum: true, CsumStart: 20, CsumOffset: 16}, ErrBadVnetHdr},
		{"hdr_len beyond the packet", Packet{Data: make([]byte, 40), HdrLen: 41}, ErrBadVnetHdr},
		{"65536 bytes across Data and Payload", Packet{Data: make([]byte, 40), Payload: make([]byte, MaxPacketLen-39)}, ErrTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hdr := []byte{0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
			err := tc.p.EncodeVnetHdr(hdr)
			if !errors.Is(err, tc.want) {
				t.Fatalf("EncodeVnetHdr: %v, want an error wrapping %q", err, tc.want)
			}
			if !bytes.Equal(hdr, bytes.Repeat([]byte{0xee}, VnetHdrLen)) {
				t.Errorf("failed EncodeVnetHdr wrote % x", hdr)
			}
		})
	}
}

func TestEncodeVnetHdrRejectsShortBuffer(t *testing.T) {
	p := Packet{Data: make([]byte, 40)}
	if err := p.EncodeVnetHdr(make([]byte, VnetHdrLen-1)); !errors.Is(err, ErrShortPacket) {
		t.Fatalf("EncodeVnetHdr into 9 bytes: %v, want ErrShortPacket", err)
	}
}

// FuzzDecodePacket: any bytes either decode, and then re-encode to the same
// header, or fail with one of the package's errors; never a panic.
func FuzzDecodePacket(f *testing.F) {
	for _, tc := range goodHeaders {
		f.Add(withBody(tc.hdr, min(tc.body, 200)))
	}
	f.Add([]byte{0x01, 0x01, 0, 0, 0, 0, 0x14, 0, 0x10, 0})
	f.Add([]byte{0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePacket(b)
		if err != nil {
			if !errors.Is(err, ErrShortPacket) && !errors.Is(err, ErrBadVnetHdr) &&
				!errors.Is(err, ErrBadGSO) && !errors.Is(err, ErrTooBig) {
				t.Fatalf("error %v wraps none of the package's errors", err)
			}
			return
		}
		if len(p.Data) != len(b)-VnetHdrLen {
			t.Fatalf("Data %d bytes from %d input bytes", len(p.Data), len(b))
		}
		hdr := make([]byte, VnetHdrLen)
		if err := p.EncodeVnetHdr(hdr); err != nil {
			t.Fatalf("decoded %+v does not re-encode: %v", fieldsOf(p), err)
		}
		if !bytes.Equal(hdr, b[:VnetHdrLen]) {
			t.Fatalf("re-encoded % x, read % x", hdr, b[:VnetHdrLen])
		}
	})
}
