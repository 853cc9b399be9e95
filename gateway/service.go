package gateway

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/gateway/lb"
	"github.com/ultcp/ultcp/internal/wire"
)

// Load-balanced services (issue 8).
//
// A service is a virtual address and port (VIP) of the cluster subnet
// that no node holds. Nodes join its pool by listening on it (the root
// package's service.go), which writes a membership entry in the fabric
// directory (fabric.Node.JoinService); the entry counts while the node
// lives. The gateway reads the directory every scanInterval in a goroutine
// of its own (file reads and kill(pid, 0) never run in the event loop) and
// hands the reading to the event loop, which owns everything else here:
// one lb.Service per VIP, its members, their loads, and the flows each
// member was given. So the scheduler needs no lock, as gateway/lb asks.
//
// Data path: a SYN from outside for a VIP:port with a pool asks the
// service's policy for a member (serviceTarget) and opens its flow to that
// member exactly as it would to a node the SYN named; every later packet
// of the flow finds it by its 4-tuple in the conntrack (the VIP's), so it
// stays on that member. Nothing is translated: the member's stack accepts
// the VIP as its local address on connections from the gateway and
// answers from it, and the fabric connection is the tunnel (Maglev
// encapsulates to the backend for the same reason: the gateway's
// per-packet work stays what it is, and a RST the gateway sends for a dead
// member, or an ICMP error quoting the VIP, needs no translation either).
//
// Load: each member's load is an lb.RingLoad over the rings of the flows
// the gateway opened to it: the gateway is their producer, so it reads the
// head it wrote and the tail the member published (fabric.Conn's
// RingOccupancy and RingConsumed) with two atomic loads per ring and
// reading. The scheduler takes a reading every lb.Config.Interval (1 ms):
// while a service has members, the event loop wakes that often.
//
// Leaving and failing:
//   - A member that closes its listener, or dies, is gone from the next
//     directory reading (within scanInterval) and Leaves: no new flow goes
//     to it. A dead member's flows end as any flow of a dead node does (its
//     fabric connections fail, the outside peer gets a RST); those of a
//     member that only closed its listener go on.
//   - A member that holds data and consumes none for lb's StallTimeout
//     (250 ms) is removed by the scheduler's Tick: every flow the gateway
//     gave it is reset (RST to the outside peer, its fabric connection
//     closed), and no new flow goes to it. While its entry stays in the
//     directory it is readmitted after rejoinAfter: a member that is paused
//     for good is removed again 250 ms after its first new flow, one that
//     recovered serves again.
//   - A chosen member the gateway cannot reach (nodeLive says no) Leaves at
//     once and the SYN picks again.
//
// Policy: per service, set by `ultcp gateway --service VIP:PORT=POLICY`
// (which calls SetServicePolicy), default queue. The pool does not
// choose how it is balanced: a member asking for a policy could override
// the operator's choice for everyone.

const (
	// scanInterval is how often the membership directory is read.
	scanInterval = 100 * time.Millisecond
	// rejoinAfter is how long a member removed for stalling stays out
	// before it is readmitted (if still registered).
	rejoinAfter = time.Second
	// DefaultServicePolicy is the policy of a service no one chose one for.
	DefaultServicePolicy = lb.Queue
)

// ParseServices parses --service values, "VIP:PORT=POLICY" or "VIP:PORT"
// (the default policy), into a map for Config.Services.
func ParseServices(specs []string) (map[netip.AddrPort]lb.Policy, error) {
	m := map[netip.AddrPort]lb.Policy{}
	for _, s := range specs {
		addr, pol, hasPol := strings.Cut(s, "=")
		ap, err := netip.ParseAddrPort(addr)
		if err != nil || !ap.Addr().Is4() || ap.Port() == 0 {
			return nil, fmt.Errorf("gateway: --service %q: want IPV4:PORT[=POLICY]", s)
		}
		p := DefaultServicePolicy
		if hasPol {
			if p, err = lb.ParsePolicy(pol); err != nil {
				return nil, fmt.Errorf("gateway: --service %q: %w", s, err)
			}
		}
		m[ap] = p
	}
	return m, nil
}

type svcKey struct {
	vip  wire.IPv4Addr
	port uint16
}

// services is the gateway's service state (Gateway.svc).
type services struct {
	// Guarded by mu: policies (set from any goroutine) and the metrics
	// snapshot.
	mu        sync.Mutex
	policies  map[netip.AddrPort]lb.Policy
	policyGen uint64
	snap      []serviceSnapshot

	// The scanner's last reading, for the event loop.
	latest atomic.Pointer[[]fabric.ServiceEntry]

	// Event loop only.
	started    bool
	byKey      map[svcKey]*service
	flows      map[*Flow]*member
	applied    *[]fabric.ServiceEntry
	appliedGen uint64
	pending    *member // chosen by serviceTarget for the flow being opened
	removed    []*member
	publishAt  time.Duration
}

type service struct {
	vip     netip.AddrPort
	lb      *lb.Service
	policy  lb.Policy
	members map[netip.Addr]*member
	next    time.Duration
	// Counted here (lb counts picks of its own service value, which a
	// policy change replaces).
	noMember uint64
}

// busy reports whether any member of sv has a flow.
func (sv *service) busy() bool {
	for _, m := range sv.members {
		if len(m.flows) > 0 {
			return true
		}
	}
	return false
}

type member struct {
	svc       *service
	addr      netip.Addr
	a4        wire.IPv4Addr
	load      lb.RingLoad
	lbm       *lb.Member
	flows     map[*Flow]*flowRing
	listed    bool
	removedAt time.Duration
	// Counters for the metrics (the lb.Member's are lost when a policy
	// change rebuilds the service).
	assigned, removals, resets uint64
}

// SetServicePolicy sets the policy of vip (safe from any goroutine, before
// or during Run). A change rebuilds the service's scheduler: its members
// keep their open connections, the new policy starts with no readings.
func (g *Gateway) SetServicePolicy(vip netip.AddrPort, p lb.Policy) error {
	if !vip.Addr().Is4() || vip.Port() == 0 || !g.subnet.Contains(vip.Addr()) {
		return fmt.Errorf("gateway: service %v is not an address of %v with a port", vip, g.subnet)
	}
	if _, err := lb.ParsePolicy(p.String()); err != nil {
		return err
	}
	s := &g.svc
	s.mu.Lock()
	if s.policies == nil {
		s.policies = map[netip.AddrPort]lb.Policy{}
	}
	s.policies[vip] = p
	s.policyGen++
	s.mu.Unlock()
	g.node.Wake()
	return nil
}

func (s *services) policyOf(vip netip.AddrPort) lb.Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.policies[vip]; ok {
		return p
	}
	return DefaultServicePolicy
}

// scan reads the membership directory every scanInterval until the
// gateway closes, and wakes the event loop when the reading changed.
func (g *Gateway) scan() {
	t := time.NewTicker(scanInterval)
	defer t.Stop()
	var last []fabric.ServiceEntry
	for {
		ents, err := g.fab.ServiceMembers()
		if err != nil {
			g.log.Warn("gateway: reading the service members", "err", err)
		} else if !slices.Equal(ents, last) {
			last = ents
			g.svc.latest.Store(&ents)
			g.node.Wake()
		}
		select {
		case <-t.C:
		case <-g.closed:
			return
		}
	}
}

// serviceTimers is the event loop's service work, from timers: apply a
// new directory reading or policy, take the schedulers' readings that are
// due, reset the flows of members removed for stalling. It returns the
// next time it wants to run (0: only when woken).
func (g *Gateway) serviceTimers(now time.Duration) time.Duration {
	s := &g.svc
	if !s.started {
		s.started = true
		s.byKey = map[svcKey]*service{}
		s.flows = map[*Flow]*member{}
		go g.scan()
	}
	s.mu.Lock()
	gen := s.policyGen
	s.mu.Unlock()
	if r := s.latest.Load(); r != s.applied || gen != s.appliedGen {
		s.applied, s.appliedGen = r, gen
		var ents []fabric.ServiceEntry
		if r != nil {
			ents = *r
		}
		g.applyMembers(now, ents)
	}
	var next time.Duration
	for _, sv := range s.byKey {
		for _, m := range sv.members {
			if m.lbm != nil && m.lbm.State() == lb.Removed && m.listed && now-m.removedAt >= rejoinAfter {
				g.join(sv, m)
			}
		}
		if !sv.busy() {
			// No flow on any member: nothing to read, no one to
			// judge, so no wake-up every Interval for an idle
			// service. The first reading after the pause is late,
			// which lb takes as a gap (no stall judged).
			continue
		}
		if now >= sv.next {
			sv.next = sv.lb.Tick(now)
		}
		if next == 0 || sv.next < next {
			next = sv.next
		}
	}
	for _, m := range s.removed {
		m.removals++
		m.removedAt = now
		g.log.Warn("gateway: service member removed: it holds data and consumes none", "service", m.svc.vip, "member", m.addr, "flows", len(m.flows))
		for f := range m.flows {
			m.resets++
			g.resetOutside(now, f)
			g.closeFlow(f, closeNodeError)
		}
	}
	clear(s.removed)
	s.removed = s.removed[:0]
	if now >= s.publishAt {
		g.publishServices()
		s.publishAt = now + scanInterval
	}
	if next != 0 && s.publishAt < next {
		next = s.publishAt
	}
	return next
}

// applyMembers brings the services in line with a directory reading and
// the policies.
func (g *Gateway) applyMembers(now time.Duration, ents []fabric.ServiceEntry) {
	s := &g.svc
	listed := map[*member]bool{}
	for _, e := range ents {
		sv := g.serviceFor(e.Service)
		if sv == nil {
			continue
		}
		m := sv.members[e.Member]
		if m == nil {
			m = &member{svc: sv, addr: e.Member, a4: e.Member.As4(), flows: map[*Flow]*flowRing{}}
			sv.members[e.Member] = m
		}
		listed[m] = true
	}
	for _, sv := range s.byKey {
		if p := s.policyOf(sv.vip); p != sv.policy {
			g.rebuild(sv, p)
		}
		for _, m := range sv.members {
			m.listed = listed[m]
			switch {
			case m.listed && (m.lbm == nil || m.lbm.State() == lb.Left):
				g.join(sv, m)
			case !m.listed && m.lbm != nil && m.lbm.State() == lb.Up:
				sv.lb.Leave(m.addr)
				g.log.Info("gateway: service member left", "service", sv.vip, "member", m.addr)
			}
			// A member that left is kept (as lb keeps it, up to
			// lb.MaxMembers): its counters stay in the metrics.
		}
	}
}

// serviceFor returns the service of vip, making it if it is new; nil if
// vip cannot be a service here.
func (g *Gateway) serviceFor(vip netip.AddrPort) *service {
	s := &g.svc
	if !vip.Addr().Is4() || !g.subnet.Contains(vip.Addr()) || vip.Addr() == g.cfg.Addr {
		return nil
	}
	k := svcKey{vip.Addr().As4(), vip.Port()}
	if sv := s.byKey[k]; sv != nil {
		return sv
	}
	sv := &service{vip: vip, members: map[netip.Addr]*member{}}
	if !g.rebuild(sv, s.policyOf(vip)) {
		return nil
	}
	s.byKey[k] = sv
	g.log.Info("gateway: service", "service", vip, "policy", sv.policy.String())
	return sv
}

// rebuild gives sv a new scheduler with policy p and joins its members
// that are up (or were removed) again.
func (g *Gateway) rebuild(sv *service, p lb.Policy) bool {
	ls, err := lb.NewService(sv.vip, lb.Config{Policy: p, Seed: uint64(time.Now().UnixNano()),
		OnRemove: func(m *lb.Member) {
			if mm := sv.members[m.Addr()]; mm != nil {
				g.svc.removed = append(g.svc.removed, mm)
			}
		}})
	if err != nil {
		g.log.Error("gateway: service scheduler", "service", sv.vip, "err", err)
		return false
	}
	sv.lb, sv.policy, sv.next = ls, p, 0
	for _, m := range sv.members {
		up := m.lbm != nil && m.lbm.State() == lb.Up
		m.lbm = nil
		if up {
			g.join(sv, m)
		}
	}
	return true
}

func (g *Gateway) join(sv *service, m *member) {
	lbm, err := sv.lb.Join(m.addr, 1, &m.load)
	if err != nil {
		g.log.Warn("gateway: service member cannot join", "service", sv.vip, "member", m.addr, "err", err)
		return
	}
	m.lbm = lbm
	g.log.Info("gateway: service member joined", "service", sv.vip, "member", m.addr)
}

// serviceTarget is called for a SYN from outside that opens a flow: it
// returns the node to open it to. For an address that is no service, that
// is the SYN's destination; for a service, the member its policy picks
// (false: no member is up, the SYN was answered with a RST, as a closed
// port would). key is the flow's 4-tuple; b the packet, ihl and thl its
// header lengths.
func (g *Gateway) serviceTarget(now time.Duration, key FlowKey, b []byte, ihl, thl int) (wire.IPv4Addr, bool) {
	s := &g.svc
	s.pending = nil
	sv := s.byKey[svcKey{key.Node, key.NodePort}]
	if sv == nil {
		return key.Node, true
	}
	// A SYN replayed after a first contact with its member (inbound.go)
	// goes to that member: it was picked (and counted) when it came.
	if c := g.preDialed; c != nil {
		if m := sv.members[c.RemoteAddr()]; m != nil && m.lbm != nil && m.lbm.State() == lb.Up {
			s.pending = m
			return m.a4, true
		}
	}
	// A member that answered a moment ago is free now, not at the next
	// reading: the flow stopped counting when its FIN went through
	// (serviceNodeFinished).
	h := lb.FlowHash(0, netip.AddrPortFrom(key.Remote.Netip(), key.RemotePort), sv.vip)
	for range len(sv.members) + 1 {
		lm, err := sv.lb.Pick(h)
		if err != nil {
			break
		}
		m := sv.members[lm.Addr()]
		if m == nil {
			break
		}
		if !g.nodeLive(now, m.a4) {
			// Dead or gone since the last directory reading.
			sv.lb.Leave(m.addr)
			continue
		}
		m.assigned++
		s.pending = m
		return m.a4, true
	}
	sv.noMember++
	g.stats.drop(dropNoNode)
	g.refuse(now, b, ihl, thl)
	return wire.IPv4Addr{}, false
}

// serviceFlowOpened counts the flow f just opened towards the member
// serviceTarget chose (nothing for a flow that is not a service's).
func (g *Gateway) serviceFlowOpened(f *Flow) {
	s := &g.svc
	m := s.pending
	s.pending = nil
	if m == nil || f.Key.Node != m.svc.vip.Addr().As4() || f.Key.NodePort != m.svc.vip.Port() || f.conn.RemoteAddr() != m.addr {
		return
	}
	r := &flowRing{c: f.conn, f: f}
	m.load.Add(r)
	m.flows[f] = r
	s.flows[f] = m
}

// flowRing is what a member's RingLoad reads of one flow's ring. Once
// the member has sent its FIN (it answered and closed: no work of that
// flow is left at the member), or the flow ended, everything the gateway
// put on the ring counts as consumed and nothing as waiting: what
// arrives after the member's FIN (the outside's last ACK and FIN) waits
// for the member's stack to get round to it (Config.Grace), which says
// nothing about how busy its application is, and a member that
// publishes its consumer position in batches may never publish the last
// of it. A request served must not look like data it never took.
type flowRing struct {
	c    *fabric.Conn
	f    *Flow
	done bool // the flow ended (serviceFlowClosed)
	// retired: the member's FIN went out and the ring no longer counts
	// among the member's connections (serviceNodeFinished).
	retired bool
}

func (r *flowRing) finished() bool { return r.done || r.f != nil && r.f.finNode }

func (r *flowRing) RingOccupancy() int {
	if r.finished() {
		return 0
	}
	return r.c.RingOccupancy()
}

func (r *flowRing) RingConsumed() uint64 {
	if r.finished() {
		return r.c.RingProduced()
	}
	return r.c.RingConsumed()
}

// serviceNodeFinished stops counting flow f among its member's
// connections once the member has sent its FIN (outbound.go calls it as
// the FIN goes through): the member answered and closed it, so it is no
// longer work there (IPVS counts such connections as inactive, at 1/256
// of an active one). The gateway keeps forwarding the flow until it
// ends; only the scheduler's view (Conns, the ring sums) lets go.
// Without this a member's count includes every flow that is closing,
// and with a node's Grace of 100 ms those outnumber the ones in service
// several times over. At the FIN, not at the next reading or the next
// SYN: a client's next SYN can come a fraction of a millisecond after
// the answer, and must find the member free; and O(1), where scanning
// the service's flows at every SYN was O(flows).
func (g *Gateway) serviceNodeFinished(f *Flow) {
	m := g.svc.flows[f]
	if m == nil {
		return
	}
	if r := m.flows[f]; r != nil && !r.retired {
		r.retired = true
		m.load.Remove(r)
	}
}

// serviceFlowClosed forgets f (closeFlow calls it before it closes f's
// connection, so that what the member consumed from its ring is counted).
func (g *Gateway) serviceFlowClosed(f *Flow) {
	s := &g.svc
	m := s.flows[f]
	if m == nil {
		return
	}
	r := m.flows[f]
	delete(s.flows, f)
	delete(m.flows, f)
	r.done = true
	if !r.retired {
		m.load.Remove(r)
	}
	if f.conn.Err() != nil {
		// The member's fabric connection failed (it died, or broke its
		// ring): the next pick asks the fabric whether it lives instead
		// of trusting the answer cached for a second (nodeLive), so no
		// SYN goes to a dead member in the meantime.
		delete(g.live, m.a4)
	}
}

// serviceSnapshot is one service as the metrics and Services show it.
type serviceSnapshot struct {
	VIP      netip.AddrPort
	Policy   string
	NoMember uint64
	// DrainBytes: the scheduler's learned bytes per request drained.
	DrainBytes float64
	Members    []ServiceMember
}

// publishServices copies the services' state for the metrics collector.
func (g *Gateway) publishServices() {
	s := &g.svc
	var snap []serviceSnapshot
	for _, sv := range s.byKey {
		ss := serviceSnapshot{VIP: sv.vip, Policy: sv.policy.String(), NoMember: sv.noMember, DrainBytes: sv.lb.Metrics().DrainBytes}
		for _, m := range sv.members {
			ms := ServiceMember{Addr: m.addr, State: "left", Conns: m.load.Conns(), Assigned: m.assigned, Removals: m.removals, Resets: m.resets}
			if m.lbm != nil {
				mm := m.lbm.Metrics()
				ms.State, ms.Occupancy, ms.Backlog, ms.DrainRate, ms.Stops = mm.State.String(), mm.Occupancy, mm.Backlog, mm.DrainRate, mm.Stops
			}
			ss.Members = append(ss.Members, ms)
		}
		snap = append(snap, ss)
	}
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
}

// ServiceMember is one member of a service as Services reports it.
type ServiceMember struct {
	Addr netip.Addr
	// State: "up", "left" or "removed" (lb.State).
	State string
	// Conns: open flows the gateway gave it; Assigned: flows given in
	// all; Removals: times removed for stalling; Resets: flows reset by
	// those removals.
	Conns                      int
	Assigned, Removals, Resets uint64
	// Occupancy: the last ring reading (bytes not consumed); Backlog its
	// EWMA; DrainRate: bytes per second drained while holding data.
	Occupancy          int64
	Backlog, DrainRate float64
	// Stops: times the queue policy judged it stopped (work held, no
	// progress for several request times).
	Stops uint64
}

// Services returns each service's policy and members as of the last
// publication (every scanInterval), keyed by VIP.
func (g *Gateway) Services() map[netip.AddrPort][]ServiceMember {
	s := &g.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[netip.AddrPort][]ServiceMember{}
	for _, ss := range s.snap {
		out[ss.VIP] = slices.Clone(ss.Members)
	}
	return out
}

func (g *Gateway) serviceSnapshot() []serviceSnapshot {
	s := &g.svc
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

// serviceSpares reports whether the gateway should not reset the outside
// peer of f, a flow whose node failed: f went to a service member that
// died before it answered the SYN. The client's TCP resends its SYN (RFC
// 6298 §5: after the initial RTO) and that SYN, finding no flow, picks a
// member again, so the connection is delayed, not lost. A flow the member
// answered is reset as any flow of a dead node: it was in flight there.
func (g *Gateway) serviceSpares(f *Flow) bool {
	return g.svc.flows[f] != nil && !f.synNode
}
