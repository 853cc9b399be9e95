package lb

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Policy is how a service chooses a member for a new connection.
type Policy uint8

const (
	// Queue: shortest expected delay from the ring pointers (doc.go).
	Queue Policy = iota
	// LeastConn: fewest open connections per unit of weight (IPVS lc/wlc).
	LeastConn
	// RoundRobin: smooth weighted round robin.
	RoundRobin
	// Hash: Maglev consistent hashing of the flow hash.
	Hash
	// SED: shortest expected delay with the backlog counted in open
	// connections (Load.Conns) instead of ring bytes, and the drain rate
	// and stalls still read from the ring (doc.go). Not one of issue 8's
	// four; kept for comparison with queue.
	SED
)

// Policies lists every policy, in the order tables print them.
var Policies = []Policy{Queue, LeastConn, RoundRobin, Hash, SED}

func (p Policy) String() string {
	switch p {
	case Queue:
		return "queue"
	case LeastConn:
		return "leastconn"
	case RoundRobin:
		return "roundrobin"
	case Hash:
		return "hash"
	case SED:
		return "sed"
	}
	return fmt.Sprintf("Policy(%d)", uint8(p))
}

// ParsePolicy is the inverse of Policy.String.
func ParsePolicy(s string) (Policy, error) {
	for _, p := range Policies {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("lb: unknown policy %q (want queue, leastconn, roundrobin, hash or sed)", s)
}

// Load is how the scheduler sees one member. The gateway implements it
// from the fabric connections it holds to the node (RingLoad does, given
// each connection's occupancy and tail position). Occupancy and Consumed
// are read once per reading interval (Tick), Conns during Pick (every
// member for leastconn and sed, two near-equal ones for queue).
type Load interface {
	// Occupancy is the number of bytes written to the member and not yet
	// consumed by it, summed over its connections.
	Occupancy() int64
	// Consumed is the cumulative number of bytes the member has consumed
	// (the sum of its rings' tail positions, counting connections that
	// closed). It never goes backwards.
	Consumed() uint64
	// Conns is the number of the member's open connections, including a
	// connection Pick has just returned: the gateway must count it before
	// the next Pick, or leastconn sends a burst to one member.
	Conns() int
}

// Drainer is implemented by a Load that can tell what the member's
// application took from what its stack consumed on arrival. A node's
// stack consumes a new connection's handshake at once, whatever its
// application is doing, and leaves a request in the ring until the
// application reads it; counted together, a member given many new
// connections looks fast for the handshakes it takes in (and gets more
// of them: herding), and a stalled member that is sent a connection
// looks as if it made progress. RingLoad implements it.
type Drainer interface {
	// Drained is the cumulative number of bytes consumed that were
	// already waiting at the previous call: per ring, the part of what
	// it held then that it has consumed since. Tick calls it once per
	// reading, after Occupancy. It never goes backwards.
	Drained() uint64
	// Ended is the cumulative number of the member's connections that
	// stopped counting (Conns): answered, closed or failed. A member
	// serving a request holds nothing in its ring; its progress shows
	// when it finishes one.
	Ended() uint64
}

// State is where a member is in its life.
type State uint8

const (
	// Up: the member receives new connections.
	Up State = iota
	// Left: Leave was called (listener closed, node gone).
	Left
	// Removed: the member held data without consuming any for
	// Config.StallTimeout; it stays out until Join readmits it.
	Removed
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Left:
		return "left"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Errors.
var (
	ErrNoMember     = errors.New("lb: service has no member that is up")
	ErrMemberExists = errors.New("lb: member is already up")
	ErrUnknown      = errors.New("lb: no such member")
)

// Defaults for Config's zero fields.
const (
	DefaultInterval      = time.Millisecond
	DefaultSmoothing     = time.Millisecond
	DefaultRateSmoothing = 100 * time.Millisecond
	DefaultStallTimeout  = 250 * time.Millisecond
	DefaultTableSize     = 65537
	DefaultSlack         = 0.1
	DefaultConnBytes     = 512
	// MaxMembers bounds the members a service remembers.
	MaxMembers = 4096
)

// Config chooses a service's policy and tunes the queue policy.
type Config struct {
	Policy Policy
	// Interval between readings of the members' loads (Tick).
	Interval time.Duration
	// Smoothing is the time constant of the backlog's EWMA.
	Smoothing time.Duration
	// RateSmoothing is the time constant of the drain rate's EWMA.
	RateSmoothing time.Duration
	// StallTimeout: a member holding data that consumes nothing for this
	// long is removed.
	StallTimeout time.Duration
	// TableSize is the Maglev table's size: a prime larger than the
	// number of members; the default 65537 suits up to a few hundred
	// (Maglev's guidance is M ≥ 100 N, for an even spread of flows).
	TableSize int
	// Slack: members whose expected delay is within this fraction of the
	// best are equal, and two of them drawn at random decide.
	Slack float64
	// ConnBytes is the first estimate of the bytes a new connection
	// brings before the member consumes them; readings refine it.
	ConnBytes float64
	// Seed seeds the Maglev permutations and the random choices, so that
	// tests and simulations are repeatable.
	Seed uint64
	// OnRemove, if set, is called from Tick when a member is removed for
	// stalling; the gateway resets the member's connections.
	OnRemove func(*Member)
}

func (c *Config) setDefaults() error {
	if c.Policy > SED {
		return fmt.Errorf("lb: unknown policy %d", c.Policy)
	}
	for _, d := range []struct {
		p   *time.Duration
		def time.Duration
		n   string
	}{{&c.Interval, DefaultInterval, "Interval"}, {&c.Smoothing, DefaultSmoothing, "Smoothing"},
		{&c.RateSmoothing, DefaultRateSmoothing, "RateSmoothing"}, {&c.StallTimeout, DefaultStallTimeout, "StallTimeout"}} {
		if *d.p < 0 {
			return fmt.Errorf("lb: negative %s %v", d.n, *d.p)
		}
		if *d.p == 0 {
			*d.p = d.def
		}
	}
	if c.TableSize == 0 {
		c.TableSize = DefaultTableSize
	}
	if c.TableSize < 2 || !isPrime(c.TableSize) {
		return fmt.Errorf("lb: Maglev table size %d is not a prime", c.TableSize)
	}
	if c.Slack < 0 || math.IsNaN(c.Slack) {
		return fmt.Errorf("lb: negative slack %v", c.Slack)
	}
	if c.Slack == 0 {
		c.Slack = DefaultSlack
	}
	if c.ConnBytes < 0 || math.IsNaN(c.ConnBytes) || math.IsInf(c.ConnBytes, 0) {
		return fmt.Errorf("lb: bad ConnBytes %v", c.ConnBytes)
	}
	if c.ConnBytes == 0 {
		c.ConnBytes = DefaultConnBytes
	}
	return nil
}

func isPrime(n int) bool {
	if n < 2 {
		return false
	}
	for d := 2; d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}

// Member is one node of a service's pool.
type Member struct {
	addr   netip.Addr
	weight int
	load   Load
	state  State
	index  int32 // position in Service.members, never changes

	// Metrics.
	assigned uint64
	removals uint64
	stops    uint64 // times judged stopped (stopped)
	stopped  bool

	// Queue policy: the readings.
	seen         bool
	lastOcc      int64
	lastConsumed uint64
	lastDrained  uint64
	lastEnded    uint64
	backlog      float64 // EWMA of occupancy, bytes
	rate         float64 // EWMA of drain rate, bytes per ns; valid if rateKnown
	rateKnown    bool
	pending      int           // connections assigned since the last reading (plus half the carried-over penalty)
	picked       int           // connections assigned since the last reading
	progressAt   time.Duration // last reading at which it drained, finished a connection, or had no work
	stuck        time.Duration // how long it has had work without progress, at the last reading
	dataAt       time.Duration // last reading at which it drained or held nothing
	dataStuck    time.Duration // how long it has held data without draining any, at the last reading
	// Service time, from the connections it finishes (Drainer.Ended):
	// serving is when the request in service began as far as the
	// readings tell (the last finish, or the first reading that found it
	// busy after idling), elapsed how long ago that was at the last
	// reading, service the EWMA of the time between finishes while busy.
	busy         bool
	serving      time.Duration
	elapsed      time.Duration
	service      float64 // ns; valid if serviceKnown
	serviceKnown bool
	// Round robin: the smooth weighted round robin's current weight.
	current int
	// Maglev permutation: slot j of this member's preference list is
	// (offset + j·skip) mod M.
	offset, skip uint64
}

// Addr is the member's node address.
func (m *Member) Addr() netip.Addr { return m.addr }

// Weight is the member's weight (leastconn, roundrobin).
func (m *Member) Weight() int { return m.weight }

// State says whether the member receives new connections.
func (m *Member) State() State { return m.state }

// MemberMetrics is a member's counters for the gateway's exporter.
type MemberMetrics struct {
	Addr  netip.Addr
	State State
	// Assigned counts the connections Pick gave the member.
	Assigned uint64
	// Occupancy is the last reading (bytes); Backlog its EWMA.
	Occupancy int64
	Backlog   float64
	// DrainRate is the measured consumption rate in bytes per second
	// while it held data (0: not measured yet).
	DrainRate float64
	// Removals counts the times it was removed for stalling.
	Removals uint64
	// ServiceTime is the measured time between the connections it
	// finishes while busy (0: not measured yet).
	ServiceTime time.Duration
	// Stops counts the times the queue policy judged it stopped: it had
	// work and made no progress for stallAfter times its time per
	// request (it then gets no new connection while another member
	// works).
	Stops uint64
}

// Metrics reads the member's counters.
func (m *Member) Metrics() MemberMetrics {
	mm := MemberMetrics{Addr: m.addr, State: m.state, Assigned: m.assigned, Occupancy: m.lastOcc,
		Backlog: m.backlog, Removals: m.removals, Stops: m.stops}
	if m.serviceKnown {
		mm.ServiceTime = time.Duration(m.service)
	}
	if m.rateKnown {
		mm.DrainRate = m.rate * 1e9
	}
	return mm
}

// ServiceMetrics is a service's counters.
type ServiceMetrics struct {
	Picks     uint64 // connections assigned
	NoMember  uint64 // Picks that found no member up
	Removals  uint64 // members removed for stalling
	Up        int    // members up now
	ConnBytes float64
	// DrainBytes is the learned size of what a member drains when it
	// takes a request that waited (the queue policy's unit of work).
	DrainBytes float64
}

// Service is a virtual address and port and the pool that serves it.
type Service struct {
	vip     netip.AddrPort
	cfg     Config
	members []*Member // every member ever joined, by index
	up      []*Member // members that are up, in join order

	// Queue policy.
	connBytes      float64 // learned bytes per new connection
	drainBytes     float64 // learned bytes a member drains per request it takes
	arrivedEWMA    float64
	assignedEWMA   float64
	nextReading    time.Duration
	lastReading    time.Duration
	readings       uint64
	scores         []float64 // scratch: expected delay of each member of up
	near           []int32   // scratch: indexes into up of the near-equal members
	rng            uint64
	rrCursor       int // leastconn's rotating tie-break
	table          []int32
	picks, noMbr   uint64
	removalsMetric uint64
}

// NewService makes an empty service for vip with cfg's policy.
func NewService(vip netip.AddrPort, cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if !vip.IsValid() {
		return nil, fmt.Errorf("lb: invalid service address %v", vip)
	}
	s := &Service{vip: vip, cfg: cfg, connBytes: cfg.ConnBytes, drainBytes: cfg.ConnBytes, rng: cfg.Seed*0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D}
	return s, nil
}

// VIP is the service's virtual address and port.
func (s *Service) VIP() netip.AddrPort { return s.vip }

// Policy is the service's policy.
func (s *Service) Policy() Policy { return s.cfg.Policy }

// Join adds a member with the given weight (≥ 1) and load source, or
// readmits a member that left or was removed (with the new weight and
// load). A member that is up already is an error (ErrMemberExists).
// Weights count for leastconn and roundrobin; queue and sed measure a
// member's speed instead, and hash gives every member an equal share.
func (s *Service) Join(addr netip.Addr, weight int, load Load) (*Member, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("lb: join %v: invalid address", addr)
	}
	if weight < 1 || weight > 1<<16 {
		return nil, fmt.Errorf("lb: join %v: weight %d out of range [1, 65536]", addr, weight)
	}
	if load == nil {
		return nil, fmt.Errorf("lb: join %v: nil Load", addr)
	}
	m := s.find(addr)
	if m != nil && m.state == Up {
		return nil, fmt.Errorf("lb: join %v to %v: %w", addr, s.vip, ErrMemberExists)
	}
	if m == nil && len(s.members) >= MaxMembers || s.cfg.Policy == Hash && len(s.up)+1 > s.cfg.TableSize {
		return nil, fmt.Errorf("lb: join %v to %v: pool full (%d members up, table size %d)", addr, s.vip, len(s.up), s.cfg.TableSize)
	}
	if m == nil {
		m = &Member{addr: addr, index: int32(len(s.members))}
		s.members = append(s.members, m)
	}
	m.weight, m.load, m.state = weight, load, Up
	m.seen, m.pending, m.picked, m.stuck, m.dataStuck, m.current = false, 0, 0, 0, 0, 0
	m.busy, m.elapsed, m.serviceKnown = false, 0, false
	m.backlog, m.rateKnown = 0, false
	s.up = append(s.up, m)
	s.membershipChanged()
	return m, nil
}

// Leave takes a member out of the pool: no new connection goes to it.
func (s *Service) Leave(addr netip.Addr) error {
	m := s.find(addr)
	if m == nil || m.state != Up {
		return fmt.Errorf("lb: leave %v from %v: %w", addr, s.vip, ErrUnknown)
	}
	s.takeOut(m, Left)
	return nil
}

// Member returns the member with addr, in whatever state, or nil.
func (s *Service) Member(addr netip.Addr) *Member { return s.find(addr) }

// Members returns every member ever joined (up, left or removed), in join
// order. The slice is the service's own: read it, do not keep it.
func (s *Service) Members() []*Member { return s.members }

// Metrics reads the service's counters.
func (s *Service) Metrics() ServiceMetrics {
	return ServiceMetrics{Picks: s.picks, NoMember: s.noMbr, Removals: s.removalsMetric, Up: len(s.up), ConnBytes: s.connBytes, DrainBytes: s.drainBytes}
}

func (s *Service) find(addr netip.Addr) *Member {
	for _, m := range s.members {
		if m.addr == addr {
			return m
		}
	}
	return nil
}

func (s *Service) takeOut(m *Member, st State) {
	m.state = st
	for i, u := range s.up {
		if u == m {
			s.up = append(s.up[:i], s.up[i+1:]...)
			break
		}
	}
	s.membershipChanged()
}

func (s *Service) membershipChanged() {
	if s.cfg.Policy == Hash {
		s.buildTable()
	}
	for _, m := range s.up {
		m.current = 0
	}
}

// Tick takes a reading of every member if one is due (the first call
// always reads), runs the stall check, and returns when the next reading
// is due. The gateway calls it at that time, whatever the policy.
func (s *Service) Tick(now time.Duration) (next time.Duration) {
	if s.readings > 0 && now < s.nextReading {
		return s.nextReading
	}
	dt := now - s.lastReading
	if s.readings == 0 || dt <= 0 {
		dt = s.cfg.Interval
	}
	// A gap of half the stall timeout since the last reading means the
	// gateway itself was not running (its event loop starved of CPU):
	// it saw nothing, and what it credits a member with may pass
	// through that same loop (a flow's bytes when it ends), so it cannot
	// blame anyone for the gap. The stall clocks restart from here.
	blind := s.readings > 0 && dt > s.cfg.StallTimeout/2
	aB := alpha(dt, s.cfg.Smoothing)
	aR := alpha(dt, s.cfg.RateSmoothing)
	aI := alpha(dt, idleRelax*s.cfg.RateSmoothing)
	aS := alpha(dt, serviceIdleRelax*s.cfg.RateSmoothing)
	var arrived float64
	var assigned int
	prior := s.meanRate(0)
	priorService := s.meanService()
	// Iterate over a snapshot index: a removal shrinks s.up.
	for i := 0; i < len(s.up); i++ {
		m := s.up[i]
		occ := m.load.Occupancy()
		if occ < 0 {
			occ = 0
		}
		cons := m.load.Consumed()
		drained, ended := cons, m.lastEnded
		// Without a Drainer a member with an empty ring is idle as far
		// as the scheduler can tell; with one, it is idle only when it
		// has no connection either.
		idle := occ == 0
		d, drains := m.load.(Drainer)
		if drains {
			drained, ended = d.Drained(), d.Ended()
			idle = occ == 0 && m.load.Conns() == 0
		}
		if !m.seen || cons < m.lastConsumed || drained < m.lastDrained {
			// First reading, or a counter that went backwards: a new
			// baseline, no rate sample, no progress judgement.
			m.seen = true
			m.backlog = float64(occ)
			m.progressAt, m.dataAt = now, now
		} else {
			delta := cons - m.lastConsumed
			took := drained - m.lastDrained
			arrived += float64(delta) + float64(occ) - float64(m.lastOcc)
			assigned += m.picked
			m.backlog += aB * (float64(occ) - m.backlog)
			if took > 0 {
				// What one request's worth of draining looks like: the
				// unit of the pending penalty and of the stall test.
				s.drainBytes += aR * (float64(took) - s.drainBytes)
			}
			// A rate sample only when the member held data at the
			// previous reading: it had work waiting (or stalled), and
			// what it took since is how fast it works through it.
			switch {
			case took == 0 && m.rateKnown && now-m.dataAt > time.Duration(stallGaps*s.drainBytes/max(m.rate, 1e-9)):
				// Nothing taken for several times the usual gap
				// between two requests: a stall, not slowness. The
				// stall time in the score covers it; feeding zeros to
				// the rate would keep the member looking slow long
				// after it resumed.
			case m.lastOcc > 0:
				r := float64(took) / float64(dt)
				switch {
				case m.rateKnown:
					m.rate += aR * (r - m.rate)
				case prior > 0:
					// Start from the others' rate: one noisy
					// sample (a single worker consumes in steps)
					// must not decide alone.
					m.rate, m.rateKnown = prior+aR*(r-prior), true
				case r > 0:
					m.rate, m.rateKnown = r, true
				}
			case occ == 0 && m.rateKnown && prior > 0:
				// Idle: no evidence about its speed any more, so
				// the estimate relaxes towards the others'. Without
				// this a member measured slow (or stalled) would get
				// no connection, hence no data, hence no sample that
				// could ever clear it. Ten times slower than the rate
				// learns: a member measured slow rarely holds data
				// (it is sent little), and relaxing at the rate's own
				// speed made it look normal again within ~100 ms and
				// sent it a request whose 4× service time was the
				// tail.
				m.rate += aI * (prior - m.rate)
			}
			if drains {
				s.serviceSample(m, now, ended-m.lastEnded, idle, blind, priorService)
				if idle && m.serviceKnown && priorService > 0 {
					// As the drain rate does, but slower still: a
					// member measured slow is sent little, so its
					// estimate must recover without samples, towards
					// the others'; each probe of a member that is
					// still slow is a request in the tail (at 1 s,
					// 2 % of the requests went to a member 4× slower).
					m.service += aS * (priorService - m.service)
				}
			}
			// Progress: it took a request that waited, or finished a
			// connection, or has nothing to do. A member serving a
			// request while its ring is empty makes none until it
			// finishes: a stall in mid-request shows too. That clock
			// only orders the members (isStopped); removal is for a
			// member that holds data and drains none (dataAt): one
			// serving a long request, or holding an idle long-lived
			// connection, is neither dead nor stuck.
			if took > 0 || ended != m.lastEnded || idle || blind {
				m.progressAt = now
			}
			if took > 0 || occ == 0 || blind {
				m.dataAt = now
			}
		}
		// Connections assigned just before this reading may not have
		// sent their request yet (it lands about one RTT after the SYN),
		// so half the penalty carries over to the next interval.
		m.lastOcc, m.lastConsumed, m.lastDrained, m.lastEnded, m.pending, m.picked = occ, cons, drained, ended, m.pending/2, 0
		m.stuck, m.dataStuck = now-m.progressAt, now-m.dataAt
		rate := prior
		if m.rateKnown {
			rate = m.rate
		}
		if st := s.isStopped(m, rate); st != m.stopped {
			m.stopped = st
			if st {
				m.stops++
			}
		}
		if m.dataStuck >= s.cfg.StallTimeout {
			m.removals++
			s.removalsMetric++
			s.takeOut(m, Removed)
			i--
			if s.cfg.OnRemove != nil {
				s.cfg.OnRemove(m)
			}
		}
	}
	// Learn the bytes a connection brings: the ratio of the smoothed
	// bytes that arrived to the smoothed connections assigned.
	if assigned > 0 || s.assignedEWMA > 0 {
		s.arrivedEWMA += aR * (max(arrived, 0) - s.arrivedEWMA)
		s.assignedEWMA += aR * (float64(assigned) - s.assignedEWMA)
		if s.assignedEWMA > 1e-3 && s.arrivedEWMA > 0 {
			s.connBytes = s.arrivedEWMA / s.assignedEWMA
		}
	}
	s.readings++
	s.lastReading = now
	s.nextReading = now + s.cfg.Interval
	return s.nextReading
}

// serviceSample follows m's service time through the connections it
// finishes: k finished since the last reading, each after the previous
// one (a single worker serves in turn), the first after the request in
// service began. A gap that is a stall (longer than the member is
// allowed to make no progress) or that spans a blind reading is no
// sample. prior is the mean of the members' service times (0: none
// known).
func (s *Service) serviceSample(m *Member, now time.Duration, k uint64, idle, blind bool, prior float64) {
	if k > 0 && m.busy && !blind {
		gap := float64(now-m.serving) / float64(k)
		stall := max(stallAfter*m.service, float64(minStopped))
		switch {
		case !m.serviceKnown && prior > 0:
			// The first gap may have waited through a pause (a gateway
			// that starts while the member stalls): it counts as at
			// most twice the others' time. Taken whole, one 50 ms gap
			// made a member ten times slower than it is, and it was
			// sent nothing for the rest of the run.
			m.service, m.serviceKnown = min(gap, 2*prior), true
		case !m.serviceKnown:
			m.service, m.serviceKnown = gap, true
		case gap <= stall:
			// A gap counts as at most twice the estimate: a request
			// that arrived during a pause waited part of it, and a few
			// such gaps must not make the member look slow (it would
			// then be sent nothing, and measured no more).
			m.service += serviceAlpha * (min(gap, 2*m.service) - m.service)
		}
	}
	switch {
	case idle:
		m.busy = false
	case !m.busy || k > 0 || blind:
		// It starts on a request now (as far as a reading tells).
		m.busy, m.serving = true, now
	}
	m.elapsed = 0
	if m.busy {
		m.elapsed = now - m.serving
	}
}

// serviceAlpha is the weight of one service-time sample: about the last
// ten requests count.
const serviceAlpha = 0.1

// idleRelax: an idle member's drain rate relaxes towards the others'
// this many times slower than a busy member's rate learns (Tick).
const idleRelax = 10

// serviceIdleRelax: an idle member's service time relaxes towards the
// others' with a time constant of this many RateSmoothings (10 s).
const serviceIdleRelax = 100

// stallGaps: a member that has consumed nothing for this many times its
// usual gap between connections' worth of bytes is stalled (Tick).
const stallGaps = 4

// alpha is the EWMA weight of a sample dt after the previous one for a
// time constant tau: 1 - e^(-dt/tau), so that the average forgets at the
// same speed whatever the interval.
func alpha(dt, tau time.Duration) float64 {
	return 1 - math.Exp(-float64(dt)/float64(tau))
}

// Pick chooses the member for a new connection whose flow hash (of its
// 4-tuple, FlowHash) is flowHash, and counts the assignment.
func (s *Service) Pick(flowHash uint64) (*Member, error) {
	if len(s.up) == 0 {
		s.noMbr++
		return nil, ErrNoMember
	}
	var m *Member
	switch s.cfg.Policy {
	case Queue, SED:
		m = s.pickQueue(flowHash)
	case LeastConn:
		m = s.pickLeastConn()
	case RoundRobin:
		m = s.pickRoundRobin()
	case Hash:
		m = s.members[s.table[flowHash%uint64(len(s.table))]]
	}
	m.assigned++
	m.pending++
	m.picked++
	s.picks++
	return m, nil
}

// expectedDelay is the queue policy's score of m in nanoseconds (doc.go):
// the requests ahead of a new one times the member's time per request.
func (s *Service) expectedDelay(m *Member, meanRate, meanService float64) float64 {
	conns := float64(max(m.load.Conns(), 0))
	// Ahead of a new connection: what waits in the ring (its smoothed
	// occupancy in requests) plus the connections assigned since the
	// reading, or the gateway's count of the member's open connections
	// if that is more: the count is exact and immediate and includes
	// the request the member has taken and is serving, which the ring
	// cannot show; the ring shows what the count cannot, the bytes
	// of a request that has not left it.
	ringAhead := m.backlog/s.drainBytes + float64(m.pending)
	if conns == 0 {
		// No open connection, so nothing waits there (bytes in a ring
		// are an open connection's, and the gateway counts a flow the
		// moment it assigns it): the smoothed backlog and the
		// assignments since the reading are of connections that have
		// ended, and would rank an idle member behind a busy one.
		ringAhead = 0
	}
	ahead := max(conns, ringAhead)
	if s.cfg.Policy == SED {
		// Every open connection counts as one request, whether it
		// waits in the ring or is being served.
		ahead = conns
	}
	// The member's own rate only if it differs from the mean by more
	// than rateBand: the samples of members that are alike differ by
	// tens of per cent (a 1 ms reading sees a request taken or not), and
	// that noise, multiplied by the requests ahead, would send a
	// connection to a busy member the noise favours instead of an idle
	// one.
	rate := meanRate
	if m.rateKnown && (m.rate < meanRate/rateBand || m.rate > meanRate*rateBand) {
		rate = m.rate
	}
	// A member measured at zero drain rate has stalled: its delay is
	// unbounded as far as we know, so order such members by backlog
	// after everyone else.
	const minRate = 1e-9 // 1 byte per second
	rate = max(rate, minRate)
	d := (ahead + 1) * s.drainBytes / rate
	if svc, ok := serviceOf(m, meanService); ok {
		// The finishes give the time per request directly, and how far
		// the request in service has got: of the ahead requests, the
		// first has only what is left of it to go. One that has run
		// past the member's service time is overdue, not nearly done:
		// the time past counts against the member (a stall in
		// mid-request looks like this until it is long enough to be
		// judged stopped).
		d = (ahead + 1) * svc
		if e := float64(m.elapsed); ahead > 0 && e <= svc {
			d -= min(e, 0.9*svc)
		} else if ahead > 0 {
			d += e - svc
		}
	}
	// A member that has made no progress (taken no request that waited,
	// finished no connection) for stallAfter times its time per request
	// while it had work is not slow but stopped: how long it stays
	// stopped nobody knows (a 50 ms pause, a collector, a dying
	// process), so it comes after every member that is working, ordered
	// among the stopped ones by how long they have been stuck.
	if s.isStopped(m, rate) {
		d += stalledPenalty + float64(max(m.stuck, m.dataStuck))
	}
	return d
}

// serviceOf is the time per request the queue policy uses for m: its
// own measured service time if it differs from mean, the members', by
// more than rateBand, else the mean (as for the drain rate: alike
// members' samples differ by noise). ok is false if none is known.
func serviceOf(m *Member, mean float64) (float64, bool) {
	if mean <= 0 {
		return 0, false
	}
	if m.serviceKnown && (m.service > mean*rateBand || m.service < mean/rateBand) {
		return m.service, true
	}
	return mean, true
}

// meanService is the mean service time of the members up whose service
// time is known, or 0.
func (s *Service) meanService() float64 {
	return s.meanOver(func(m *Member) (float64, bool) { return m.service, m.serviceKnown }, 0)
}

// isStopped reports whether m, whose drain rate is rate (bytes/ns), has
// held data without draining any for more than stallAfter times its time
// per request, or had work without progress for more than twice its
// service time (and at least minStopped either way).
func (s *Service) isStopped(m *Member, rate float64) bool {
	if m.load.Conns() <= 0 {
		// No open connection, no work: nothing it could be stuck on.
		// (A member whose stuck request has just ended would otherwise
		// be passed over until the next reading shows the progress.)
		return false
	}
	if float64(m.dataStuck) > max(stallAfter*s.drainBytes/max(rate, 1e-9), float64(minStopped), float64(2*s.cfg.Interval)) {
		return true
	}
	// With an empty ring the measure is its own time between finishes:
	// a member whose connections are long-lived (or idle) finishes
	// rarely and is never judged stopped for holding them.
	return m.serviceKnown && float64(m.stuck) > max(2*m.service, float64(minStopped))
}

// stallAfter: a member with work that has made no progress for this
// many times its time per request (drain bytes / drain rate) is
// stopped. The drain rate is measured on requests that waited, which a
// single worker takes when it finishes the one in service, after the
// rest of that one's service time: it overstates the speed up to
// twofold, so 2 would call a working member stopped; 4 is about two
// real service times.
const stallAfter = 4

// minStopped is the least time without progress that counts as
// stopped, whatever the measured time per request: the drain rate is
// measured on requests that waited, and a request that arrives just
// before the one in service ends is taken at once, so the rate can read
// several times the true one and 4 request times fall short of one
// service time. Judged stopped in mid-request, a member that is about
// to finish would lose its next connection to one that has just begun.
const minStopped = 10 * time.Millisecond

// rateBand: a member's drain rate counts as its own only when it is
// more than this factor away from the mean; within it the members are
// alike and the mean is the better estimate of each.
const rateBand = 1.5

// stalledPenalty orders stopped members after working ones (1000 s:
// more than any delay a working member can be expected to have).
const stalledPenalty = 1e12

func (s *Service) pickQueue(flowHash uint64) *Member {
	if len(s.up) == 1 {
		return s.up[0]
	}
	// Members whose rate is not known yet (just joined, or never busy)
	// are assumed as fast as the average known one.
	meanRate, meanService := s.meanRate(1), s.meanService()
	// One pass for the scores and the best, one for the near-equal set.
	s.scores = s.scores[:0]
	best := math.Inf(1)
	for _, m := range s.up {
		d := s.expectedDelay(m, meanRate, meanService)
		s.scores = append(s.scores, d)
		best = min(best, d)
	}
	// Near-equal: within Slack of the best, or within half of one
	// request's service time at the mean rate: differences smaller
	// than that are the readings' noise (a ring is read every
	// Interval, and a request in service does not show in it at all).
	margin := 0.5 * s.drainBytes / meanRate
	if meanService > 0 {
		// Service times from finishes are the steadier measure.
		margin = 0.2 * meanService
	}
	limit := best + max(best*s.cfg.Slack, margin) + 1 // +1 ns: exact ties at zero
	s.near = s.near[:0]
	for i, d := range s.scores {
		if d <= limit {
			s.near = append(s.near, int32(i))
		}
	}
	if len(s.near) == 1 {
		return s.up[s.near[0]]
	}
	// Among the near-equal members the one with the fewest open
	// connections wins: the gateway's count is exact and immediate,
	// where the ring is a reading up to an interval old and cannot show
	// a request the member has taken and is serving. Then the lower
	// expected delay (the one further into its request in service);
	// exact ties go to the first from a random start, so that no member
	// is favoured.
	start := int(s.random(flowHash) % uint64(len(s.near)))
	var pick *Member
	least, score := 0, 0.0
	for k := range s.near {
		i := s.near[(start+k)%len(s.near)]
		m := s.up[i]
		if c := max(m.load.Conns(), 0); pick == nil || c < least || c == least && s.scores[i] < score {
			pick, least, score = m, c, s.scores[i]
		}
	}
	return pick
}

// meanRate is the mean drain rate of the members up whose rate is known,
// or def if there is none.
func (s *Service) meanRate(def float64) float64 {
	return s.meanOver(func(m *Member) (float64, bool) { return m.rate, m.rateKnown }, def)
}

// meanOver is the mean of the values f knows over the members up, or def
// if it knows none (or they sum to zero or less).
func (s *Service) meanOver(f func(*Member) (float64, bool), def float64) float64 {
	var sum float64
	var n int
	for _, m := range s.up {
		if v, ok := f(m); ok {
			sum += v
			n++
		}
	}
	if n == 0 || sum <= 0 {
		return def
	}
	return sum / float64(n)
}

// random advances the service's xorshift generator, mixed with the flow
// hash so that two gateways with one seed still differ by traffic.
func (s *Service) random(flowHash uint64) uint64 {
	x := s.rng ^ flowHash*0x9E3779B97F4A7C15
	if x == 0 { // xorshift's one fixed point
		x = 0x2545F4914F6CDD1D
	}
	x ^= x << 13
	x ^= x >> 7
	x ^= x << 17
	s.rng = x
	return x * 0x2545F4914F6CDD1D
}

func (s *Service) pickLeastConn() *Member {
	n := len(s.up)
	start := s.rrCursor % n
	var best *Member
	var bestConns, bestAt int
	for k := 0; k < n; k++ {
		at := (start + k) % n
		m := s.up[at]
		c := max(m.load.Conns(), 0)
		if best == nil {
			best, bestConns, bestAt = m, c, at
			continue
		}
		// c/w < bestConns/bestW, without division (IPVS wlc).
		l, r := c*best.weight, bestConns*m.weight
		if l < r || l == r && m.weight > best.weight {
			best, bestConns, bestAt = m, c, at
		}
	}
	// The next scan starts after the chosen member, so that members
	// tied with it take turns.
	s.rrCursor = bestAt + 1
	return best
}

// pickRoundRobin is nginx's smooth weighted round robin: every member
// gains its weight, the richest is chosen and pays the total. With equal
// weights it cycles in join order; with 5,1,1 it gives a a b a c a a.
func (s *Service) pickRoundRobin() *Member {
	total := 0
	var best *Member
	for _, m := range s.up {
		m.current += m.weight
		total += m.weight
		if best == nil || m.current > best.current {
			best = m
		}
	}
	best.current -= total
	return best
}
