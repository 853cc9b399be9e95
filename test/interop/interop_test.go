package interop

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/netns"
)

// Sizes of the transfers. ULTCP_INTEROP_FULL=1: issue #7's (64 MiB curl,
// 1 GiB each way through socat). Otherwise (CI) smaller ones, each
// overridable: ULTCP_INTEROP_CURL_BYTES, ULTCP_INTEROP_NC_BYTES.
type sizes struct {
	curl, nc int64
	run      time.Duration // bound on one transfer
}

func suiteSizes(t testing.TB) sizes {
	s := sizes{curl: 8 << 20, nc: 8 << 20, run: 2 * time.Minute}
	if os.Getenv("ULTCP_INTEROP_FULL") == "1" {
		s = sizes{curl: 64 << 20, nc: 1 << 30, run: 20 * time.Minute}
	}
	for _, e := range []struct {
		env string
		dst *int64
	}{{"ULTCP_INTEROP_CURL_BYTES", &s.curl}, {"ULTCP_INTEROP_NC_BYTES", &s.nc}} {
		if v := os.Getenv(e.env); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				t.Fatalf("%s=%q: want a number of bytes", e.env, v)
			}
			*e.dst = n
		}
	}
	return s
}

// condition is a path between ext and the cluster.
type condition struct {
	name   string
	loss   float64 // kernel-made, each direction
	impair string  // the gateway's impairment stage (ultcp only: Linux has no netem here)
}

var conditions = []condition{
	{name: "clean"},
	{name: "loss=1%", loss: 0.01},
	{name: "loss=5%", loss: 0.05},
	{name: "reorder=10%,delay=20ms", impair: "reorder=10%,delay=20ms"},
}

// maxCapture bounds the packets tshark keeps per condition (at MTU about
// 450 MB): the start of a full-size run is checked, all of a CI one.
const maxCapture = 300000

// TestInterop is issue #7's "Must show" against Linux peers: curl in ext
// downloads from an HTTP server in the cluster, and a client in the
// cluster and socat in ext send to each other at once on one connection;
// every stream checked by SHA-256, on a clean path, with kernel-made loss in each direction,
// and with the gateway's reordering and delay; tshark on the veth finds no
// malformed packet and no bad checksum. "linux" runs the same cases with
// the Linux stand-in cluster (the harness's own check, and the reference);
// "ultcp" with the gateway and ultcp nodes.
func TestInterop(t *testing.T) {
	netns.Require(t)
	for _, tool := range []string{"curl", "socat", "tshark", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	sz := suiteSizes(t)
	for _, kind := range []string{"linux", "ultcp"} {
		t.Run(kind, func(t *testing.T) {
			for _, cond := range conditions {
				t.Run(cond.name, func(t *testing.T) {
					if kind == "linux" && cond.impair != "" {
						t.Skip("no netem on this kernel: only the gateway can delay and reorder")
					}
					runCondition(t, kind, cond, sz)
				})
			}
		})
	}
}

func runCondition(t *testing.T, kind string, cond condition, sz sizes) {
	tp := NewTopology(t, kind == "linux")
	// Wire-like veth: MTU packets with full checksums, so that tshark's
	// check means something and a loss rule drops one packet at a time.
	tp.Wire(t, false)
	var cl cluster
	if kind == "linux" {
		cl = linuxCluster{tp}
	} else {
		cl = newUltcpCluster(t, tp, cond.impair)
	}
	var losses []*netns.Loss
	if cond.loss > 0 {
		toExt, toGW := tp.Loss(t, cond.loss)
		losses = []*netns.Loss{toExt, toGW}
	}
	capFile := filepath.Join(t.TempDir(), "veth.pcapng")
	c, err := tp.GW.StartCapture(GWDev, capFile, maxCapture, 2*sz.run+time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	cl.startHTTP(t)

	t.Run("curl", func(t *testing.T) { curlDownload(t, tp, sz.curl, sz.run) })
	t.Run("socat", func(t *testing.T) { socatBoth(t, tp, cl, sz.nc, sz.run) })

	if u, ok := cl.(*ultcpCluster); ok && cond.impair != "" {
		// The stage must have acted, or the condition was not tested.
		m := u.metrics()
		t.Logf("gateway's impairment stage: passed %s, reordered %s, full %s",
			metricValue(m, `ultcp_gateway_impair_packets_total{outcome="passed"}`),
			metricValue(m, `ultcp_gateway_impair_packets_total{outcome="reordered"}`),
			metricValue(m, `ultcp_gateway_impair_packets_total{outcome="full"}`))
		if v := metricValue(m, `ultcp_gateway_impair_packets_total{outcome="reordered"}`); v == "0" {
			t.Errorf("the gateway reordered no packet under %s", cond.impair)
		}
	}
	for i, l := range losses {
		seen, dropped, err := l.Counts()
		if err != nil {
			t.Fatal(err)
		}
		dir := [...]string{"to ext", "to gw"}[i]
		t.Logf("kernel loss %s: dropped %d of %d packets", dir, dropped, seen)
		if dropped == 0 {
			t.Errorf("the loss rule %s dropped nothing: the condition was not tested", dir)
		}
	}
	captured, dropped := c.Stop()
	t.Run("tshark", func(t *testing.T) {
		t.Logf("capture: %d packets, %d dropped by the kernel before tshark read them (those are unchecked)", captured, dropped)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		r, err := netns.Analyze(ctx, capFile)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("tshark on %s: %v", GWDev, r)
		if !r.Clean() {
			t.Errorf("tshark found problems: %v; first: %q", r, r.Examples)
		}
		if r.TCPChecksumOK == 0 {
			t.Errorf("tshark verified no TCP checksum: %v", r)
		}
		if st, err := sendStalls(ctx, capFile); err != nil {
			t.Errorf("measuring stalls: %v", err)
		} else {
			t.Logf("stalls: %v", st)
		}
	})
	keepCapture(t, capFile)
}

// curlDownload fetches n bytes from the HTTP server in the cluster with
// curl in ext and checks their SHA-256.
func curlDownload(t *testing.T, tp *Topology, n int64, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sink := NewSink()
	var stderr syncBuffer
	cmd := tp.Ext.Command(ctx, "curl", "--silent", "--show-error", "--fail", "--max-time", strconv.Itoa(int(timeout.Seconds())),
		"--output", "-", "http://"+ServerAddr.String()+"/bytes?n="+strconv.FormatInt(n, 10))
	cmd.Stdout, cmd.Stderr = sink, &stderr
	start := time.Now()
	stop := watchProgress(cancel, sink)
	err := cmd.Run()
	if stop() {
		t.Fatalf("curl stalled: no progress for %v after %d of %d bytes", stallTimeout, sink.N, n)
	}
	if err != nil {
		t.Fatalf("curl after %v: %v: %s (received %d bytes)", time.Since(start).Round(time.Millisecond), err, stderr.String(), sink.N)
	}
	d := time.Since(start)
	if !sink.Matches(n) {
		t.Fatalf("curl received %d bytes with sha256 %x; want %d bytes, sha256 %x", sink.N, sink.Sum(), n, PatternSum(n))
	}
	t.Logf("curl: %d bytes in %v (%v), SHA-256 verified", n, d.Round(time.Millisecond), rate(n, d))
}

// socatBoth runs one connection between the cluster's client and socat in
// ext, each sending n pattern bytes while receiving the other's n: socat
// receives n bytes from the cluster and sends n back, and each end checks
// the SHA-256 of what it received.
func socatBoth(t *testing.T, tp *Topology, cl cluster, n int64, timeout time.Duration) {
	const port = 7100
	extSink := NewSink()
	peer, err := tp.Ext.Start(timeout+10*time.Second, func(c *exec.Cmd) { c.Stdin, c.Stdout = &Pattern{N: n}, extSink },
		"socat", "-b", "65536", "-t", strconv.Itoa(int(timeout.Seconds())), "TCP-LISTEN:"+strconv.Itoa(port)+",reuseaddr", "STDIO")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Stop()
	if err := peer.WaitListen(port, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	sink := NewSink()
	var stderr syncBuffer
	cmd := cl.nc(ctx, port, timeout)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = &Pattern{N: n}, sink, &stderr
	start := time.Now()
	stop := watchProgress(cancel, sink, extSink)
	err = cmd.Run()
	if stop() {
		peer.Stop()
		t.Fatalf("stalled: no progress for %v; the client received %d of %d bytes, socat %d", stallTimeout, sink.N, n, extSink.N)
	}
	if err != nil {
		t.Fatalf("client after %v: %v: %s (received %d of %d bytes; socat received %d)", time.Since(start).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()), sink.N, n, extSink.Count())
	}
	d := time.Since(start)
	if err := peer.Wait(); err != nil {
		t.Fatalf("socat in ext: %v", err)
	}
	if !extSink.Matches(n) {
		t.Errorf("socat in ext received %d bytes with sha256 %x; want %d bytes, sha256 %x", extSink.N, extSink.Sum(), n, PatternSum(n))
	}
	if !sink.Matches(n) {
		t.Errorf("the client received %d bytes with sha256 %x; want %d bytes, sha256 %x", sink.N, sink.Sum(), n, PatternSum(n))
	}
	t.Logf("socat: %d bytes each way in %v (%v each way), both SHA-256 verified", n, d.Round(time.Millisecond), rate(n, d))
}

// keepCapture copies a condition's capture out of the test's temporary
// directory (which is removed) when ULTCP_INTEROP_KEEP names a directory.
func keepCapture(t *testing.T, file string) {
	dir := os.Getenv("ULTCP_INTEROP_KEEP")
	if dir == "" {
		if t.Failed() {
			t.Logf("set ULTCP_INTEROP_KEEP=DIR to keep the capture")
		}
		return
	}
	dst := filepath.Join(dir, strings.NewReplacer("/", "_", "%", "pct", ",", "_", "=", "").Replace(t.Name())+".pcapng")
	b, err := os.ReadFile(file)
	if err == nil {
		err = os.WriteFile(dst, b, 0o644)
	}
	if err != nil {
		t.Logf("keeping the capture: %v", err)
		return
	}
	t.Logf("capture kept in %s", dst)
}

// stallTimeout ends a transfer that has made no progress for this long
// (a stall is a failure; waiting out the whole bound only delays it).
const stallTimeout = 20 * time.Second

// watchProgress cancels the transfer when none of the sinks has grown for
// stallTimeout. stop ends the watch and says whether it cancelled.
func watchProgress(cancel context.CancelFunc, sinks ...*Sink) (stop func() (stalled bool)) {
	done := make(chan struct{})
	var stalled atomic.Bool
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		last, since := int64(-1), time.Now()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			var total int64
			for _, s := range sinks {
				total += s.Count()
			}
			if total != last {
				last, since = total, time.Now()
			} else if time.Since(since) >= stallTimeout {
				stalled.Store(true)
				cancel()
				return
			}
		}
	}()
	return func() bool {
		close(done)
		return stalled.Load()
	}
}
