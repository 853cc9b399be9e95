package gateway

import "sync/atomic"

// Drop reasons: every packet or record the gateway does not forward is
// counted under exactly one of them.
type dropReason int

const (
	dropBadPacket   dropReason = iota // from the device: not a well-formed IPv4 packet
	dropBadChecksum                   // from the device: IPv4 header or TCP/ICMP checksum wrong
	dropFragment                      // an IPv4 fragment (the gateway does not reassemble)
	dropProtocol                      // neither TCP nor ICMP (nor custody, from a node)
	dropNotCluster                    // from the device: destination outside the cluster subnet
	dropSpoofed                       // from the device: source inside the cluster subnet
	dropTTL                           // TTL ran out
	dropNoFlow                        // a segment of no flow (answered with a RST when allowed)
	dropNoNode                        // SYN for a cluster address no live node holds
	dropTableFull                     // SYN while the conntrack is full
	dropRingFull                      // the node's ring had no room (TCP will resend)
	dropBadRecord                     // from a node: a record that breaks the rules
	dropWrongFlow                     // from a node: a record whose addresses or ports are not its flow's
	dropICMP                          // ICMP the gateway does not act on (no flow, unknown type, too long)
	dropDevice                        // the device refused a write
	dropImpair                        // the impairment stage dropped it (its loss or queue)
	dropCustody                       // a custody record the gateway refused (wrong direction)
	numDropReasons
)

var dropNames = [numDropReasons]string{
	"bad_packet", "bad_checksum", "fragment", "protocol", "not_cluster", "spoofed",
	"ttl", "no_flow", "no_node", "table_full", "ring_full", "bad_record", "wrong_flow",
	"icmp", "device", "impair", "custody",
}

func (r dropReason) String() string { return dropNames[r] }

// Flow end reasons.
type closeReason int

const (
	closeNodeClosed closeReason = iota // the node closed its fabric connection
	closeNodeError                     // the fabric connection failed (node died, broke the ring)
	closeReset                         // a RST from either side
	closeIdle                          // idle timeout
	closeReplaced                      // a new connection for the same 4-tuple
	closeBadRecord                     // the node sent a record that cannot belong to the flow
	closeShutdown                      // the gateway stops
	closeFinished                      // both FINs sent and acknowledged
	numCloseReasons
)

var closeNames = [numCloseReasons]string{"node_closed", "node_error", "reset", "idle", "replaced", "bad_record", "shutdown", "finished"}

func (r closeReason) String() string { return closeNames[r] }

// Stats are the gateway's counters. The event loop writes them; anyone may
// read them (atomics).
type Stats struct {
	// Packets and bytes each way: Out is node → outside (written to the
	// device, a GSO packet counted once), In is outside → node.
	OutPackets, OutBytes atomic.Uint64
	InPackets, InBytes   atomic.Uint64
	// OutGSO counts GSO writes; OutCoalesced the records merged into them.
	OutGSO, OutCoalesced atomic.Uint64
	// InGRO counts GRO super-packets delivered whole.
	InGRO atomic.Uint64
	// OutSoftCsum and OutOffloadCsum count how outbound TCP checksums
	// were made.
	OutSoftCsum, OutOffloadCsum atomic.Uint64
	Drops                       [numDropReasons]atomic.Uint64
	FlowsOpened                 atomic.Uint64
	FlowsClosed                 [numCloseReasons]atomic.Uint64
	Flows                       atomic.Int64
	ICMPEchoReplies             atomic.Uint64
	ICMPUnreachSent             atomic.Uint64
	ICMPErrorsRouted            atomic.Uint64
	RSTSent                     atomic.Uint64
	MSSClamped                  atomic.Uint64
	// Queued counts records for nodes that waited for ring room.
	Queued atomic.Uint64
	// LoopSleeps counts the event loop's sleeps in Node.Wait (each one
	// costs a futex wake-up to end).
	LoopSleeps atomic.Uint64
}

func (s *Stats) drop(r dropReason) { s.Drops[r].Add(1) }

// Drop returns the count of one drop reason by name (tests, the CLI).
func (s *Stats) Drop(name string) uint64 {
	for i, n := range dropNames {
		if n == name {
			return s.Drops[i].Load()
		}
	}
	return 0
}
