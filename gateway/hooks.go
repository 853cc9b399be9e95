package gateway

import (
	"errors"
	"log/slog"
	"time"

	"github.com/ultcp/ultcp/internal/wire"
	"github.com/ultcp/ultcp/link/tun"
)

// The seams to gateway-assisted retransmission (custody*.go) and to the
// impairment stage (impair*.go), which other files of this package
// implement. Every method is called from the event loop only, so
// implementations need no locks; now is the gateway's monotonic clock (the
// time since New, the convention of internal/tcp).

// custodian is gateway-assisted retransmission (issue #7 §4): it keeps
// copies of what nodes send, resends what the outside lost and tells the
// node. See gateway-contract.md for the protocol.
type custodian interface {
	// FlowOpened: f exists and its fabric connection is open (right after
	// its SYN, in either direction, was forwarded).
	FlowOpened(f *Flow, now time.Duration)
	// Outbound: a TCP segment the node sent on f, just before it leaves
	// towards the device (after MSS clamping, before impairment): hdr is
	// its IPv4 and TCP headers (checksums not filled), payload its TCP
	// payload, possibly a view into the ring; both are valid only during
	// the call. A packet is at most 65535 bytes: a longer record is cut as
	// TSO would, one call per piece (own seq, FIN and PSH on the last).
	Outbound(f *Flow, now time.Duration, hdr, payload []byte)
	// Inbound: a TCP segment from outside for f (checksums verified or
	// vouched for by the kernel), before it goes on f's ring; possibly a
	// GRO super-segment. Valid only during the call.
	Inbound(f *Flow, now time.Duration, pkt []byte)
	// Control: a custody record (IPv4 protocol 253) the node sent on f,
	// whole and unparsed; the gateway checked only that it travels from
	// f's node to the gateway.
	Control(f *Flow, now time.Duration, pkt []byte)
	// FlowClosed: f is gone (close, RST, idle timeout, node death). Nothing
	// may be sent for f afterwards.
	FlowClosed(f *Flow)
	// Next is the earliest deadline of timed work, 0 for none. The event
	// loop asks after every call and calls Tick once now >= Next().
	Next() time.Duration
	Tick(now time.Duration)
	// Stats feeds the metrics.
	Stats() CustodyStats
}

// CustodyStats are the custodian's counters.
type CustodyStats struct {
	HeldBytes                                   int64
	Retransmits, LossReports, Revokes, Failures uint64
	Flows                                       int
}

// custodyIO is how the custodian acts.
type custodyIO interface {
	// ToOutside sends a TCP segment for f to the outside (a
	// retransmission): pkt is a whole IPv4 packet whose checksums may be
	// zero (the gateway fills them in its own copy). It passes through
	// the impairment stage like any packet.
	ToOutside(f *Flow, pkt []byte) error
	// ToNode puts a record (a custody message, src the gateway, dst
	// f.Key.Node) on f's fabric connection, after the records queued for
	// the node if its ring is full (the queue is bounded; see flow.go); it
	// fails only when that queue is full or f is closed.
	ToNode(f *Flow, rec []byte) error
}

// CustodyConfig is what newCustodian gets.
type CustodyConfig struct {
	Limit   int64         // bytes the gateway may hold (Config.Custody, > 0)
	Gateway wire.IPv4Addr // the gateway's own address, source of its custody records
	IO      custodyIO
	Logger  *slog.Logger
}

// newCustodian builds the custodian when Config.Custody > 0; custody*.go
// sets it in an init function.
var newCustodian func(CustodyConfig) (custodian, error)

// noCustody is the custodian when custody is off: every hook does nothing.
type noCustody struct{}

func (noCustody) FlowOpened(*Flow, time.Duration)               {}
func (noCustody) Outbound(*Flow, time.Duration, []byte, []byte) {}
func (noCustody) Inbound(*Flow, time.Duration, []byte)          {}
func (noCustody) Control(*Flow, time.Duration, []byte)          {}
func (noCustody) FlowClosed(*Flow)                              {}
func (noCustody) Next() time.Duration                           { return 0 }
func (noCustody) Tick(time.Duration)                            {}
func (noCustody) Stats() CustodyStats                           { return CustodyStats{} }

// impairer delays, reorders, duplicates and drops packets on their way out
// to the device (the kernel here has no netem): issue #7 §6.
type impairer interface {
	// Push offers a packet due for the device now; the stage copies what
	// it keeps (p's slices are valid only during the call). false: it
	// dropped the packet (loss, or full).
	Push(now time.Duration, p tun.Packet) bool
	// Pop returns the next packet due at or before now, valid until the
	// next Push or Pop, or false.
	Pop(now time.Duration) (tun.Packet, bool)
	// Next is the earliest due time of a packet held, 0 when empty.
	Next() time.Duration
	Stats() ImpairStats
}

// ImpairStats are the impairment stage's counters.
type ImpairStats struct {
	Held                                      int
	Passed, Lost, Full, Duplicated, Reordered uint64
}

// newImpairer parses an impairment spec (Config.Impair) into a stage;
// impair*.go sets it in an init function.
var newImpairer func(spec string) (impairer, error)

var (
	errNoCustody = errors.New("gateway: custody requested but this build has no custodian (gateway/custody.go)")
	errNoImpair  = errors.New("gateway: impairment requested but this build has no impairment stage (gateway/impair.go)")
)
