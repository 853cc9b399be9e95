package interop

import (
	"net/netip"
	"testing"

	"github.com/ultcp/ultcp/internal/netns"
)

// Addresses of the topology (gateway-contract.md, "Topology").
var (
	GWAddr      = netip.MustParsePrefix("192.168.77.1/24") // gw's end of the ext veth
	ExtAddr     = netip.MustParsePrefix("192.168.77.2/24") // ext's end
	ClusterNet  = netip.MustParsePrefix("10.77.0.0/16")    // the fabric's subnet
	GatewayAddr = netip.MustParseAddr("10.77.0.1")         // the gateway's fabric address
	ServerAddr  = netip.MustParseAddr("10.77.0.2")         // the node (or Linux stand-in) serving
	ClientAddr  = netip.MustParseAddr("10.77.0.3")         // a node dialling out
)

// Interface names of the veth pairs.
const (
	GWDev      = "veth-ext" // in gw, towards ext
	ExtDev     = "veth-gw"  // in ext, towards gw
	GWClDev    = "veth-cl"  // in gw, towards the Linux stand-in cluster
	ClusterDev = "veth-gw"  // in the stand-in cluster, towards gw
)

// Topology is ext ↔ veth ↔ gw, with gw forwarding, ext routing the cluster
// subnet via gw, and optionally a Linux stand-in for the cluster: a third
// namespace holding ServerAddr and ClientAddr on a second veth from gw, so
// that a packet takes the path it would take through the gateway (ext's
// TCP, the veth, gw's forwarding) with Linux at both ends.
type Topology struct {
	Ext, GW *netns.NS
	Cluster *netns.NS // nil unless made with a Linux cluster
}

// NewTopology makes the namespaces for a test (skipping it when not root)
// and removes them, and everything in them, when the test ends.
func NewTopology(t testing.TB, linuxCluster bool) *Topology {
	t.Helper()
	tp := &Topology{Ext: netns.ForTest(t, "ext"), GW: netns.ForTest(t, "gw")}
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check(netns.Veth(netns.End{NS: tp.GW, Dev: GWDev, Addr: GWAddr}, netns.End{NS: tp.Ext, Dev: ExtDev, Addr: ExtAddr}))
	check(tp.GW.Sysctl("net.ipv4.ip_forward", "1"))
	check(tp.Ext.AddRoute(ClusterNet, GWAddr.Addr()))
	if linuxCluster {
		tp.Cluster = netns.ForTest(t, "cl")
		// gw holds the gateway's address on this veth, as the gateway's
		// TUN device would: 10.77.0.0/16 is on-link there.
		check(netns.Veth(netns.End{NS: tp.GW, Dev: GWClDev, Addr: netip.PrefixFrom(GatewayAddr, 16)},
			netns.End{NS: tp.Cluster, Dev: ClusterDev, Addr: netip.PrefixFrom(ServerAddr, 16)}))
		check(tp.Cluster.AddAddr(ClusterDev, netip.PrefixFrom(ClientAddr, 16)))
		check(tp.Cluster.AddRoute(netip.MustParsePrefix("0.0.0.0/0"), GatewayAddr))
	}
	return tp
}

// Wire turns the offloads of both ends of the ext veth on (Linux's
// default: TSO super-packets, partial checksums) or off (like a wire: MTU
// packets with complete checksums, which tshark can check and a loss rule
// drops one by one).
func (tp *Topology) Wire(t testing.TB, offloads bool) {
	t.Helper()
	if err := tp.GW.SetOffloads(GWDev, offloads); err != nil {
		t.Fatal(err)
	}
	if err := tp.Ext.SetOffloads(ExtDev, offloads); err != nil {
		t.Fatal(err)
	}
}

// Loss drops packets at random with probability p in each direction of the
// ext veth (kernel-made: an nftables rule on each end's ingress hook).
func (tp *Topology) Loss(t testing.TB, p float64) (toExt, toGW *netns.Loss) {
	t.Helper()
	var err error
	if toExt, err = tp.Ext.AddLoss(ExtDev, p, netns.NFTIngress); err != nil {
		t.Fatal(err)
	}
	if toGW, err = tp.GW.AddLoss(GWDev, p, netns.NFTIngress); err != nil {
		t.Fatal(err)
	}
	return toExt, toGW
}
