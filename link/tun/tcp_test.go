//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/wire"
)

// These tests play a TCP peer (10.99.0.2) through the device against Linux's
// own TCP in the namespace, with hand-built segments, to show that GSO works
// with a real TCP on the other side in both directions.

// writeSegment writes one whole TCP/IPv4 segment from 10.99.0.2 with its
// checksums computed here (no offload needed for it).
func writeSegment(t *testing.T, d *Device, sport, dport uint16, seq, ack uint32, flags byte, opts, payload []byte) {
	t.Helper()
	b := make([]byte, 40+len(opts)+len(payload))
	ipv4(b, peerAddr, tunAddr, wire.ProtoTCP, len(b))
	tcp(b[20:], sport, dport, seq, ack, flags, 65535)
	b[32] = byte((20+len(opts))/4) << 4
	copy(b[40:], opts)
	copy(b[40+len(opts):], payload)
	hdr := b[20 : 40+len(opts)]
	if err := wire.SetTCPChecksum(peerAddr, tunAddr, hdr, payload); err != nil {
		t.Fatal(err)
	}
	if err := d.Write(Packet{Data: b}); err != nil {
		t.Fatalf("Write segment (flags %#02x): %v", flags, err)
	}
}

// synOptions: MSS 1460 (RFC 9293 §3.7.1) and window scale 7 (RFC 7323 §2),
// no timestamps, so every full segment carries 1460 bytes.
var synOptions = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 7}

func tcpFrom(port uint16, flags byte) func(wire.IPv4Packet) bool {
	return func(ip wire.IPv4Packet) bool {
		p := ip.Payload()
		return ip.Protocol() == wire.ProtoTCP && ip.Src() == tunAddr && len(p) >= 20 &&
			binary.BigEndian.Uint16(p[0:]) == port && p[13]&flags == flags
	}
}

// TestReadGSOFromLinuxTCP: Linux's TCP in the namespace connects to the
// test's peer and writes 64 KiB; with offload on, the device hands over TSO
// super-packets: GSOSize is the peer's MSS, the checksum is partial over the
// whole super-packet's length, and finishing it gives a valid checksum.
func TestReadGSOFromLinuxTCP(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: peerAddr}); err != unix.EINPROGRESS {
		t.Fatalf("connect: %v, want EINPROGRESS", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	lport := uint16(sa.(*unix.SockaddrInet4).Port)
	buf := make([]byte, ReadBufferLen)
	syn := wire.TCPSegment(wire.IPv4Packet(readMatching(t, d, buf, tcpFrom(lport, tcpSYN)).Data).Payload())
	iss := syn.Seq()
	writeSegment(t, d, 80, lport, 5000, iss+1, tcpSYN|tcpACK, synOptions, nil)

	data := make([]byte, 64<<10)
	for i := range data {
		data[i] = byte(i * 13)
	}
	if err := waitWritable(fd); err != nil {
		t.Fatalf("connection not established: %v", err)
	}
	if n, err := unix.Write(fd, data); err != nil || n != len(data) {
		t.Fatalf("socket write: %d, %v", n, err)
	}
	p := readMatching(t, d, buf, func(ip wire.IPv4Packet) bool {
		return tcpFrom(lport, 0)(ip) && len(wire.TCPSegment(ip.Payload()).Payload()) > 0
	})
	ip := wire.IPv4Packet(p.Data)
	seg := wire.TCPSegment(ip.Payload())
	if p.GSOSize != 1460 || !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 16 {
		t.Fatalf("first data packet: GSOSize %d NeedsCsum %v at %d+%d, want GSO 1460 with NEEDS_CSUM at 20+16",
			p.GSOSize, p.NeedsCsum, p.CsumStart, p.CsumOffset)
	}
	if n := len(seg.Payload()); n <= 1460 || ip.TotalLen() != len(p.Data) {
		t.Fatalf("first data packet: %d payload bytes, total length %d of %d: want a super-packet of several segments", n, ip.TotalLen(), len(p.Data))
	}
	if seg.Seq() != iss+1 || !bytes.Equal(seg.Payload(), data[:len(seg.Payload())]) {
		t.Fatalf("first data packet: seq %d, payload differs from what the socket wrote", seg.Seq())
	}
	finishChecksum(p)
	if err := wire.VerifyTCPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
		t.Fatalf("super-packet's checksum after finishing it: %v", err)
	}
	t.Logf("first super-packet: %d bytes of payload in segments of %d", len(seg.Payload()), p.GSOSize)
}

// TestWriteGSOToLinuxTCPListener: the test's peer opens a connection to a
// listening socket in the namespace and sends one GSO super-packet of 45
// segments; the accepted socket reads every byte, in order. (Local delivery
// trusts a partial checksum, so this shows the kernel's TCP takes the
// super-packet whole; TestWriteGSOIsSegmentedByKernel checks the checksums.)
func TestWriteGSOToLinuxTCPListener(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	ln, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	if err := unix.SetsockoptInt(ln, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(ln, &unix.SockaddrInet4{Port: 5001, Addr: tunAddr}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(ln, 1); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, ReadBufferLen)
	const iss = 999
	writeSegment(t, d, 40000, 5001, iss, 0, tcpSYN, synOptions, nil)
	synack := wire.TCPSegment(wire.IPv4Packet(readMatching(t, d, buf, tcpFrom(5001, tcpSYN|tcpACK)).Data).Payload())
	if synack.Ack() != iss+1 {
		t.Fatalf("SYN-ACK acknowledges %d, want %d", synack.Ack(), iss+1)
	}
	irs := synack.Seq()
	writeSegment(t, d, 40000, 5001, iss+1, irs+1, tcpACK, nil, nil)

	// The listener's first window (in the SYN-ACK, never scaled: RFC 7323
	// §2.2) bounds how much may be sent before its next ACK.
	const mss = 1460
	n := min(int(synack.Window())/mss, 44) * mss
	if n < 2*mss {
		t.Fatalf("listener's window %d leaves no room for a super-packet", synack.Window())
	}
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(i*7 + i>>8)
	}
	headers := make([]byte, 40)
	ipv4(headers, peerAddr, tunAddr, wire.ProtoTCP, 40+n)
	tcp(headers[20:], 40000, 5001, iss+1, irs+1, tcpACK|tcpPSH, 65535)
	binary.BigEndian.PutUint16(headers[36:], wire.PseudoHeaderSum(peerAddr, tunAddr, wire.ProtoTCP, 20+n))
	if err := d.Write(Packet{Data: headers, Payload: payload, GSOSize: mss, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}); err != nil {
		t.Fatalf("Write GSO: %v", err)
	}

	conn, err := acceptWithin(ln, 2*time.Second)
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer unix.Close(conn)
	got, err := readAllWithin(conn, n, 2*time.Second)
	if err != nil {
		t.Fatalf("accepted socket read %d of %d bytes: %v", len(got), n, err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("accepted socket read %d bytes that differ from the %d sent", len(got), n)
	}
	// Linux acknowledges everything.
	ack := readMatching(t, d, buf, func(ip wire.IPv4Packet) bool {
		return tcpFrom(5001, tcpACK)(ip) && wire.TCPSegment(ip.Payload()).Ack() == iss+1+uint32(n)
	})
	t.Logf("%d bytes in segments of %d accepted; ACK of %d bytes", n, mss, len(ack.Data))
}

// waitWritable polls fd until it is writable (connected), for at most 2 s.
func waitWritable(fd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
	n, err := unix.Poll(fds, 2000)
	if err != nil {
		return err
	}
	if n == 0 {
		return unix.ETIMEDOUT
	}
	if soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
		return unix.Errno(soerr)
	}
	return nil
}

// acceptWithin accepts on the non-blocking listener ln, for at most d.
func acceptWithin(ln int, d time.Duration) (int, error) {
	fds := []unix.PollFd{{Fd: int32(ln), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, int(d.Milliseconds())); err != nil || n == 0 {
		return -1, unix.ETIMEDOUT
	}
	fd, _, err := unix.Accept4(ln, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
	return fd, err
}

// readAllWithin reads n bytes from the non-blocking socket fd, for at most d.
func readAllWithin(fd, n int, d time.Duration) ([]byte, error) {
	got := make([]byte, 0, n)
	deadline := time.Now().Add(d)
	for len(got) < n {
		left := time.Until(deadline)
		if left <= 0 {
			return got, unix.ETIMEDOUT
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, int(left.Milliseconds())+1); err != nil && err != unix.EINTR {
			return got, err
		}
		m, err := unix.Read(fd, got[len(got):n])
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return got, err
		}
		if m == 0 {
			return got, io.ErrUnexpectedEOF
		}
		got = got[:len(got)+m]
	}
	return got, nil
}
