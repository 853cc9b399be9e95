// Package interop tests ultcp against Linux's own TCP, through the gateway
// (issue #7): Linux peers no one here wrote (curl, socat, iperf3) in a
// network namespace `ext`, the gateway process in a namespace `gw` joined
// to `ext` by a veth pair, and ultcp nodes (examples/httpd, `ultcp nc`) as
// ordinary processes on a fabric of their own under /dev/shm.
//
// It also holds the harness for that: the topology (Topology), the Linux
// baseline the gateway's throughput is measured against (Iperf3, SocatSend),
// the deterministic payload both ends can check (Pattern), and a Linux
// stand-in for the cluster (a third namespace routed through `gw`) that
// exercises every case without the gateway.
//
// It must never touch the root network namespace: the gateway's TUN device
// and every route to the cluster subnet 10.77.0.0/16 exist only inside
// namespaces the tests made (package internal/netns), which have no route
// out of the machine; traffic goes only between those namespaces and the
// fabric. Every run is bounded in time; tests skip when not root.
//
// Sizes: by default (CI) the transfers are small enough for the suite to
// finish in a few minutes; ULTCP_INTEROP_FULL=1 runs the sizes of issue #7
// (a 64 MiB curl download, 1 GiB each way through socat).
package interop
