package netns

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	addrA = netip.MustParsePrefix("192.168.99.1/24")
	addrB = netip.MustParsePrefix("192.168.99.2/24")
)

// pair makes namespaces a and b joined by veth va (192.168.99.1) ↔ vb
// (192.168.99.2).
func pair(t *testing.T) (a, b *NS) {
	t.Helper()
	a = ForTest(t, "a")
	b = ForTest(t, "b")
	if err := Veth(End{a, "va", addrA}, End{b, "vb", addrB}); err != nil {
		t.Fatal(err)
	}
	return a, b
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipping: %s is not installed", name)
	}
}

// pattern is n deterministic bytes.
type pattern struct{ off, n int64 }

func (p *pattern) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if r := p.n - p.off; int64(len(b)) > r {
		b = b[:r]
	}
	for i := range b {
		x := p.off + int64(i)
		b[i] = byte(x*7 + x>>9)
	}
	p.off += int64(len(b))
	return len(b), nil
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, &pattern{n: n})
	var s [32]byte
	h.Sum(s[:0])
	return s
}

type sink struct {
	h interface {
		io.Writer
		Sum([]byte) []byte
	}
	n int64
}

func (s *sink) Write(b []byte) (int, error) { s.n += int64(len(b)); return s.h.Write(b) }

// sendTCP sends n pattern bytes from a to b's port with socat and checks
// that b received them all, unchanged, within timeout.
func sendTCP(t *testing.T, a, b *NS, port int, n int64, timeout time.Duration) {
	t.Helper()
	needTool(t, "socat")
	recv := &sink{h: sha256.New()}
	srv, err := b.Start(timeout, func(c *exec.Cmd) { c.Stdout = recv }, "socat", "-u", "TCP-LISTEN:"+strconv.Itoa(port)+",reuseaddr", "STDOUT")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.WaitListen(port, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := a.Command(ctx, "socat", "-u", "STDIN", "TCP:"+addrB.Addr().String()+":"+strconv.Itoa(port))
	cmd.Stdin = &pattern{n: n}
	if _, err := runCmd(cmd); err != nil {
		t.Fatal(err)
	}
	if err := srv.Wait(); err != nil {
		t.Fatal(err)
	}
	var got [32]byte
	recv.h.Sum(got[:0])
	if recv.n != n || got != patternSum(n) {
		t.Fatalf("received %d bytes, sha256 %x; want %d bytes, sha256 %x", recv.n, got, n, patternSum(n))
	}
}

func TestNewRejectsBadLabel(t *testing.T) {
	for _, label := range []string{"", "a b", "x/y", "ext;rm", strings.Repeat("a", 41)} {
		if ns, err := New(label); err == nil {
			ns.Close()
			t.Errorf("New(%q) succeeded, want an error", label)
		}
	}
}

func TestOwnerPIDParsesOurNamesOnly(t *testing.T) {
	for _, c := range []struct {
		name string
		pid  int
		ok   bool
	}{
		{"ultcp-ext-1234-7", 1234, true},
		{"ultcp-gw-bench-99-1", 99, true},
		{"ultcp-ext-1234", 0, false},
		{"other-ext-1234-7", 0, false},
		{"ultcp-ext-x-7", 0, false},
		{"ultcp-ext-0-7", 0, false},
	} {
		pid, ok := ownerPID(c.name)
		if pid != c.pid || ok != c.ok {
			t.Errorf("ownerPID(%q) = %d, %v; want %d, %v", c.name, pid, ok, c.pid, c.ok)
		}
	}
}

func TestNewMakesNamespaceAndCloseRemovesIt(t *testing.T) {
	Require(t)
	ns, err := New("life")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(netnsDir, ns.Name)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("after New: %v", err)
	}
	if !strings.HasPrefix(ns.Name, "ultcp-life-"+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("name %q, want ultcp-life-PID-N", ns.Name)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after Close: stat %s: %v, want not exist", path, err)
	}
	if err := ns.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSysctlRejectsKeysOutsideNet(t *testing.T) {
	ns := &NS{Name: "unused"}
	for _, key := range []string{"kernel.panic", "vm.swappiness", "net.ipv4/../../kernel", "net.a b"} {
		if err := ns.Sysctl(key, "1"); err == nil {
			t.Errorf("Sysctl(%q) succeeded, want an error", key)
		}
	}
}

func TestSysctlIPForwardChangesOnlyTheNamespace(t *testing.T) {
	ns := ForTest(t, "fwd")
	root, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if v, err := ns.ReadSysctl("net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Fatalf("ip_forward in namespace = %q, %v; want 1", v, err)
	}
	after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if string(after) != string(root) {
		t.Fatalf("root namespace's ip_forward changed from %q to %q", root, after)
	}
}

func TestVethCarriesTCPBetweenNamespaces(t *testing.T) {
	a, b := pair(t)
	sendTCP(t, a, b, 7001, 1<<20, 20*time.Second)
}

// A third namespace routes between a and b: the shape of ext ↔ gw ↔ cluster.
func TestRouteThroughForwardingNamespace(t *testing.T) {
	a := ForTest(t, "a")
	r := ForTest(t, "r")
	b := ForTest(t, "b")
	if err := Veth(End{a, "va", netip.MustParsePrefix("192.168.98.2/24")}, End{r, "ra", netip.MustParsePrefix("192.168.98.1/24")}); err != nil {
		t.Fatal(err)
	}
	if err := Veth(End{r, "rb", netip.MustParsePrefix("192.168.99.1/24")}, End{b, "vb", addrB}); err != nil {
		t.Fatal(err)
	}
	if err := r.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if err := a.AddRoute(netip.MustParsePrefix("192.168.99.0/24"), netip.MustParseAddr("192.168.98.1")); err != nil {
		t.Fatal(err)
	}
	if err := b.AddRoute(netip.MustParsePrefix("192.168.98.0/24"), netip.MustParseAddr("192.168.99.1")); err != nil {
		t.Fatal(err)
	}
	sendTCP(t, a, b, 7002, 256<<10, 20*time.Second)
}

func TestStartKillsPeerAtEndOfLifetime(t *testing.T) {
	ns := ForTest(t, "life")
	start := time.Now()
	p, err := ns.Start(300*time.Millisecond, nil, "sleep", "30")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err == nil {
		t.Fatal("sleep 30 exited cleanly, want killed")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("peer lived %v, lifetime was 300ms", d)
	}
}

func TestCloseStopsPeers(t *testing.T) {
	Require(t)
	ns, err := New("stop")
	if err != nil {
		t.Fatal(err)
	}
	p, err := ns.Start(time.Minute, nil, "sleep", "60")
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("peer still running after Close")
	}
}

func TestHasListenerReadsProcNetTCP(t *testing.T) {
	const tcp = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1B59 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1B5A 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
`
	for _, c := range []struct {
		port int
		want bool
	}{{7001, true}, {7002, false}, {50000, false}} {
		got, err := hasListener(strings.NewReader(tcp), c.port)
		if err != nil || got != c.want {
			t.Errorf("hasListener(port %d) = %v, %v; want %v", c.port, got, err, c.want)
		}
	}
}

func TestHasListenerReadsProcNetTCP6(t *testing.T) {
	const tcp6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1451 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
`
	if got, err := hasListener(strings.NewReader(tcp6), 5201); err != nil || !got {
		t.Fatalf("hasListener(tcp6, 5201) = %v, %v; want true", got, err)
	}
}

func TestParseNFTCounts(t *testing.T) {
	const listing = `table netdev ultcp_loss_vb {
	chain ingress {
		type filter hook ingress device "vb" priority filter; policy accept;
		counter packets 2556 bytes 138308559
		numgen random mod 1000000 < 50000 counter packets 148 bytes 8226072 drop
	}
}
`
	seen, dropped, err := parseNFTCounts(listing)
	if err != nil || seen != 2556 || dropped != 148 {
		t.Fatalf("parseNFTCounts = %d, %d, %v; want 2556, 148, nil", seen, dropped, err)
	}
}

func TestParseIPTablesCounts(t *testing.T) {
	const listing = `Chain INPUT (policy ACCEPT 0 packets, 0 bytes)
    pkts      bytes target     prot opt in     out     source               destination
     415 23284500 DROP       0    --  vb     *       0.0.0.0/0            0.0.0.0/0            statistic mode random probability 0.05000000000
    7706 439376716            0    --  vb     *       0.0.0.0/0            0.0.0.0/0
       9      900            0    --  other  *       0.0.0.0/0            0.0.0.0/0
`
	seen, dropped, err := parseIPTablesCounts(listing, "vb")
	if err != nil || seen != 8121 || dropped != 415 {
		t.Fatalf("parseIPTablesCounts = %d, %d, %v; want 8121, 415, nil", seen, dropped, err)
	}
}

func TestAddLossRejectsBadProbability(t *testing.T) {
	ns := &NS{Name: "unused"}
	for _, p := range []float64{0, 1, -0.1, 1.5} {
		if _, err := ns.AddLoss("vb", p, NFTIngress); err == nil {
			t.Errorf("AddLoss(p=%v) succeeded, want an error", p)
		}
	}
}

// lossRun sends 1 MiB a → b through a 10 % loss rule on b's ingress, with
// the offloads off so that each wire packet is drawn once, and checks that
// the rule dropped about a tenth and that TCP still delivered every byte.
func lossRun(t *testing.T, m LossMethod) {
	if m == NFTIngress {
		needTool(t, "nft")
	} else {
		needTool(t, "iptables")
	}
	a, b := pair(t)
	for _, e := range []struct {
		ns  *NS
		dev string
	}{{a, "va"}, {b, "vb"}} {
		if err := e.ns.SetOffloads(e.dev, false); err != nil {
			t.Fatal(err)
		}
	}
	l, err := b.AddLoss("vb", 0.10, m)
	if err != nil {
		t.Fatal(err)
	}
	sendTCP(t, a, b, 7003, 1<<20, 60*time.Second)
	seen, dropped, err := l.Counts()
	if err != nil {
		t.Fatal(err)
	}
	// ~730 data packets at MTU: 10 % ± 5 standard deviations.
	if seen < 500 || float64(dropped) < 0.04*float64(seen) || float64(dropped) > 0.18*float64(seen) {
		t.Fatalf("rule saw %d packets and dropped %d; want ≥ 500 seen and 4..18 %% dropped", seen, dropped)
	}
	t.Logf("%v: saw %d, dropped %d (%.1f %%)", m, seen, dropped, 100*float64(dropped)/float64(seen))
	if err := l.Remove(); err != nil {
		t.Fatal(err)
	}
}

func TestLossNFTIngressDropsAboutP(t *testing.T)        { lossRun(t, NFTIngress) }
func TestLossIPTablesStatisticDropsAboutP(t *testing.T) { lossRun(t, IPTablesStatistic) }

func TestSetOffloadsOffThenOn(t *testing.T) {
	a, _ := pair(t)
	o, err := a.GetOffloads("va")
	if err != nil {
		t.Fatal(err)
	}
	if !o.TXChecksum || !o.TSO || !o.GSO {
		t.Fatalf("a new veth's offloads = %+v, want TX checksum, TSO and GSO on", o)
	}
	if err := a.SetOffloads("va", false); err != nil {
		t.Fatal(err)
	}
	if o, _ := a.GetOffloads("va"); o != (Offloads{}) {
		t.Fatalf("after SetOffloads(false): %+v, want all off", o)
	}
	if err := a.SetOffloads("va", true); err != nil {
		t.Fatal(err)
	}
	if o, _ := a.GetOffloads("va"); o != (Offloads{true, true, true, true}) {
		t.Fatalf("after SetOffloads(true): %+v, want all on", o)
	}
}

func TestParseFieldsCountsBadChecksumsAndMalformed(t *testing.T) {
	const fields = "1\t1\t1\t0x56a9\t\t\tgood\n" +
		"2\t1\t0\t0x1234\t\t8388608\tbad tcp\n" +
		"3\t0\t2\t0x1234\t\t8388608\tbad ip\n" +
		"4\t1\t\t\t1\t8388608;6291456\tmalformed\n" +
		"5\t1;1\t1\t0x0001\t\t6291456\ticmp quoting ip, a warning\n" +
		"6\t1\t0\t0xffff\t\t6291456\t[TCP CHECKSUM 0xFFFF]\n"
	r, err := parseFields(bufio.NewReader(strings.NewReader(fields)))
	if err != nil {
		t.Fatal(err)
	}
	want := Report{Packets: 6, IPChecksumOK: 6, TCPChecksumOK: 2, BadIPChecksum: 1, BadTCPChecksum: 1, TCPChecksumFFFF: 1, Malformed: 1, ExpertErrors: 3,
		Examples: []string{"frame 2: bad tcp", "frame 3: bad ip", "frame 4: malformed"}}
	if r.String() != want.String() || strings.Join(r.Examples, "|") != strings.Join(want.Examples, "|") {
		t.Fatalf("parseFields = %v %q\nwant           %v %q", r, r.Examples, want, want.Examples)
	}
}

func TestHasRunningPacketSocket(t *testing.T) {
	const table = `sk               RefCnt Type Proto  Iface R Rmem   User   Inode
ffff8c8f4a0e1000 3      3    0003   7     1 0      0      123456
ffff8c8f4a0e2000 3      3    0003   9     0 0      0      123457
`
	for _, c := range []struct {
		ifindex int
		want    bool
	}{{7, true}, {9, false}, {1, false}} {
		if got := hasRunningPacketSocket(table, c.ifindex); got != c.want {
			t.Errorf("hasRunningPacketSocket(ifindex %d) = %v, want %v", c.ifindex, got, c.want)
		}
	}
}

func TestParseCaptureCounts(t *testing.T) {
	for _, c := range []struct {
		stderr            string
		captured, dropped int
	}{
		{"Capturing on 'vb'\n1234 packets captured\n", 1234, 0},
		{"Capturing on 'vb'\n1 packet captured\n", 1, 0},
		{"Capturing on 'vb'\n900 packets captured\n17 packets dropped from vb\n", 900, 17},
		{"tshark: killed\n", 0, 0},
	} {
		cp, dr := parseCaptureCounts(c.stderr)
		if cp != c.captured || dr != c.dropped {
			t.Errorf("parseCaptureCounts(%q) = %d, %d; want %d, %d", c.stderr, cp, dr, c.captured, c.dropped)
		}
	}
}

// captureRun captures on b's veth while a sends 512 KiB, and analyses it.
func captureRun(t *testing.T, offloads bool) Report {
	needTool(t, "tshark")
	a, b := pair(t)
	for _, e := range []struct {
		ns  *NS
		dev string
	}{{a, "va"}, {b, "vb"}} {
		if err := e.ns.SetOffloads(e.dev, offloads); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(t.TempDir(), "vb.pcapng")
	c, err := b.StartCapture("vb", file, 100000, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	sendTCP(t, a, b, 7004, 512<<10, 20*time.Second)
	captured, dropped := c.Stop()
	t.Logf("tshark: %d packets captured, %d dropped", captured, dropped)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := Analyze(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	return r
}

func TestCaptureOfWireLikeVethIsClean(t *testing.T) {
	r := captureRun(t, false)
	if !r.Clean() || r.TCPChecksumOK < 300 {
		t.Fatalf("%v %q; want clean, with ≥ 300 TCP checksums verified good", r, r.Examples)
	}
}

// With TX checksum offload a veth carries partial checksums: the analysis
// must see them as bad (so a clean report means the checksums were checked).
func TestCaptureFlagsPartialChecksumsOfOffloadingVeth(t *testing.T) {
	r := captureRun(t, true)
	if r.BadTCPChecksum == 0 {
		t.Fatalf("%v; want bad TCP checksums (partial, offloaded)", r)
	}
}
