//go:build linux

package tun

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/netlink"
	"github.com/ultcp/ultcp/internal/wire"
)

var (
	tunAddr  = [4]byte{10, 99, 0, 1} // the namespace's address on the device
	peerAddr = [4]byte{10, 99, 0, 2} // "the outside", which the test plays through the device
	farAddr  = [4]byte{10, 98, 0, 2} // behind a second device, for forwarding tests
)

// sendUDP sends msg from a UDP socket in the namespace to 10.99.0.2:9.
func sendUDP(t *testing.T, msg string) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, []byte(msg), 0, &unix.SockaddrInet4{Port: 9, Addr: peerAddr}); err != nil {
		t.Fatalf("sendto 10.99.0.2:9: %v", err)
	}
}

func udpTo9(ip wire.IPv4Packet) bool {
	return ip.Protocol() == wire.ProtoUDP && ip.Dst() == peerAddr && len(ip.Payload()) >= 8 &&
		binary.BigEndian.Uint16(ip.Payload()[2:]) == 9
}

// checkUDP checks what every UDP packet from sendUDP must be, checksum aside.
func checkUDP(t *testing.T, p Packet, msg string) wire.IPv4Packet {
	t.Helper()
	ip := wire.IPv4Packet(p.Data)
	if err := ip.VerifyChecksum(); err != nil {
		t.Errorf("IPv4 header checksum: %v", err)
	}
	if ip.Src() != tunAddr || ip.TotalLen() != len(p.Data) {
		t.Errorf("IPv4 src %v total length %d for %d bytes; want src 10.99.0.1 and a matching length", ip.Src(), ip.TotalLen(), len(p.Data))
	}
	if got := string(ip.Payload()[8:]); got != msg {
		t.Errorf("UDP payload %q, want %q", got, msg)
	}
	if p.GSOSize != 0 {
		t.Errorf("GSOSize %d on a 9-byte datagram", p.GSOSize)
	}
	return ip
}

func TestReadUDPWithoutOffloadHasFullChecksum(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	sendUDP(t, "hello tun")
	p := readMatching(t, d, make([]byte, ReadBufferLen), udpTo9)
	ip := checkUDP(t, p, "hello tun")
	if p.NeedsCsum {
		t.Errorf("NEEDS_CSUM set without offload")
	}
	if err := wire.VerifyUDPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
		t.Errorf("UDP checksum: %v", err)
	}
}

func TestReadUDPWithOffloadHasPartialChecksum(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	sendUDP(t, "hello tun")
	p := readMatching(t, d, make([]byte, ReadBufferLen), udpTo9)
	ip := checkUDP(t, p, "hello tun")
	if !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 6 {
		t.Fatalf("NeedsCsum %v at %d+%d, want NEEDS_CSUM at 20+6 (UDP's checksum)", p.NeedsCsum, p.CsumStart, p.CsumOffset)
	}
	// The field holds the pseudo-header's sum (RFC 768) for us to finish.
	if got, want := wire.UDPDatagram(ip.Payload()).Checksum(), wire.PseudoHeaderSum(ip.Src(), ip.Dst(), wire.ProtoUDP, len(ip.Payload())); got != want {
		t.Errorf("partial checksum %#04x, want the pseudo-header sum %#04x", got, want)
	}
	finishChecksum(p)
	if err := wire.VerifyUDPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
		t.Errorf("UDP checksum after finishing it: %v", err)
	}
}

// connectTCP starts a non-blocking connect from the namespace to
// 10.99.0.2:80, which puts a SYN on the device.
func connectTCP(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: 80, Addr: peerAddr}); err != unix.EINPROGRESS {
		t.Fatalf("connect 10.99.0.2:80: %v, want EINPROGRESS", err)
	}
}

func synTo80(ip wire.IPv4Packet) bool {
	return ip.Protocol() == wire.ProtoTCP && ip.Dst() == peerAddr && len(ip.Payload()) >= 20 &&
		binary.BigEndian.Uint16(ip.Payload()[2:]) == 80 && ip.Payload()[13]&tcpSYN != 0
}

func TestReadTCPSYNWithoutOffloadHasFullChecksum(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	connectTCP(t)
	p := readMatching(t, d, make([]byte, ReadBufferLen), synTo80)
	ip := wire.IPv4Packet(p.Data)
	if p.NeedsCsum {
		t.Errorf("NEEDS_CSUM set without offload")
	}
	if err := wire.VerifyTCPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
		t.Errorf("SYN's TCP checksum: %v", err)
	}
}

func TestReadTCPSYNWithOffloadHasPartialChecksum(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	connectTCP(t)
	p := readMatching(t, d, make([]byte, ReadBufferLen), synTo80)
	ip := wire.IPv4Packet(p.Data)
	if !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 16 {
		t.Fatalf("NeedsCsum %v at %d+%d, want NEEDS_CSUM at 20+16 (TCP's checksum)", p.NeedsCsum, p.CsumStart, p.CsumOffset)
	}
	finishChecksum(p)
	if err := wire.VerifyTCPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
		t.Errorf("SYN's TCP checksum after finishing it: %v", err)
	}
}

// gsoSegments is how many MSS-sized segments the test's super-packet holds:
// 45 × 1448 = 65160 payload bytes, 65200 with headers.
const (
	gsoMSS      = 1448
	gsoSegments = 45
)

// gsoPacket builds a TCP/IPv4 super-packet from 10.99.0.2:40000 to dst:5001
// (seq 1000, ACK|PSH): headers in the first 40 bytes of the returned slice,
// a patterned payload after them, the TCP checksum field holding the
// pseudo-header sum over the whole super-packet's TCP length, as Linux's
// own TSO does (the kernel corrects the length per segment).
func gsoPacket(dst [4]byte) (headers, payload []byte) {
	payload = make([]byte, gsoSegments*gsoMSS)
	for i := range payload {
		payload[i] = byte(i*7 + i>>8)
	}
	headers = make([]byte, 40)
	ipv4(headers, peerAddr, dst, wire.ProtoTCP, 40+len(payload))
	tcp(headers[20:], 40000, 5001, 1000, 1, tcpACK|tcpPSH, 65535)
	binary.BigEndian.PutUint16(headers[36:], wire.PseudoHeaderSum(peerAddr, dst, wire.ProtoTCP, 20+len(payload)))
	return headers, payload
}

func gsoOf(headers, payload []byte) Packet {
	return Packet{Data: headers, Payload: payload, GSOSize: gsoMSS, NeedsCsum: true, CsumStart: 20, CsumOffset: 16, HdrLen: 40}
}

// TestWriteGSOIsSegmentedByKernel writes one 64 KiB super-packet (headers and
// payload in separate slices) into an offloading device and reads, from a
// second device without offload that the namespace forwards to, the 45
// segments the kernel cut it into: each a valid IPv4/TCP packet with a good
// checksum, the right sequence number and its slice of the payload, PSH on
// the last only.
func TestWriteGSOIsSegmentedByKernel(t *testing.T) {
	privateNetns(t)
	headers, payload := gsoPacket(farAddr)
	segs := writeAndSegment(t, gsoOf(headers, payload))
	for k, seg := range segs {
		if psh := seg[13]&tcpPSH != 0; psh != (k == len(segs)-1) {
			t.Errorf("segment %d of %d: PSH %v, want it on the last only", k, len(segs), psh)
		}
	}
}

// TestWriteGSOWithECNKeepsCWROnFirstSegment: a super-packet flagged
// VIRTIO_NET_HDR_GSO_ECN whose header has CWR is cut so that only the first
// segment carries CWR (RFC 3168 §6.1.2: CWR on the first new data after a
// window reduction).
func TestWriteGSOWithECNKeepsCWROnFirstSegment(t *testing.T) {
	privateNetns(t)
	headers, payload := gsoPacket(farAddr)
	const tcpCWR = 0x80
	headers[20+13] |= tcpCWR
	p := gsoOf(headers, payload)
	p.ECN = true
	for k, seg := range writeAndSegment(t, p) {
		if cwr := seg[13]&tcpCWR != 0; cwr != (k == 0) {
			t.Errorf("segment %d: CWR %v, want it on the first only", k, cwr)
		}
	}
}

// writeAndSegment writes p, a super-packet from gsoPacket, into an
// offloading device and returns the TCP segments the kernel forwards to a
// device without offload, after checking each one's length, TTL, checksums
// and sequence number, and that their payloads make up p's.
func writeAndSegment(t *testing.T, p Packet) []wire.TCPSegment {
	t.Helper()
	in := openTun(t, "ultcpin0", true, "10.99.0.1/24")
	out := openTun(t, "ultcpout0", false, "10.98.0.1/24")
	setForwarding(t, true)
	before, err := netlink.LinkByName(in.Name())
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Write(p); err != nil {
		t.Fatalf("Write GSO: %v", err)
	}
	after, err := netlink.LinkByName(in.Name())
	if err != nil {
		t.Fatal(err)
	}
	if got := after.Stats.RxPackets - before.Stats.RxPackets; got != 1 {
		t.Errorf("device counted %d received packets for one super-packet", got)
	}
	buf := make([]byte, ReadBufferLen)
	var segs []wire.TCPSegment
	var got []byte
	for k := 0; k < gsoSegments; k++ {
		q := readMatching(t, out, buf, func(ip wire.IPv4Packet) bool { return ip.Dst() == farAddr })
		ip := wire.IPv4Packet(q.Data)
		if q.GSOSize != 0 || q.NeedsCsum {
			t.Fatalf("segment %d: GSOSize %d NeedsCsum %v from a device without offload", k, q.GSOSize, q.NeedsCsum)
		}
		if ip.TotalLen() != 40+gsoMSS || ip.TTL() != 63 {
			t.Fatalf("segment %d: total length %d TTL %d, want %d and 63 (forwarded once)", k, ip.TotalLen(), ip.TTL(), 40+gsoMSS)
		}
		if err := ip.VerifyChecksum(); err != nil {
			t.Fatalf("segment %d: IPv4 checksum: %v", k, err)
		}
		if err := wire.VerifyTCPChecksum(ip.Src(), ip.Dst(), ip.Payload()); err != nil {
			t.Fatalf("segment %d: TCP checksum: %v", k, err)
		}
		seg := wire.TCPSegment(append([]byte(nil), ip.Payload()...))
		if want := uint32(1000 + k*gsoMSS); seg.Seq() != want {
			t.Fatalf("segment %d: seq %d, want %d", k, seg.Seq(), want)
		}
		segs = append(segs, seg)
		got = append(got, seg.Payload()...)
	}
	if want := append(append([]byte(nil), p.Data[40:]...), p.Payload...); !bytes.Equal(got, want) {
		t.Fatalf("the %d segments' payloads (%d bytes) differ from the super-packet's (%d bytes)", gsoSegments, len(got), len(want))
	}
	return segs
}

// TestWriteGSOReachesOffloadingDeviceWhole: forwarded to a device that
// offloads TSO, the super-packet is not cut: it is read back in one piece,
// with its GSO fields, as the gateway receives GRO'd packets from outside.
func TestWriteGSOReachesOffloadingDeviceWhole(t *testing.T) {
	privateNetns(t)
	in := openTun(t, "ultcpin0", true, "10.99.0.1/24")
	out := openTun(t, "ultcpout0", true, "10.98.0.1/24")
	setForwarding(t, true)
	headers, payload := gsoPacket(farAddr)
	whole := append(headers, payload...)
	if err := in.Write(Packet{Data: whole, GSOSize: gsoMSS, NeedsCsum: true, CsumStart: 20, CsumOffset: 16}); err != nil {
		t.Fatalf("Write GSO: %v", err)
	}
	p := readMatching(t, out, make([]byte, ReadBufferLen), func(ip wire.IPv4Packet) bool { return ip.Dst() == farAddr })
	if p.GSOSize != gsoMSS || !p.NeedsCsum || p.CsumStart != 20 || p.CsumOffset != 16 || len(p.Data) != len(whole) {
		t.Fatalf("read GSOSize %d NeedsCsum %v at %d+%d, %d bytes; want the %d-byte super-packet with GSO %d at 20+16",
			p.GSOSize, p.NeedsCsum, p.CsumStart, p.CsumOffset, len(p.Data), len(whole), gsoMSS)
	}
	if !bytes.Equal(wire.TCPSegment(wire.IPv4Packet(p.Data).Payload()).Payload(), payload) {
		t.Fatalf("super-packet's payload changed on the way")
	}
}

// Error paths.

func TestOpenWithoutCloneDeviceIsErrNoDevice(t *testing.T) {
	_, err := Open(Config{Name: "ultcptest0", path: "/nonexistent/net/tun"})
	if !errors.Is(err, ErrNoDevice) || !errors.Is(err, unix.ENOENT) {
		t.Fatalf("Open: %v, want ErrNoDevice wrapping ENOENT", err)
	}
	t.Log(err)
}

func TestOpenWithoutCapNetAdminIsErrPermission(t *testing.T) {
	privateNetns(t)
	dropCapNetAdmin(t)
	_, err := Open(Config{Name: "ultcptest0"})
	if !errors.Is(err, ErrPermission) || !errors.Is(err, unix.EPERM) {
		t.Fatalf("Open without CAP_NET_ADMIN: %v, want ErrPermission wrapping EPERM", err)
	}
	t.Log(err)
}

// dropCapNetAdmin removes CAP_NET_ADMIN from this thread's effective set
// (capabilities are per thread; the thread is locked and dies with the test).
func dropCapNetAdmin(t *testing.T) {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatalf("capget: %v", err)
	}
	data[unix.CAP_NET_ADMIN/32].Effective &^= 1 << (unix.CAP_NET_ADMIN % 32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		t.Fatalf("capset: %v", err)
	}
}

func TestOpenSameNameTwiceIsErrNameInUse(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{Name: "ultcptest0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	_, err = Open(Config{Name: "ultcptest0"})
	if !errors.Is(err, ErrNameInUse) {
		t.Fatalf("second Open ultcptest0: %v, want ErrNameInUse", err)
	}
	t.Log(err)
}

func TestOpenNameOfNonTUNIsErrNameInUse(t *testing.T) {
	privateNetns(t)
	if _, err := Open(Config{Name: "lo"}); !errors.Is(err, ErrNameInUse) {
		t.Fatalf("Open lo: %v, want ErrNameInUse", err)
	}
}

func TestOpenRejectsLongNameAndBadMTU(t *testing.T) {
	for _, cfg := range []Config{{Name: "sixteen-bytes-xx"}, {Name: "ultcptest0", MTU: 67}, {Name: "ultcptest0", MTU: 65536}} {
		if _, err := Open(cfg); !errors.Is(err, unix.EINVAL) {
			t.Errorf("Open %+v: %v, want EINVAL", cfg, err)
		}
	}
}

func TestOpenWithEmptyNameGetsKernelName(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	l, err := netlink.LinkByName(d.Name())
	if err != nil || d.Name() != "tun0" || l.MTU != 9000 {
		t.Fatalf("Name %q, link %+v, %v; want tun0 with MTU 9000", d.Name(), l, err)
	}
}

func TestCloseRemovesInterface(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{Name: "ultcptest0"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkIndex("ultcptest0"); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("LinkIndex after Close: %v, want ENODEV", err)
	}
}

func TestWriteTooBigIsErrTooBig(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	headers, payload := gsoPacket(farAddr)
	p := gsoOf(headers, append(payload, make([]byte, MaxPacketLen)...))
	if err := d.Write(p); !errors.Is(err, ErrTooBig) {
		t.Fatalf("Write of %d bytes: %v, want ErrTooBig", p.Len(), err)
	}
}

func TestWriteGSOWithoutPartialChecksumIsErrBadGSO(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", true, "10.99.0.1/24")
	headers, payload := gsoPacket(farAddr)
	p := gsoOf(headers, payload)
	p.NeedsCsum, p.CsumStart, p.CsumOffset = false, 0, 0
	err := d.Write(p)
	if !errors.Is(err, ErrBadGSO) {
		t.Fatalf("Write GSO without NEEDS_CSUM: %v, want ErrBadGSO", err)
	}
	t.Log(err)
}

func TestWriteNonIPIsEINVALFromKernel(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	err := d.Write(Packet{Data: bytes.Repeat([]byte{0x50}, 40)}) // IP version 5
	if !errors.Is(err, unix.EINVAL) {
		t.Fatalf("Write of a version-5 packet: %v, want EINVAL", err)
	}
	t.Log(err)
}

func TestWriteOnDownInterfaceIsErrDown(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{Name: "ultcptest0"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	headers, _ := gsoPacket(farAddr)
	err = d.Write(Packet{Data: headers})
	if !errors.Is(err, ErrDown) || !errors.Is(err, unix.EIO) {
		t.Fatalf("Write before LinkUp: %v, want ErrDown wrapping EIO", err)
	}
	t.Log(err)
}

func TestWriteEmptyIsErrBadVnetHdr(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	if err := d.Write(Packet{}); !errors.Is(err, ErrBadVnetHdr) {
		t.Fatalf("Write of nothing: %v, want ErrBadVnetHdr", err)
	}
}

func TestReadIntoShortBufferIsErrBufferTooSmall(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	if _, err := d.Read(make([]byte, 1510)); !errors.Is(err, ErrBufferTooSmall) {
		t.Fatalf("Read into 1510 bytes: %v, want ErrBufferTooSmall", err)
	}
}

func TestReadPastDeadlineIsErrDeadlineExceeded(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{Name: "ultcptest0"}) // down: nothing will come
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	start := time.Now()
	_, err = d.Read(make([]byte, ReadBufferLen))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("Read returned %v after a 20 ms deadline", waited)
	}
}

func TestCloseWakesBlockedRead(t *testing.T) {
	privateNetns(t)
	d, err := Open(Config{Name: "ultcptest0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := d.Read(make([]byte, ReadBufferLen))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let Read block (if it has not, it still must fail)
	d.Close()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("blocked Read after Close: %v, want os.ErrClosed", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Read still blocked 2 s after Close")
	}
}

func TestWriteAfterCloseIsErrClosed(t *testing.T) {
	privateNetns(t)
	d := openTun(t, "ultcptest0", false, "10.99.0.1/24")
	d.Close()
	headers, _ := gsoPacket(farAddr)
	if err := d.Write(Packet{Data: headers}); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v, want os.ErrClosed", err)
	}
}
