package gateway

import (
	"fmt"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/internal/wire"
)

// FlowKey is a flow's 4-tuple, cluster side first. It is comparable, a map
// key.
type FlowKey struct {
	Node       wire.IPv4Addr
	NodePort   uint16
	Remote     wire.IPv4Addr
	RemotePort uint16
}

func (k FlowKey) String() string {
	return fmt.Sprintf("%v:%d-%v:%d", k.Node, k.NodePort, k.Remote, k.RemotePort)
}

// Flow is one tracked TCP connection between a node and an outside host:
// one fabric connection between the node and the gateway. It belongs to the
// event loop.
type Flow struct {
	// Key is the flow's 4-tuple; zero until the first record of a
	// connection a node opened (its SYN) names it.
	Key FlowKey
	// Custody is the custodian's per-flow state; the gateway never reads
	// it.
	Custody any

	conn     *fabric.Conn
	keyed    bool // Key is set and the flow is in the table's byKey
	fromNode bool // the node opened it (node → outside)
	closed   bool
	again    bool // on the event loop's list of connections with records left
	hot      bool // on the event loop's list of connections polled before sleeping

	// TCP state the gateway follows (it is not a TCP endpoint: it only
	// needs to know when a flow is over).
	synNode, synRemote bool
	finNode, finRemote bool
	// finNodeEnd and finRemoteEnd are the acknowledgment numbers that
	// cover each side's FIN; finNodeAcked and finRemoteAcked say the other
	// side sent them. reset: a RST from outside went to the node.
	finNodeEnd, finRemoteEnd     uint32
	finNodeAcked, finRemoteAcked bool
	reset                        bool
	lastSeen                     time.Duration

	// mssOut is the MSS the outside host announced (RFC 9293 §3.7.1),
	// clamped to the device's MTU: the segment size of GSO writes.
	mssOut uint16
	// nodeNxt is one past the highest sequence number the node sent: the
	// sequence number of a RST sent for it if its node dies.
	nodeNxt uint32
	// remoteNxt is one past the highest sequence number the outside host
	// sent (what the node acknowledges, if nothing was lost).
	remoteNxt uint32

	// queue holds records for the node (packets from outside, custody
	// messages) that found its ring full, in order; queued is their
	// bytes. They go before anything else for the node.
	queue  [][]byte
	queued int
}

// Bounds of the queues towards nodes. A ring is the node's receive
// buffer, but the node's advertised window is not tied to the ring the
// gateway opened, and GRO packets arrive in 64 KiB lumps: a short queue
// absorbs the difference instead of dropping (which costs the outside
// sender a loss recovery). Beyond the bounds packets are dropped
// (ring_full); custody messages get maxQueuedCtl extra entries.
const (
	maxQueuedPerFlow = 4 << 20
	maxQueuedTotal   = 256 << 20
	maxQueuedCtl     = 16
)

// done reports whether both sides have finished or one reset.
func (f *Flow) done() bool { return f.finNode && f.finRemote }

// finished reports whether both FINs were sent and acknowledged (RFC 9293
// §3.6): TCP is over on both sides but for TIME-WAIT, which the node
// keeps by itself. The gateway, which dialled the node for a flow from
// outside, then closes its fabric connection at once, as a node does for
// the flows it dials: the ring pair goes back to the slab instead of
// lingering (10,000 short connections would otherwise fill the slab).
func (f *Flow) finished() bool { return f.finNodeAcked && f.finRemoteAcked }

// table is the conntrack: flows by 4-tuple and by fabric connection.
type table struct {
	byKey  map[FlowKey]*Flow
	byConn map[*fabric.Conn]*Flow
	max    int
}

func newTable(max int) *table {
	return &table{byKey: map[FlowKey]*Flow{}, byConn: map[*fabric.Conn]*Flow{}, max: max}
}

func (t *table) full() bool { return len(t.byConn) >= t.max }

func (t *table) add(f *Flow) {
	t.byConn[f.conn] = f
	if f.keyed {
		t.byKey[f.Key] = f
	}
}

func (t *table) setKey(f *Flow, k FlowKey) {
	f.Key, f.keyed = k, true
	t.byKey[k] = f
}

func (t *table) remove(f *Flow) {
	if t.byConn[f.conn] == f {
		delete(t.byConn, f.conn)
	}
	if f.keyed && t.byKey[f.Key] == f {
		delete(t.byKey, f.Key)
	}
}
