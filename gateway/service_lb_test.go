package gateway

import "testing"

// A service member's load counts a flow until the member has sent its
// FIN (service.go, flowRing and serviceNodeFinished, which outbound.go
// calls as the FIN goes through): from then on the flow is no work at
// the member, whatever still waits in its ring.
func TestServiceNodeFinishedStopsCountingAFlowOnceTheMemberSentItsFIN(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial() // any fabric connection: the rings are read, never used
	g := &Gateway{svc: services{flows: map[*Flow]*member{}}}
	m := &member{flows: map[*Flow]*flowRing{}}
	f1, f2 := &Flow{conn: c}, &Flow{conn: c}
	r1, r2 := &flowRing{c: c, f: f1}, &flowRing{c: c, f: f2}
	for f, r := range map[*Flow]*flowRing{f1: r1, f2: r2} {
		m.load.Add(r)
		m.flows[f] = r
		g.svc.flows[f] = m
	}
	if n := m.load.Conns(); n != 2 {
		t.Fatalf("no FIN yet: %d connections counted, want 2", n)
	}
	f1.finNode = true
	g.serviceNodeFinished(f1)
	if n := m.load.Conns(); n != 1 || !r1.retired || r2.retired {
		t.Fatalf("after the member's FIN on flow 1: %d counted (retired %v, %v), want 1 (true, false)", n, r1.retired, r2.retired)
	}
	if occ, cons := r1.RingOccupancy(), r1.RingConsumed(); occ != 0 || cons != c.RingProduced() {
		t.Fatalf("finished flow reads occupancy %d, consumed %d; want 0 and all produced (%d)", occ, cons, c.RingProduced())
	}
	g.serviceNodeFinished(f1) // a retransmitted FIN: nothing changes
	if n, ended := m.load.Conns(), m.load.Ended(); n != 1 || ended != 1 {
		t.Fatalf("second FIN: %d counted, %d ended; want 1 and 1", n, ended)
	}
	g.serviceNodeFinished(&Flow{conn: c}) // not a service's flow: ignored
	f2.finNode = true
	g.serviceNodeFinished(f2)
	if n := m.load.Conns(); n != 0 {
		t.Fatalf("both FINs sent: %d counted, want 0", n)
	}
}
