//go:build linux

package tun

import (
	"encoding/binary"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp/internal/netlink"
	"github.com/ultcp/ultcp/internal/wire"
)

// privateNetns moves the calling goroutine's thread into a new, empty
// network namespace, so that nothing a test does touches the machine's own.
// The thread stays locked to the goroutine and dies with it (a locked
// goroutine that exits takes its thread along), so the namespace never
// reaches another goroutine. Everything namespace-bound (TUN devices,
// sockets, netlink calls, /proc/sys/net writes) must be done by the test
// goroutine itself; file descriptors made here may then be used anywhere.
func privateNetns(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (CAP_NET_ADMIN) to make a private network namespace and a TUN device")
	}
	runtime.LockOSThread() // never unlocked, on purpose (see above)
	before, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		tb.Fatalf("reading this thread's namespace: %v", err)
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		tb.Fatalf("unshare(CLONE_NEWNET): %v", err)
	}
	after, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil || after == before {
		tb.Fatalf("thread still in namespace %s after unshare (%v): refusing to go on", before, err)
	}
}

// openTun opens a TUN device in the current (private) namespace and gives it
// addr, MTU 1500 and link up, with lo up too, and IPv6 off.
func openTun(tb testing.TB, name string, offload bool, addr string) *Device {
	tb.Helper()
	// No IPv6 on new devices: its neighbour discovery would put packets on
	// the device that no test asked for (the file is this thread's
	// namespace's).
	if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1\n"), 0); err != nil && !os.IsNotExist(err) {
		tb.Fatalf("disable_ipv6: %v", err)
	}
	d, err := Open(Config{Name: name, MTU: 1500, Offload: offload})
	if err != nil {
		tb.Fatalf("Open %s: %v", name, err)
	}
	tb.Cleanup(func() { d.Close() })
	for _, err := range []error{
		netlink.LinkUp("lo"),
		netlink.AddAddr(name, netip.MustParsePrefix(addr)),
		netlink.LinkUp(name),
	} {
		if err != nil {
			tb.Fatal(err)
		}
	}
	return d
}

// setForwarding turns IPv4 forwarding on or off in the current namespace
// (the /proc/sys/net file is the opening thread's namespace's).
func setForwarding(tb testing.TB, on bool) {
	tb.Helper()
	v := "0\n"
	if on {
		v = "1\n"
	}
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0); err != nil {
		tb.Fatalf("ip_forward: %v", err)
	}
}

// readMatching reads packets until one is IPv4 and satisfies match, skipping
// others (the kernel may send IPv6 neighbour discovery or ICMP on its own),
// for at most 2 s.
func readMatching(tb testing.TB, d *Device, buf []byte, match func(wire.IPv4Packet) bool) Packet {
	tb.Helper()
	deadline := time.Now().Add(2 * time.Second)
	if err := d.SetReadDeadline(deadline); err != nil {
		tb.Fatal(err)
	}
	defer d.SetReadDeadline(time.Time{})
	for {
		p, err := d.Read(buf)
		if err != nil {
			tb.Fatalf("Read on %s waiting for a packet: %v", d.Name(), err)
		}
		ip, err := wire.NewIPv4Packet(p.Data)
		if err == nil && match(ip) {
			return p
		}
	}
}

// ipv4 builds an IPv4 header (no options, DF, TTL 64, valid checksum) for a
// packet of totalLen bytes (RFC 791 §3.1).
func ipv4(b []byte, src, dst [4]byte, proto uint8, totalLen int) {
	b[0], b[1] = 0x45, 0
	binary.BigEndian.PutUint16(b[2:], uint16(totalLen))
	binary.BigEndian.PutUint16(b[4:], 0)
	binary.BigEndian.PutUint16(b[6:], 0x4000)
	b[8], b[9] = 64, proto
	b[10], b[11] = 0, 0
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], wire.Checksum(b[:20]))
}

// tcp builds a 20-byte TCP header without options and without checksum
// (RFC 9293 §3.1).
func tcp(b []byte, sport, dport uint16, seq, ack uint32, flags byte, window uint16) {
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	binary.BigEndian.PutUint32(b[4:], seq)
	binary.BigEndian.PutUint32(b[8:], ack)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:], window)
	b[16], b[17], b[18], b[19] = 0, 0, 0, 0
}

const (
	tcpACK = 0x10
	tcpPSH = 0x08
	tcpSYN = 0x02
)

// finishChecksum completes a partial checksum the way whoever honours
// NEEDS_CSUM does: the complement of the sum from CsumStart to the end, the
// field holding the pseudo-header sum, stored at CsumStart+CsumOffset.
func finishChecksum(p Packet) {
	field := int(p.CsumStart) + int(p.CsumOffset)
	binary.BigEndian.PutUint16(p.Data[field:], wire.Checksum(p.Data[p.CsumStart:]))
}
