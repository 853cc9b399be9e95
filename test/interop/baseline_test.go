package interop

import (
	"os/exec"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/netns"
)

// The Linux baseline of issue #7's throughput target: Linux sending to
// Linux in ext over the path a node's packets take through the gateway.
// "gw" sends from the gw namespace itself (one veth); "cluster" sends from
// the Linux stand-in cluster, forwarded by gw (two veths and a forwarding
// hop, as the gateway's TUN device adds one). Offloads are Linux's defaults.
//
//	sudo go test -run XXX -bench LinuxBaseline -benchtime 1x ./test/interop
func BenchmarkLinuxBaseline(b *testing.B) {
	tp := NewTopology(b, true)
	senders := []struct {
		name string
		ns   *netns.NS
	}{{"from=gw", tp.GW}, {"from=cluster", tp.Cluster}}
	for _, s := range senders {
		b.Run("iperf3/"+s.name, func(b *testing.B) {
			b.ReportAllocs() // the harness's, not the measured path's
			var sum Gbps
			for b.Loop() {
				g, err := Iperf3(s.ns, tp.Ext, ExtAddr.Addr(), 5*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				sum += g
			}
			b.ReportMetric(float64(sum)/float64(b.N), "Gbit/s")
		})
		b.Run("socat-1GiB/"+s.name, func(b *testing.B) {
			b.ReportAllocs()
			var sum Gbps
			for b.Loop() {
				g, err := SocatSend(s.ns, tp.Ext, ExtAddr.Addr(), 7000, 1<<30, time.Minute)
				if err != nil {
					b.Fatal(err)
				}
				sum += g
			}
			b.ReportMetric(float64(sum)/float64(b.N), "Gbit/s")
		})
	}
}

// The harness measures what it should: Linux moves bytes across the
// topology both ways (no rate is asserted; rates are the benchmark's).
func TestLinuxBaselineToolsRun(t *testing.T) {
	for _, tool := range []string{"iperf3", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed", tool)
		}
	}
	tp := NewTopology(t, true)
	if g, err := Iperf3(tp.Cluster, tp.Ext, ExtAddr.Addr(), time.Second); err != nil || g <= 0 {
		t.Fatalf("iperf3 cluster → ext: %v, %v", g, err)
	}
	if g, err := SocatSend(tp.Ext, tp.Cluster, ServerAddr, 7000, 16<<20, 30*time.Second); err != nil || g <= 0 {
		t.Fatalf("socat ext → cluster: %v, %v", g, err)
	}
}
