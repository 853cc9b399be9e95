// Package gateway joins a fabric (the emulated CLAN cluster) to Linux's own
// network through a packet device (a TUN device with virtio-net headers,
// link/tun). It is the gateway of the seed: every packet between a node and
// an outside host passes through it.
//
// What it does, per direction:
//
//   - Node → outside: every TCP flow of a node with an outside host is one
//     fabric connection between the node and the gateway (the node dials
//     it). The gateway reads the records (each one IPv4 packet, checksums
//     zero inside the fabric, possibly a DMA record or a BIG TCP record
//     longer than 64 KiB), clamps the MSS of SYNs, fills the IPv4 header
//     checksum, and writes the packet to the device. The TCP checksum is
//     either left to the kernel (virtio-net NEEDS_CSUM: the default, see
//     checksum.go for the measurement) or computed while copying.
//     Consecutive in-order segments of one flow are coalesced into one GSO
//     super-packet, and a record larger than the outside MSS goes out as
//     GSO (the kernel cuts it), so large segments cross the device whole.
//   - Outside → node: a SYN for a cluster address opens a fabric connection
//     to that node (the conntrack maps the 4-tuple to it); every later
//     packet of the flow goes on that connection, GRO super-packets whole.
//     Checksums are verified unless the kernel vouched for them.
//   - ICMP: echo requests for live nodes are answered here; errors from
//     outside go onto the connection of the flow their quoted header names;
//     a SYN for a cluster address no live node holds gets ICMP host
//     unreachable; a segment of no flow gets a RST (RFC 9293 §3.10.7.1).
//
// Threading: one goroutine reads the device and hands packets to one event
// loop (a bounded pool of buffers, no allocation per packet); the event loop
// owns everything else — the conntrack, every fabric connection (it is the
// only sender and receiver on each), device writes, the custodian and the
// impairment stage — polls briefly (Config.SpinBudget) and then sleeps in
// fabric.Node.Wait when nothing is due. There is no goroutine per flow;
// only first contact with a node (a handshake over its socket) runs in a
// short-lived goroutine so that a node that does not answer cannot stall
// the loop.
//
// Flow lifetime: a flow ends when its node closes the fabric connection,
// when the connection fails (the node died: the outside host gets a RST),
// when the node resets it, as soon as both FINs are acknowledged, or after
// an idle timeout; the conntrack is bounded (Config.MaxFlows). Packets for
// a node whose ring is full wait in a bounded per-flow queue, in order.
// Every packet or record not forwarded is counted by reason (stats.go) and
// exported with the rest as Prometheus metrics (metrics.go).
//
// The package must never trust what it reads from shared memory or the
// device: a bad record or packet is dropped and counted by reason, and the
// flow concerned is reset if it cannot continue, never a panic or a hang.
// It must never create a device or a route itself (cmd/ultcp does, in the
// network namespace it was started in) and never block its event loop on one
// flow.
package gateway
