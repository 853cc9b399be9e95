package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ultcp/ultcp"
	"github.com/ultcp/ultcp/internal/netlink"
	"github.com/ultcp/ultcp/internal/netns"
	"github.com/ultcp/ultcp/link/tun"
)

// The end-to-end smoke test: a node (an ultcp Stack in this process; the
// fabric is /dev/shm, no network) serves TCP; the gateway runs in this
// process with its TUN device in a namespace gw the test made; Linux's own
// TCP (socat) runs in a second namespace ext, joined to gw by a veth
// pair. Nothing is created in the root namespace. H7's interop suite
// (test/interop) is the thorough version.

// openTUNIn opens and configures the gateway's TUN device inside the
// namespace named ns: the calling OS thread enters it, opens the device
// (which stays in that namespace) and configures it over netlink sockets
// that live there, then returns to its own namespace.
func openTUNIn(t *testing.T, ns string, addr netip.Addr, subnet netip.Prefix) *tun.Device {
	t.Helper()
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(self)
	target, err := unix.Open(filepath.Join("/run/netns", ns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatalf("entering %s: %v", ns, err)
	}
	back := func() {
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			// The thread stays locked and dies with this goroutine
			// rather than serve others from the wrong namespace.
			t.Fatalf("leaving %s: %v", ns, err)
		}
		runtime.UnlockOSThread()
	}
	// Be sure where we are before making anything.
	var st, want unix.Stat_t
	if unix.Stat("/proc/thread-self/ns/net", &st) != nil || unix.Fstat(target, &want) != nil || st.Ino != want.Ino {
		back()
		t.Fatal("the thread is not in the test's namespace; refusing to create a TUN device")
	}
	dev, err := tun.Open(tun.Config{Name: "ultcp0", MTU: 1500, Offload: true})
	if err != nil {
		back()
		t.Fatal(err)
	}
	for _, step := range []func() error{
		func() error { return netlink.AddAddr("ultcp0", netip.PrefixFrom(addr, 32)) },
		func() error { return netlink.LinkUp("ultcp0") },
		func() error { return netlink.AddRoute(subnet, "ultcp0") },
	} {
		if err := step(); err != nil {
			dev.Close()
			back()
			t.Fatal(err)
		}
	}
	back()
	return dev
}

func TestEndToEndLinuxTCPThroughTheGatewayToANode(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped with -short")
	}
	netns.Require(t)
	if _, err := os.Stat("/usr/bin/socat"); err != nil {
		t.Skip("socat is not installed")
	}
	gw := netns.ForTest(t, "gw")
	ext := netns.ForTest(t, "ext")
	if err := netns.Veth(netns.End{NS: gw, Dev: "gwv", Addr: netip.MustParsePrefix("192.168.77.1/24")},
		netns.End{NS: ext, Dev: "extv", Addr: netip.MustParsePrefix("192.168.77.2/24")}); err != nil {
		t.Fatal(err)
	}
	if err := ext.AddRoute(netip.MustParsePrefix("10.77.0.0/16"), netip.MustParseAddr("192.168.77.1")); err != nil {
		t.Fatal(err)
	}
	if err := gw.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}

	base, err := os.MkdirTemp("/dev/shm", "ultcp-gw-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	dir := filepath.Join(base, "fabric")

	dev := openTUNIn(t, gw.Name, gwAddr, netip.MustParsePrefix("10.77.0.0/16"))
	g, err := New(Config{FabricDir: dir, Addr: gwAddr, Device: dev, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- g.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-runDone; err != nil {
			t.Errorf("gateway Run: %v", err)
		}
	}()

	s, err := ultcp.NewStack(ultcp.Config{Addr: nodeAddr, FabricDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ln, err := s.Listen("tcp", "10.77.0.2:5000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// Upload: Linux in ext sends 16 MiB; the node hashes what it gets and
	// answers with the digest.
	payload := make([]byte, 16<<20)
	for i := range payload {
		payload[i] = byte(i*131 + i>>9)
	}
	sum := sha256.Sum256(payload)
	file := filepath.Join(base, "payload")
	if err := os.WriteFile(file, payload, 0o644); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		if err != nil {
			served <- fmt.Errorf("node read %d bytes: %w", n, err)
			return
		}
		_, err = fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
		served <- err
	}()
	out, err := ext.Run(ctx, "socat", "-t", "10", "-T", "30", "FILE:"+file+"!!STDOUT", "TCP:10.77.0.2:5000,shut-down")
	if err != nil {
		t.Fatalf("socat: %v\n%s", err, out)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("%d %s\n", len(payload), hex.EncodeToString(sum[:])); string(out) != want {
		t.Fatalf("node answered %q, want %q", out, want)
	}

	// Download: the node sends 8 MiB to Linux in ext, 1 MiB at a time,
	// checked by sha256sum in ext. ULTCP_E2E_DOWN_MIB sets another size
	// and counts bytes only (wc -c), for profiling the gateway: go test
	// -cpuprofile.
	chunk, mib, check := payload[:1<<20], 8, "sha256sum"
	if n, err := strconv.Atoi(os.Getenv("ULTCP_E2E_DOWN_MIB")); err == nil && n > 0 {
		mib, check = n, "wc -c"
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		for range mib {
			if _, err = c.Write(chunk); err != nil {
				break
			}
		}
		served <- err
	}()
	start := time.Now()
	got, err := ext.Run(ctx, "sh", "-c", "socat -T 30 -u TCP:10.77.0.2:5000 STDOUT | "+check)
	if err != nil {
		t.Fatalf("socat download: %v", err)
	}
	el := time.Since(start)
	if err := <-served; err != nil {
		t.Fatalf("node write: %v", err)
	}
	downSum := sha256.New()
	for range mib {
		downSum.Write(chunk)
	}
	want := hex.EncodeToString(downSum.Sum(nil))
	if check == "wc -c" {
		want = strconv.Itoa(mib << 20)
	}
	if !strings.HasPrefix(string(got), want) {
		t.Fatalf("download: %s in ext says %q, want %s", check, got, want)
	}
	t.Logf("download of %d MiB: %v (%.2f Gbit/s, socat start included)", mib, el, float64(mib<<20)*8/el.Seconds()/1e9)

	// ICMP echo through the kernel in ext (no ping here: a raw socket in
	// python3): the gateway answers for a live node and says host
	// unreachable for an address no node holds.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		for _, tc := range []struct{ dst, want string }{{"10.77.0.2", "type 0"}, {"10.77.9.9", "type 3 code 1"}} {
			out, err := ext.Run(ctx, "python3", "-c", icmpProbe, tc.dst)
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("echo request to %s: %v, %q; want %q", tc.dst, err, out, tc.want)
			}
		}
	}

	// A connection to a port nobody listens on is refused by the node.
	if _, err := ext.Run(ctx, "socat", "-T", "5", "/dev/null", "TCP:10.77.0.2:5001"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("connect to a closed port: %v; want connection refused", err)
	}
	st := g.Stats()
	t.Logf("in %d packets (%d GRO), out %d (%d GSO), drops ring_full %d, flows opened %d",
		st.InPackets.Load(), st.InGRO.Load(), st.OutPackets.Load(), st.OutGSO.Load(), st.Drop("ring_full"), st.FlowsOpened.Load())
}

// icmpProbe sends one ICMP echo request to argv[1] from a raw socket and
// prints the type and code of the first ICMP answer from that address or
// about it (RFC 792), within 3 s.
const icmpProbe = `
import socket, struct, sys, time
dst = sys.argv[1]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(3)
def csum(b):
    if len(b) % 2: b += bytes(1)
    x = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while x >> 16: x = (x & 0xffff) + (x >> 16)
    return ~x & 0xffff
msg = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"ultcp"
msg = msg[:2] + struct.pack("!H", csum(msg)) + msg[4:]
s.sendto(msg, (dst, 0))
deadline = time.time() + 3
while time.time() < deadline:
    pkt, src = s.recvfrom(2048)
    ihl = (pkt[0] & 15) * 4
    typ, code = pkt[ihl], pkt[ihl + 1]
    if typ == 8:
        continue
    print("type %d code %d from %s" % (typ, code, src[0]))
    break
`
