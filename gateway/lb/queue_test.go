package lb

import (
	"testing"
	"time"
)

const ms = time.Millisecond

// readTwice takes a baseline reading at 0 and a second at 1 ms in which
// member i consumed consumed[i] bytes and holds occ[i]: the backlogs
// are then occ (the first reading seeds the EWMA and occ did not move)
// and the drain rates consumed[i] bytes per millisecond.
func readTwice(s *Service, l []*fakeLoad, occ []int64, consumed []uint64) {
	for i := range l {
		l[i].occ = occ[i]
		if occ[i] > 0 && l[i].conns == 0 {
			l[i].conns = 1 // bytes in a ring are an open connection's
		}
	}
	s.Tick(0)
	for i := range l {
		l[i].cons += consumed[i]
	}
	s.Tick(1 * ms)
}

func TestQueueChoosesLeastBacklogAtEqualRates(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1, 1)
	readTwice(s, l, []int64{3000, 1000, 2000}, []uint64{1000, 1000, 1000})
	// Expected delays (backlog + 512 B for the new conn) / 1 B/µs:
	// 3.5 ms, 1.5 ms, 2.5 ms.
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2 (1000 bytes against 3000 and 2000)", got[0])
	}
}

func TestQueueDividesBacklogByDrainRate(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1)
	// .1 holds less but drains at a quarter of .2's rate:
	// (1000+512)/0.25 = 6048 µs against (2000+512)/1 = 2512 µs.
	readTwice(s, l, []int64{1000, 2000}, []uint64{250, 1000})
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2 (the member four times faster)", got[0])
	}
	if r := s.Member(addr(1)).Metrics().DrainRate; r != 250e3 {
		t.Fatalf("drain rate of .1 = %v B/s, want 250000", r)
	}
}

func TestQueueManyPicksBetweenReadingsDoNotHerd(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1, 1, 1)
	// One reading shows .1 empty and the others 2048 bytes behind; then
	// 100 connections arrive before the next reading.
	readTwice(s, l, []int64{0, 2048, 2048, 2048}, []uint64{1000, 1000, 1000, 1000})
	count := map[int]int{}
	for range 100 {
		o := picks(t, s, 1)[0]
		count[o]++
		l[o-1].conns++ // as the gateway counts each flow it assigns (RingLoad.Add)
	}
	// The penalty makes .1 as loaded as the others after 4 picks; from
	// then on the four are near-equal and share. A choice from the raw
	// reading alone would have sent all 100 to .1.
	if count[1] > 40 {
		t.Errorf(".1 got %d of 100 picks, want ≤ 40 (herding): %v", count[1], count)
	}
	for o := 2; o <= 4; o++ {
		if count[o] < 15 {
			t.Errorf(".%d got %d of 100 picks, want ≥ 15: %v", o, count[o], count)
		}
	}
}

func TestQueueFirstPicksGoToTheEmptyMember(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1, 1, 1)
	readTwice(s, l, []int64{0, 2048, 2048, 2048}, []uint64{1000, 1000, 1000, 1000})
	// 512, 1024, 1536, 2048 bytes expected on .1 against 2560 elsewhere.
	for i, o := range picks(t, s, 4) {
		if o != 1 {
			t.Fatalf("pick %d went to .%d, want .1", i, o)
		}
	}
}

func TestQueueAvoidsMemberThatStoppedConsuming(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1, 1)
	readTwice(s, l, []int64{1000, 3000, 3000}, []uint64{1000, 1000, 1000})
	// For 20 ms .1 holds its 1000 bytes and consumes nothing; the others
	// hold three times as much and keep consuming.
	for now := 2 * ms; now <= 21*ms; now += ms {
		l[1].cons += 1000
		l[2].cons += 1000
		s.Tick(now)
	}
	for i, o := range picks(t, s, 3) {
		if o == 1 {
			t.Fatalf("pick %d went to .1, which has consumed nothing for 20 ms", i)
		}
	}
}

func TestStallRemovesMemberAfterTimeout(t *testing.T) {
	var removed []int
	cfg := Config{Policy: Queue}
	cfg.OnRemove = func(m *Member) { removed = append(removed, int(m.Addr().As4()[3])) }
	s, l := pool(t, cfg, 1, 1)
	l[0].occ, l[1].occ = 100, 100
	for now := time.Duration(0); now < DefaultStallTimeout; now += ms {
		l[0].cons += 100 // .1 consumes, .2 never does
		s.Tick(now)
	}
	if st := s.Member(addr(2)).State(); st != Up {
		t.Fatalf(".2 is %v after 249 ms without consuming, want up", st)
	}
	s.Tick(DefaultStallTimeout)
	if st := s.Member(addr(2)).State(); st != Removed {
		t.Fatalf(".2 is %v after 250 ms without consuming, want removed", st)
	}
	if len(removed) != 1 || removed[0] != 2 {
		t.Fatalf("OnRemove called for %v, want [2]", removed)
	}
	if got := s.Member(addr(2)).Metrics().Removals; got != 1 {
		t.Fatalf("member removals = %d, want 1", got)
	}
	if got := s.Metrics().Removals; got != 1 {
		t.Fatalf("service removals = %d, want 1", got)
	}
}

// A gap between readings of more than half the stall timeout is the
// gateway not looking (its loop starved), not the members stalling: no
// one is removed for it, and the stall clock starts again after it.
func TestStallNotJudgedOverAGapInTheReadings(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1)
	l[0].occ, l[1].occ = 100, 100
	s.Tick(0)
	s.Tick(1 * ms)
	// No reading for 300 ms, and nothing consumed meanwhile.
	s.Tick(301 * ms)
	if st := s.Member(addr(1)).State(); st != Up {
		t.Fatalf(".1 is %v after a 300 ms gap in the readings, want up", st)
	}
	// From the gap on, a real stall is judged as usual.
	for now := 302 * ms; now < 301*ms+DefaultStallTimeout; now += ms {
		s.Tick(now)
	}
	if st := s.Member(addr(1)).State(); st != Up {
		t.Fatalf(".1 is %v 249 ms after the gap, want up", st)
	}
	s.Tick(301*ms + DefaultStallTimeout)
	if st := s.Member(addr(1)).State(); st != Removed {
		t.Fatalf(".1 is %v 250 ms after the gap without consuming, want removed", st)
	}
}

func TestStallRemovalAppliesToEveryPolicy(t *testing.T) {
	for _, p := range Policies {
		s, l := pool(t, Config{Policy: p, TableSize: 251}, 1, 1)
		l[1].occ = 100
		for now := time.Duration(0); now <= DefaultStallTimeout; now += ms {
			s.Tick(now)
		}
		for i, o := range picks(t, s, 50) {
			if o == 2 {
				t.Fatalf("%v: pick %d went to the stalled .2", p, i)
			}
		}
	}
}

func TestIdleMemberIsNeverRemoved(t *testing.T) {
	s, _ := pool(t, Config{Policy: Queue}, 1)
	for now := time.Duration(0); now <= time.Second; now += ms {
		s.Tick(now)
	}
	if st := s.Member(addr(1)).State(); st != Up {
		t.Fatalf("a member holding nothing is %v after 1 s, want up", st)
	}
}

func TestRemovedMemberRejoins(t *testing.T) {
	s, l := pool(t, Config{Policy: RoundRobin}, 1, 1)
	l[1].occ = 100
	for now := time.Duration(0); now <= DefaultStallTimeout; now += ms {
		s.Tick(now)
	}
	if _, err := s.Join(addr(2), 1, l[1]); err != nil {
		t.Fatalf("rejoin after removal: %v", err)
	}
	if got := picks(t, s, 2); got[0]+got[1] != 3 {
		t.Fatalf("picks %v after rejoin, want .1 and .2", got)
	}
	// The rejoined member starts from a new baseline: not removed again
	// at the next reading for its old stall.
	s.Tick(DefaultStallTimeout + ms)
	if st := s.Member(addr(2)).State(); st != Up {
		t.Fatalf("rejoined member is %v one reading later, want up", st)
	}
}

func TestConsumedGoingBackwardsIsANewBaseline(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1)
	l[0].occ, l[0].cons = 100, 1000
	s.Tick(0)
	l[0].cons = 10
	s.Tick(ms)
	if m := s.Member(addr(1)).Metrics(); m.DrainRate != 0 {
		t.Fatalf("drain rate %v after the counter went back, want 0 (no sample)", m.DrainRate)
	}
}

func TestNegativeOccupancyCountsAsZero(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1)
	l[0].occ = -5
	s.Tick(0)
	if got := s.Member(addr(1)).Metrics().Occupancy; got != 0 {
		t.Fatalf("occupancy %d, want 0", got)
	}
}

func TestQueueLearnsBytesPerConnection(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1)
	s.Tick(0)
	// Each millisecond 10 connections are assigned and 2000 bytes arrive
	// (consumed at once): 200 bytes per connection.
	for now := ms; now <= 20*ms; now += ms {
		picks(t, s, 10)
		l[0].cons += 1000
		l[1].cons += 1000
		s.Tick(now)
	}
	if got := s.Metrics().ConnBytes; got < 199.99 || got > 200.01 {
		t.Fatalf("learned %v bytes per connection, want 200", got)
	}
}

func TestTickBeforeDueDoesNotRead(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1)
	if next := s.Tick(0); next != ms {
		t.Fatalf("next reading at %v, want 1ms", next)
	}
	l[0].occ = 700
	if next := s.Tick(ms / 2); next != ms {
		t.Fatalf("next reading at %v after an early Tick, want 1ms", next)
	}
	if got := s.Member(addr(1)).Metrics().Occupancy; got != 0 {
		t.Fatalf("an early Tick read occupancy %d, want no reading", got)
	}
}

func TestSEDWeighsConnectionsByDrainRate(t *testing.T) {
	s, l := pool(t, Config{Policy: SED}, 1, 1)
	readTwice(s, l, []int64{100, 100}, []uint64{1000, 250})
	l[0].conns, l[1].conns = 3, 1
	// (3+1) × 512 B at 1 B/µs = 2.0 ms against (1+1) × 512 B at
	// 0.25 B/µs = 4.1 ms: the busier but faster member wins, where
	// leastconn would choose .2.
	if got := picks(t, s, 1); got[0] != 1 {
		t.Fatalf("picked .%d, want .1", got[0])
	}
}

// drainLoad is a fakeLoad that also says what its application drained.
type drainLoad struct {
	fakeLoad
	drained, ended uint64
}

// Conns counts an open connection for a ring holding bytes, as the
// gateway's count always does.
func (d *drainLoad) Conns() int {
	if d.occ > 0 && d.conns == 0 {
		return 1
	}
	return d.conns
}

func (d *drainLoad) Drained() uint64 { return d.drained }
func (d *drainLoad) Ended() uint64   { return d.ended }

func drainPool(t *testing.T, n int) (*Service, []*drainLoad) {
	t.Helper()
	s, err := NewService(vip, Config{Policy: Queue})
	if err != nil {
		t.Fatal(err)
	}
	var ls []*drainLoad
	for i := 1; i <= n; i++ {
		l := &drainLoad{}
		if _, err := s.Join(addr(i), 1, l); err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	return s, ls
}

// A stalled member's stack still takes in the handshakes of new
// connections: consumed bytes that are not progress. With a Drainer the
// scheduler judges progress by what was drained, so the member's stall
// clock keeps running and it stops receiving connections.
func TestQueueHandshakesTakenInAreNotProgress(t *testing.T) {
	s, l := drainPool(t, 2)
	for _, x := range l {
		x.occ = 100
	}
	s.Tick(0)
	for now := ms; now <= 60*ms; now += ms {
		l[0].cons += 200 // .1: handshakes only (more bytes than .2's requests), its 100 bytes stay
		l[1].cons += 100
		l[1].drained += 100 // .2: takes a request every millisecond
		s.Tick(now)
	}
	if st := s.Member(addr(1)).Metrics(); st.DrainRate >= s.Member(addr(2)).Metrics().DrainRate {
		t.Fatalf(".1 drain rate %v B/s, want below .2's %v (handshakes are not draining)", st.DrainRate, s.Member(addr(2)).Metrics().DrainRate)
	}
	for i, o := range picks(t, s, 5) {
		if o == 1 {
			t.Fatalf("pick %d went to .1, which drained nothing for 60 ms", i)
		}
	}
}

// stoppedPool is two members, .1 holding 100 bytes and .2 300, that both
// drained 100 bytes a millisecond (a request each) for 500 ms, long enough
// for the scheduler to learn that a request is 100 bytes, hence one
// millisecond's work; then .1 took nothing for 12 ms (minStopped is
// 10 ms) while .2 went on.
func stoppedPool(t *testing.T) (*Service, []*drainLoad) {
	s, l := drainPool(t, 2)
	l[0].occ, l[1].occ = 100, 300
	s.Tick(0)
	var now time.Duration
	for now = ms; now <= 500*ms; now += ms {
		for _, x := range l {
			x.cons += 100
			x.drained += 100
		}
		s.Tick(now)
	}
	for end := now + 12*ms; now < end; now += ms {
		l[1].cons += 100
		l[1].drained += 100
		s.Tick(now)
	}
	return s, l
}

// A member that has held data without draining any for more than
// stallAfter times its time per request goes after every working member,
// even one with three times the backlog.
func TestQueueStoppedMemberComesAfterBusierWorkingOnes(t *testing.T) {
	s, _ := stoppedPool(t)
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2: .1 has drained nothing for 12 request times", got[0])
	}
}

// A stopped member whose stuck request has ended (no open connection
// left) holds no work, so it is no longer passed over, even before the
// next reading shows its progress.
func TestQueueStoppedMemberWithNoConnectionLeftIsNotPassedOver(t *testing.T) {
	s, l := stoppedPool(t)
	l[0].occ = 0 // its request ended since the reading: no connection left
	if got := picks(t, s, 1); got[0] != 1 {
		t.Fatalf("picked .%d, want the idle .1 (.2 holds three requests)", got[0])
	}
}

// Members within half a request's time of each other are equal as far
// as the readings can tell; the one with the fewest open connections
// (the gateway's exact count, which also sees a request in service)
// gets the connection.
func TestQueueNearEqualMembersGoToFewestConnections(t *testing.T) {
	s, l := drainPool(t, 3)
	// All idle at the same measured rate: 100 bytes a millisecond.
	for _, x := range l {
		x.occ = 100
	}
	s.Tick(0)
	for _, x := range l {
		x.occ, x.cons, x.drained = 0, 100, 100
	}
	s.Tick(ms)
	l[0].conns, l[1].conns, l[2].conns = 1, 0, 1 // .1 and .3 serve one
	for i := range 8 {
		m, err := s.Pick(uint64(i) * 0x9E3779B97F4A7C15)
		if err != nil {
			t.Fatal(err)
		}
		if o := m.Addr().As4()[3]; o != 2 {
			t.Fatalf("pick %d went to .%d, want .2, the only member with no open connection", i, o)
		}
		s.Tick(time.Duration(i+2) * ms) // the pending penalty starts over
	}
}

// busyFor drives a drainLoad member through readings every millisecond
// from `from` to `to`: it holds one connection and finishes one every
// `every` (a single worker serving requests back to back).
func busyFor(s *Service, l *drainLoad, from, to, every time.Duration) {
	for now := from; now <= to; now += ms {
		l.conns = 1
		if now > from && (now-from)%every == 0 {
			l.ended++
		}
		s.Tick(now)
	}
}

// The time between the connections a busy member finishes is its
// service time.
func TestQueueLearnsServiceTimeFromFinishes(t *testing.T) {
	s, l := drainPool(t, 1)
	// The first gap is 4 ms (the first reading only sets the baseline,
	// the second finds it busy); the EWMA (weight 0.1) forgets it.
	busyFor(s, l[0], 0, 300*ms, 5*ms)
	if got := s.Member(addr(1)).Metrics().ServiceTime; got < 5*ms-50*time.Microsecond || got > 5*ms {
		t.Fatalf("service time %v, want 5ms (within 50µs)", got)
	}
}

// twoBusy drives two members that serve 5 ms requests back to back,
// .1 finishing at multiples of 5 ms and .2 `offset` later, with a
// reading every millisecond up to `to`.
func twoBusy(s *Service, l []*drainLoad, offset, to time.Duration) {
	for now := time.Duration(0); now <= to; now += ms {
		l[0].conns, l[1].conns = 1, 1
		if now > 0 && now%(5*ms) == 0 {
			l[0].ended++
		}
		if now > offset && (now-offset)%(5*ms) == 0 {
			l[1].ended++
		}
		s.Tick(now)
	}
}

// Of two members serving one request each, the one further into its
// request gets the next connection: it will be free first.
func TestQueuePrefersBusyMemberClosestToFinishing(t *testing.T) {
	s, l := drainPool(t, 2)
	// At 103 ms .1 is 3 ms into its request, .2 has just begun one.
	twoBusy(s, l, 3*ms, 103*ms)
	if got := picks(t, s, 1); got[0] != 1 {
		t.Fatalf("picked .%d, want .1 (3 ms into its request against .2's 0 ms)", got[0])
	}
}

// A member measured four times slower by its finishes is not sent a
// connection while a fast one can take it within two of its own
// request times.
func TestQueueAvoidsMemberWithLongServiceTime(t *testing.T) {
	s, l := drainPool(t, 2)
	busyFor(s, l[0], 0, 200*ms, 20*ms) // .1: 20 ms a request
	l[0].conns = 0
	l[1].ended = 0
	for now := ms; now <= 200*ms; now += ms { // .2: 5 ms a request
		l[1].conns = 1
		if now%(5*ms) == 0 {
			l[1].ended++
		}
		s.Tick(now + 200*ms)
	}
	l[0].conns = 0 // .1 idle: 20 ms for a new request; .2: 5 + 5 ms
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2 (10 ms against the idle .1's 20 ms)", got[0])
	}
}

// A member whose request in service has run past its service time is
// overdue, not nearly done: it comes after one that has just begun.
func TestQueueOverdueMemberIsNotNearlyDone(t *testing.T) {
	s, l := drainPool(t, 2)
	// Both serve 5 ms requests until 100 ms; then .1 finishes nothing
	// more: at 108 ms it is 8 ms into a 5 ms request, .2 (finishing at
	// 1, 6, ... 106 ms) 2 ms into one.
	twoBusy(s, l, ms, 100*ms)
	for now := 101 * ms; now <= 108*ms; now += ms {
		if (now-ms)%(5*ms) == 0 {
			l[1].ended++
		}
		s.Tick(now)
	}
	if got := picks(t, s, 1); got[0] != 2 {
		t.Fatalf("picked .%d, want .2: .1 is 3 ms overdue", got[0])
	}
}

// A gap between finishes that includes part of a pause counts as at most
// twice the service time: a few of them must not make a member look slow.
func TestQueueServiceGapCountsAtMostTwice(t *testing.T) {
	s, l := drainPool(t, 1)
	busyFor(s, l[0], 0, 300*ms, 5*ms) // 5 ms, learned
	// One request finishes 15 ms after the previous one (it waited in a
	// pause): counted as 10 ms, the estimate moves by a tenth of 5 ms.
	busyFor(s, l[0], 301*ms, 315*ms, 15*ms)
	if got := s.Member(addr(1)).Metrics().ServiceTime; got > 5*ms+550*time.Microsecond {
		t.Fatalf("service time %v after one 15 ms gap, want at most 5.55ms", got)
	}
}

// An idle member's service time relaxes towards the others': one
// measured slow is sent little and would otherwise stay slow for good.
func TestQueueIdleMemberServiceTimeRelaxes(t *testing.T) {
	s, l := drainPool(t, 2)
	for now := time.Duration(0); now <= 400*ms; now += ms {
		l[0].conns, l[1].conns = 1, 1
		if now > 0 && now%(20*ms) == 0 {
			l[0].ended++ // .1: 20 ms a request
		}
		if now > 0 && now%(5*ms) == 0 {
			l[1].ended++ // .2: 5 ms
		}
		s.Tick(now)
	}
	before := s.Member(addr(1)).Metrics().ServiceTime
	l[0].conns = 0 // .1 idle for 30 s
	for now := 401 * ms; now <= 30400*ms; now += ms {
		if now%(5*ms) == 0 {
			l[1].ended++
		}
		s.Tick(now)
	}
	after := s.Member(addr(1)).Metrics().ServiceTime
	// The mean it relaxes to includes its own estimate, so it goes
	// slower than the 10 s time constant alone: at least halfway in 30 s.
	if before < 15*ms || after > before/2 {
		t.Fatalf(".1's service time %v busy, %v after 30 s idle; want ≥ 15ms, then at most half of that", before, after)
	}
}

// A member with an open connection and an empty ring that finishes
// nothing for a second (a long request, an idle keep-alive connection)
// holds no data: it is not removed. Only holding data and draining none
// is a stall.
func TestOpenConnectionWithoutDataIsNotRemoved(t *testing.T) {
	s, l := drainPool(t, 2)
	l[0].conns = 1
	for now := time.Duration(0); now <= time.Second; now += ms {
		s.Tick(now)
	}
	if st := s.Member(addr(1)).State(); st != Up {
		t.Fatalf(".1 is %v after 1 s with one open connection and nothing in its ring, want up", st)
	}
}

// A member's first gap between finishes counts as at most twice the
// others' service time: a gateway that starts while the member is
// paused must not take the pause for its speed.
func TestQueueFirstServiceGapIsBoundedByTheOthers(t *testing.T) {
	s, l := drainPool(t, 2)
	for now := time.Duration(0); now <= 100*ms; now += ms {
		l[0].conns, l[1].conns = 1, 1
		if now > 0 && now%(5*ms) == 0 {
			l[1].ended++ // .2: 5 ms a request from the start
		}
		if now == 50*ms {
			l[0].ended++ // .1: its first finish after a 49 ms pause
		}
		s.Tick(now)
	}
	if got := s.Member(addr(1)).Metrics().ServiceTime; got > 10*ms {
		t.Fatalf(".1's service time %v after one 49 ms gap, want at most 10ms (twice .2's)", got)
	}
}

// A member whose connections have all ended has nothing waiting, whatever
// its smoothed backlog from the last readings says: it goes before a
// member still holding a backlog, at once, not one reading later.
func TestQueueMemberWithNoOpenConnectionHasNothingAhead(t *testing.T) {
	s, l := pool(t, Config{Policy: Queue}, 1, 1)
	readTwice(s, l, []int64{4096, 4096}, []uint64{1000, 1000})
	l[0].conns, l[0].occ = 0, 0 // .1's flows ended since the reading
	for i, o := range picks(t, s, 3) {
		if o != 1 {
			t.Fatalf("pick %d went to .%d, want the idle .1", i, o)
		}
	}
}
