package gateway

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prometheus metrics. The data path never calls into client_golang: it
// bumps its own atomics (Stats), and a Collector reads them at scrape
// time. What the event loop owns alone (the custodian's and the impairment
// stage's counters, the ring occupancy per node) is copied into a snapshot
// at each sweep (once a second).

// snapshot is what the sweep publishes for the collector.
type snapshot struct {
	mu      sync.Mutex
	custody CustodyStats
	impair  ImpairStats
}

func (g *Gateway) publish() {
	g.snap.mu.Lock()
	g.snap.custody = g.cust.Stats()
	if g.imp != nil {
		g.snap.impair = g.imp.Stats()
	}
	g.snap.mu.Unlock()
}

// CustodyStats returns the custodian's counters as of the last sweep.
func (g *Gateway) CustodyStats() CustodyStats {
	g.snap.mu.Lock()
	defer g.snap.mu.Unlock()
	return g.snap.custody
}

const ns = "ultcp_gateway_"

var (
	descPackets     = prometheus.NewDesc(ns+"packets_total", "Packets forwarded (out: node to outside, written to the device, a GSO packet once; in: outside to node).", []string{"dir"}, nil)
	descBytes       = prometheus.NewDesc(ns+"bytes_total", "IPv4 bytes forwarded, headers included.", []string{"dir"}, nil)
	descDrops       = prometheus.NewDesc(ns+"drops_total", "Packets and records not forwarded, by reason.", []string{"reason"}, nil)
	descFlows       = prometheus.NewDesc(ns+"connections", "TCP flows in the conntrack.", nil, nil)
	descOpened      = prometheus.NewDesc(ns+"connections_opened_total", "TCP flows opened.", nil, nil)
	descClosed      = prometheus.NewDesc(ns+"connections_closed_total", "TCP flows ended, by reason.", []string{"reason"}, nil)
	descGSO         = prometheus.NewDesc(ns+"gso_writes_total", "GSO packets written to the device.", nil, nil)
	descCoalesced   = prometheus.NewDesc(ns+"coalesced_segments_total", "Node segments merged into GSO writes.", nil, nil)
	descGRO         = prometheus.NewDesc(ns+"gro_packets_total", "GRO super-packets from the device delivered whole.", nil, nil)
	descCsum        = prometheus.NewDesc(ns+"tcp_checksums_total", "Outbound single-segment TCP checksums, by how they were made.", []string{"how"}, nil)
	descICMP        = prometheus.NewDesc(ns+"icmp_total", "ICMP the gateway answered or routed.", []string{"kind"}, nil)
	descRST         = prometheus.NewDesc(ns+"rst_sent_total", "RSTs the gateway sent for segments of no flow or dead nodes.", nil, nil)
	descClamped     = prometheus.NewDesc(ns+"mss_clamped_total", "SYNs whose MSS option was lowered.", nil, nil)
	descHeld        = prometheus.NewDesc(ns+"custody_held_bytes", "Bytes the gateway holds in custody.", nil, nil)
	descCustFlows   = prometheus.NewDesc(ns+"custody_connections", "Flows in custody.", nil, nil)
	descRetransmits = prometheus.NewDesc(ns+"retransmissions_total", "Segments the gateway retransmitted for nodes (custody).", nil, nil)
	descCustEvents  = prometheus.NewDesc(ns+"custody_events_total", "Custody messages and outcomes.", []string{"kind"}, nil)
	descOccupancy   = prometheus.NewDesc(ns+"ring_occupancy_bytes", "Bytes on the gateway's rings to a node that the node has not consumed.", []string{"node"}, nil)
	descImpair      = prometheus.NewDesc(ns+"impair_packets_total", "Packets through the impairment stage, by outcome.", []string{"outcome"}, nil)
	descImpairHeld  = prometheus.NewDesc(ns+"impair_held_packets", "Packets the impairment stage holds.", nil, nil)
	descQueued      = prometheus.NewDesc(ns+"queued_records_total", "Records for nodes that waited for room in the node's ring.", nil, nil)
	descSleeps      = prometheus.NewDesc(ns+"event_loop_sleeps_total", "Times the event loop slept (each ends with a futex wake-up).", nil, nil)
)

type collector struct{ g *Gateway }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPackets, descBytes, descDrops, descFlows, descOpened, descClosed,
		descGSO, descCoalesced, descGRO, descCsum, descICMP, descRST, descClamped, descHeld, descCustFlows,
		descRetransmits, descCustEvents, descOccupancy, descImpair, descImpairHeld, descQueued, descSleeps} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := &c.g.stats
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descPackets, s.OutPackets.Load(), "out")
	counter(descPackets, s.InPackets.Load(), "in")
	counter(descBytes, s.OutBytes.Load(), "out")
	counter(descBytes, s.InBytes.Load(), "in")
	for r := range numDropReasons {
		counter(descDrops, s.Drops[r].Load(), r.String())
	}
	gauge(descFlows, float64(s.Flows.Load()))
	counter(descOpened, s.FlowsOpened.Load())
	for r := range numCloseReasons {
		counter(descClosed, s.FlowsClosed[r].Load(), r.String())
	}
	counter(descGSO, s.OutGSO.Load())
	counter(descCoalesced, s.OutCoalesced.Load())
	counter(descGRO, s.InGRO.Load())
	counter(descCsum, s.OutSoftCsum.Load(), "soft")
	counter(descCsum, s.OutOffloadCsum.Load(), "offload")
	counter(descICMP, s.ICMPEchoReplies.Load(), "echo_reply")
	counter(descICMP, s.ICMPUnreachSent.Load(), "host_unreachable")
	counter(descICMP, s.ICMPErrorsRouted.Load(), "error_routed")
	counter(descRST, s.RSTSent.Load())
	counter(descClamped, s.MSSClamped.Load())
	counter(descQueued, s.Queued.Load())
	counter(descSleeps, s.LoopSleeps.Load())
	cs := c.g.CustodyStats()
	gauge(descHeld, float64(cs.HeldBytes))
	gauge(descCustFlows, float64(cs.Flows))
	counter(descRetransmits, cs.Retransmits)
	counter(descCustEvents, cs.LossReports, "loss_report")
	counter(descCustEvents, cs.Revokes, "revoke")
	counter(descCustEvents, cs.Failures, "failure")
	for node, n := range c.g.RingOccupancy() {
		gauge(descOccupancy, float64(n), node.String())
	}
	c.g.snap.mu.Lock()
	is := c.g.snap.impair
	c.g.snap.mu.Unlock()
	if c.g.imp != nil {
		counter(descImpair, is.Passed, "passed")
		counter(descImpair, is.Lost, "lost")
		counter(descImpair, is.Full, "full")
		counter(descImpair, is.Duplicated, "duplicated")
		counter(descImpair, is.Reordered, "reordered")
		gauge(descImpairHeld, float64(is.Held))
	}
}

// Registry returns a Prometheus registry holding the gateway's metrics
// (and the Go runtime's), for a caller that serves them itself.
func (g *Gateway) Registry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collector{g}, serviceCollector{g}, prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return r
}

// ServeMetrics listens on addr and serves /metrics until the gateway
// stops. It returns the address it listens on (addr may have port 0), or
// a clear error if it cannot listen.
func (g *Gateway) ServeMetrics(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("gateway: metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g.Registry(), promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			g.log.Warn("gateway: metrics server stopped", "err", err)
		}
	}()
	go func() {
		<-g.closed
		srv.Close()
	}()
	return ln.Addr(), nil
}
