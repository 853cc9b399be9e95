package interop

import (
	"os/exec"
	"testing"
)

// pmtuMTU is the MTU of gw's end of the veth in TestPathMTUDiscovery:
// below the 1500 bytes both ends assume, so only ICMP "fragmentation
// needed" from gw's kernel can tell the sender.
const pmtuMTU = 1280

// TestPathMTUDiscovery: the link from gw towards ext carries at most 1280
// bytes while both ends believe in 1500 (their MSS options say 1460). The
// cluster's 1500-byte segments (DF) reach gw's kernel, which answers ICMP
// fragmentation needed (RFC 1191) towards the sender: for ultcp that ICMP
// goes into the TUN device, and the gateway must put it on the right
// flow's connection so that the node lowers its MSS (issue #7 §2). gw's
// kernel sends that ICMP from the TUN device's address, the gateway's own
// (the packet came in through it), as the first router of a deployment
// would. curl in ext downloads from the cluster; without working PMTU
// discovery the download stalls. Only cluster → ext carries large packets: ext's own
// 1500-byte packets would be dropped by the veth without an ICMP.
func TestPathMTUDiscovery(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipping: curl is not installed")
	}
	sz := suiteSizes(t)
	for _, kind := range []string{"linux", "ultcp"} {
		t.Run(kind, func(t *testing.T) {
			tp := NewTopology(t, kind == "linux")
			if err := tp.GW.SetMTU(GWDev, pmtuMTU); err != nil {
				t.Fatal(err)
			}
			var cl cluster
			if kind == "linux" {
				cl = linuxCluster{tp}
			} else {
				cl = newUltcpCluster(t, tp, "")
			}
			cl.startHTTP(t)
			curlDownload(t, tp, sz.curl, sz.run)
			if u, ok := cl.(*ultcpCluster); ok {
				m := u.metrics()
				t.Logf("gateway: %s", grepMetrics(m, "icmp"))
				if metricValue(m, `ultcp_gateway_icmp_total{kind="error_routed"}`) == "0" {
					t.Errorf("the gateway routed no ICMP error to the flow: the MTU was not discovered that way")
				}
			}
		})
	}
}
