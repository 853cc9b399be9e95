//go:build linux

package tun

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/wire"
)

// The device benchmarks run in a private namespace (root only). Where the
// written packets go matters for what is measured; each says so.

// BenchmarkWriteGSO64K: one 64 KiB TCP super-packet per Write (40 bytes of
// headers in Data, 65160 bytes of payload as a separate Payload view, as the
// gateway writes a fabric record), into an offloading device. Forwarding is
// off in the namespace, so the kernel copies the packet into an skb,
// receives it and drops it at routing: this is the cost of crossing the
// device (system call, copy, IP input), not of segmenting or delivering.
func BenchmarkWriteGSO64K(b *testing.B) {
	privateNetns(b)
	d := openTun(b, "ultcpbench0", true, "10.99.0.1/24")
	defer d.Close()
	setForwarding(b, false)
	headers, payload := gsoPacket(farAddr)
	p := gsoOf(headers, payload)
	b.SetBytes(int64(p.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardGSO64K: a 64 KiB super-packet written into one offloading
// device, forwarded by the namespace's IP layer, and read whole from a second
// offloading device: what a GSO packet costs through the kernel and back
// (two device crossings, two copies, one forwarding decision).
func BenchmarkForwardGSO64K(b *testing.B) {
	privateNetns(b)
	in := openTun(b, "ultcpin0", true, "10.99.0.1/24")
	defer in.Close()
	out := openTun(b, "ultcpout0", true, "10.98.0.1/24")
	defer out.Close()
	setForwarding(b, true)
	headers, payload := gsoPacket(farAddr)
	p := gsoOf(headers, payload)
	buf := make([]byte, ReadBufferLen)
	b.SetBytes(int64(p.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := in.Write(p); err != nil {
			b.Fatal(err)
		}
		q, err := out.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		if q.Len() != p.Len() {
			b.Fatalf("read %d bytes, wrote a %d-byte super-packet", q.Len(), p.Len())
		}
	}
}

// BenchmarkWriteSmall: one 40-byte TCP ACK per Write (no GSO, checksum left
// partial), dropped at routing as above: the per-packet cost.
func BenchmarkWriteSmall(b *testing.B) {
	privateNetns(b)
	d := openTun(b, "ultcpbench0", true, "10.99.0.1/24")
	defer d.Close()
	setForwarding(b, false)
	pkt := make([]byte, 40)
	ipv4(pkt, peerAddr, farAddr, wire.ProtoTCP, 40)
	tcp(pkt[20:], 40000, 5001, 1000, 1, tcpACK, 65535)
	p := Packet{Data: pkt, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	b.SetBytes(int64(p.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := d.Write(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkForwardSmall: a 40-byte TCP ACK written into one device, forwarded,
// and read from a second: the per-packet cost through the kernel and back.
func BenchmarkForwardSmall(b *testing.B) {
	privateNetns(b)
	in := openTun(b, "ultcpin0", true, "10.99.0.1/24")
	defer in.Close()
	out := openTun(b, "ultcpout0", true, "10.98.0.1/24")
	defer out.Close()
	setForwarding(b, true)
	pkt := make([]byte, 40)
	ipv4(pkt, peerAddr, farAddr, wire.ProtoTCP, 40)
	tcp(pkt[20:], 40000, 5001, 1000, 1, tcpACK, 65535)
	binary.BigEndian.PutUint16(pkt[36:], wire.PseudoHeaderSum(peerAddr, farAddr, wire.ProtoTCP, 20))
	p := Packet{Data: pkt, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}
	buf := make([]byte, ReadBufferLen)
	b.SetBytes(int64(p.Len()))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := in.Write(p); err != nil {
			b.Fatal(err)
		}
		q, err := out.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		if q.Len() != p.Len() {
			b.Fatalf("read %d bytes, wrote %d", q.Len(), p.Len())
		}
	}
}

// BenchmarkReadSmall: Read of 64-byte UDP datagrams a socket in the
// namespace sent to 10.99.0.2. The sends happen with the timer stopped, in
// batches below the device's queue length (500), so ns/op is the Read alone.
func BenchmarkReadSmall(b *testing.B) {
	privateNetns(b)
	d := openTun(b, "ultcpbench0", true, "10.99.0.1/24")
	defer d.Close()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 9, Addr: peerAddr}); err != nil {
		b.Fatal(err)
	}
	msg := make([]byte, 64-28)
	buf := make([]byte, ReadBufferLen)
	// Drain whatever the kernel sent when the link came up (IPv6
	// neighbour discovery), so every read below is one of ours.
	drain(b, d, buf)
	b.SetBytes(64)
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; {
		n := min(b.N-done, 256)
		b.StopTimer()
		for i := 0; i < n; i++ {
			if _, err := unix.Write(fd, msg); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		for i := 0; i < n; i++ {
			p, err := d.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Data) != 64 {
				b.Fatalf("read %d bytes, sent a 64-byte datagram", len(p.Data))
			}
		}
		done += n
	}
}

// drain reads until nothing has come for 50 ms.
func drain(tb testing.TB, d *Device, buf []byte) {
	for i := 0; i < 1000; i++ {
		d.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := d.Read(buf); err != nil {
			break
		}
	}
	d.SetReadDeadline(time.Time{})
}

func BenchmarkDecodePacket(b *testing.B) {
	in := withBody([]byte{0x01, 0x01, 0x34, 0x00, 0xa8, 0x05, 0x14, 0x00, 0x10, 0x00}, 52+44*1448)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := DecodePacket(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeVnetHdr(b *testing.B) {
	p := Packet{Data: make([]byte, 52), Payload: make([]byte, 44*1448), GSOSize: 1448, NeedsCsum: true, CsumStart: 20, CsumOffset: 16, HdrLen: 52}
	hdr := make([]byte, VnetHdrLen)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := p.EncodeVnetHdr(hdr); err != nil {
			b.Fatal(err)
		}
	}
}
