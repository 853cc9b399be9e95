package gateway

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Per service and member metrics (issue 8, Build 4), read from the
// snapshot the event loop publishes every scanInterval.

var (
	descSvcMembers  = prometheus.NewDesc(ns+"service_members", "Members of a service that are up (receive new connections).", []string{"service", "policy"}, nil)
	descSvcNoMember = prometheus.NewDesc(ns+"service_no_member_total", "Connections refused (RST) because no member of the service was up.", []string{"service"}, nil)
	descSvcAssigned = prometheus.NewDesc(ns+"service_connections_assigned_total", "Connections the service's policy gave the member.", []string{"service", "member"}, nil)
	descSvcConns    = prometheus.NewDesc(ns+"service_connections", "Open connections of the service on the member.", []string{"service", "member"}, nil)
	descSvcOcc      = prometheus.NewDesc(ns+"service_occupancy_bytes", "Bytes on the member's rings of the service not consumed yet (last reading).", []string{"service", "member"}, nil)
	descSvcBacklog  = prometheus.NewDesc(ns+"service_backlog_bytes", "Smoothed ring occupancy (the queue policy's EWMA).", []string{"service", "member"}, nil)
	descSvcRate     = prometheus.NewDesc(ns+"service_drain_rate_bytes_per_second", "Measured consumption rate of the member while it held data (0: not measured).", []string{"service", "member"}, nil)
	descSvcUp       = prometheus.NewDesc(ns+"service_member_up", "1 if the member receives new connections, else 0 (left or removed).", []string{"service", "member", "state"}, nil)
	descSvcRemovals = prometheus.NewDesc(ns+"service_removals_total", "Times the member was removed for holding data without consuming any.", []string{"service", "member"}, nil)
	descSvcResets   = prometheus.NewDesc(ns+"service_resets_total", "Connections reset because their member was removed.", []string{"service", "member"}, nil)
	descSvcStops    = prometheus.NewDesc(ns+"service_stops_total", "Times the member was judged stopped: it held work and made no progress for several request times (it gets no new connection while another member works).", []string{"service", "member"}, nil)
	descSvcDrainU   = prometheus.NewDesc(ns+"service_request_bytes", "Learned bytes a member drains per request that waited in its ring (the queue policy's unit of work).", []string{"service"}, nil)
)

type serviceCollector struct{ g *Gateway }

func (c serviceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSvcMembers, descSvcNoMember, descSvcAssigned, descSvcConns, descSvcOcc,
		descSvcBacklog, descSvcRate, descSvcUp, descSvcRemovals, descSvcResets, descSvcStops, descSvcDrainU} {
		ch <- d
	}
}

func (c serviceCollector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, s := range c.g.serviceSnapshot() {
		svc := s.VIP.String()
		up := 0
		for _, m := range s.Members {
			mem := m.Addr.String()
			v := 0.0
			if m.State == "up" {
				up++
				v = 1
			}
			gauge(descSvcUp, v, svc, mem, m.State)
			counter(descSvcAssigned, m.Assigned, svc, mem)
			gauge(descSvcConns, float64(m.Conns), svc, mem)
			gauge(descSvcOcc, float64(m.Occupancy), svc, mem)
			gauge(descSvcBacklog, m.Backlog, svc, mem)
			gauge(descSvcRate, m.DrainRate, svc, mem)
			counter(descSvcRemovals, m.Removals, svc, mem)
			counter(descSvcResets, m.Resets, svc, mem)
			counter(descSvcStops, m.Stops, svc, mem)
		}
		gauge(descSvcDrainU, s.DrainBytes, svc)
		gauge(descSvcMembers, float64(up), svc, s.Policy)
		counter(descSvcNoMember, s.NoMember, svc)
	}
}
