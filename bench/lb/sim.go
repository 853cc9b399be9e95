package lb

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	sched "github.com/ultcp/ultcp/gateway/lb"
)

// Scenarios of the benchmark (issue 8, Build 5): every backend alike; one
// of them slowed by a fixed factor; one of them stalling periodically.
const (
	ScenarioEqual = "equal"
	ScenarioSlow  = "slow"
	ScenarioStall = "stall"
	// ScenarioDead: backend 0 stops for good mid-run (killed, or hung):
	// how fast the scheduler removes it and how many requests fail.
	// Not in Scenarios: issue 8's table has the other three.
	ScenarioDead = "dead"
)

// Scenarios lists them in table order.
var Scenarios = []string{ScenarioEqual, ScenarioSlow, ScenarioStall}

// SimConfig describes the model the simulation runs. Zero fields take
// the defaults of DefaultSimConfig.
type SimConfig struct {
	// Backends is the pool size; Workers how many requests one backend
	// serves at once. A backend reads a request from its ring only when a
	// worker takes it, so what waits is visible as ring occupancy (the
	// premise of the queue policy; Backend serves the same way).
	Backends, Workers int
	// Cost is the mean service time of a request on a normal backend:
	// half of it fixed, half exponentially distributed (CV 0.5), or all
	// of it fixed with FixedCost (as the measured run's backends, which
	// sleep for it).
	Cost      time.Duration
	FixedCost bool
	// Slowdown multiplies the cost on backend 0 in the slow scenario.
	Slowdown float64
	// StallEvery and StallFor: in the stall scenario, backend 0 stops
	// (reads nothing, serves nothing) for StallFor every StallEvery.
	StallEvery, StallFor time.Duration
	// DieAfter: in the dead scenario, backend 0 stops for good this long
	// after the warm-up.
	DieAfter time.Duration
	// Cores > 0 makes the backends share that many CPUs (processor
	// sharing: with n requests in service anywhere, each progresses at
	// min(1, Cores/n) of full speed), as spinning backends on a small
	// machine do. 0: every worker has its own CPU.
	Cores int
	// Concurrency > 0: a closed loop of that many clients, each sending
	// its next request when the previous answer arrives. Otherwise an
	// open loop of Poisson arrivals at Rate requests per second.
	Concurrency int
	Rate        float64
	// RTT between the client and a backend through the gateway: the
	// request lands in the backend's ring one RTT after the client's SYN
	// (the handshake, then the request), the answer reaches the client
	// half an RTT after the backend sends it.
	RTT time.Duration
	// RequestBytes is what one request puts into the backend's ring.
	RequestBytes int
	// Grace > 0 models a node stack that takes a request out of the ring
	// after it has waited that long even though no worker has read it
	// (ultcp's progress engine does so after Config.Grace, 5 ms): the
	// bytes count as consumed and the ring no longer shows the wait.
	Grace time.Duration
	// Duration of simulated time, of which the first Warmup is not
	// measured.
	Duration, Warmup time.Duration
	// Seed makes a run repeatable.
	Seed uint64
	// LB tunes the scheduler (its Policy field is set per run).
	LB sched.Config
}

// DefaultSimConfig is four single-worker backends at 1 ms per request,
// one slowed 4× or stalling 50 ms every 500 ms, driven by 16 clients in a
// closed loop over a 200 µs RTT, for 20 simulated seconds.
func DefaultSimConfig() SimConfig {
	return SimConfig{
		Backends: 4, Workers: 1, Cost: time.Millisecond, Slowdown: 4,
		StallEvery: 500 * time.Millisecond, StallFor: 50 * time.Millisecond, DieAfter: 2 * time.Second,
		Concurrency: 16, RTT: 200 * time.Microsecond, RequestBytes: 100,
		Duration: 20 * time.Second, Warmup: time.Second, Seed: 1,
	}
}

func (c *SimConfig) setDefaults() error {
	d := DefaultSimConfig()
	if c.Backends == 0 {
		c.Backends = d.Backends
	}
	if c.Workers == 0 {
		c.Workers = d.Workers
	}
	if c.Cost == 0 {
		c.Cost = d.Cost
	}
	if c.Slowdown == 0 {
		c.Slowdown = d.Slowdown
	}
	if c.StallEvery == 0 {
		c.StallEvery = d.StallEvery
	}
	if c.StallFor == 0 {
		c.StallFor = d.StallFor
	}
	if c.DieAfter == 0 {
		c.DieAfter = d.DieAfter
	}
	if c.Concurrency == 0 && c.Rate == 0 {
		c.Concurrency = d.Concurrency
	}
	if c.RTT == 0 {
		c.RTT = d.RTT
	}
	if c.RequestBytes == 0 {
		c.RequestBytes = d.RequestBytes
	}
	if c.Duration == 0 {
		c.Duration = d.Duration
	}
	if c.Warmup == 0 {
		c.Warmup = d.Warmup
	}
	switch {
	case c.Backends < 2 || c.Backends > 256:
		return fmt.Errorf("lb sim: %d backends, want 2 to 256", c.Backends)
	case c.Workers < 1 || c.Workers > 1024:
		return fmt.Errorf("lb sim: %d workers per backend, want 1 to 1024", c.Workers)
	case c.Cost < time.Microsecond:
		return fmt.Errorf("lb sim: cost %v, want at least 1µs", c.Cost)
	case c.Slowdown < 1 || math.IsNaN(c.Slowdown) || c.Slowdown > 1000:
		return fmt.Errorf("lb sim: slowdown %v, want 1 to 1000", c.Slowdown)
	case c.StallFor < 0 || c.StallFor >= c.StallEvery:
		return fmt.Errorf("lb sim: stall %v every %v: the stall must be shorter than its period", c.StallFor, c.StallEvery)
	case c.Concurrency < 0 || c.Concurrency > 100000:
		return fmt.Errorf("lb sim: concurrency %d, want 1 to 100000", c.Concurrency)
	case c.Concurrency == 0 && (c.Rate <= 0 || math.IsNaN(c.Rate) || c.Rate > 1e7):
		return fmt.Errorf("lb sim: open-loop rate %v, want (0, 1e7] requests/s", c.Rate)
	case c.Cores < 0 || c.Cores > 1024:
		return fmt.Errorf("lb sim: %d cores, want 0 to 1024", c.Cores)
	case c.DieAfter < 0:
		return fmt.Errorf("lb sim: negative DieAfter %v", c.DieAfter)
	case c.RTT < 0 || c.RequestBytes < 1 || c.Grace < 0:
		return fmt.Errorf("lb sim: RTT %v, request bytes %d, grace %v", c.RTT, c.RequestBytes, c.Grace)
	case c.Duration <= c.Warmup || c.Warmup < 0 || c.Duration > time.Hour:
		return fmt.Errorf("lb sim: duration %v with warm-up %v", c.Duration, c.Warmup)
	}
	return nil
}

// SimResult is one simulated run.
type SimResult struct {
	Scenario string
	Policy   sched.Policy
	// Requests answered after the warm-up, and their rate.
	Requests uint64
	RPS      float64
	Latency  *Histogram
	// Share is the fraction of the measured requests each backend got.
	Share []float64
	// Removals counts members the scheduler removed for stalling.
	Removals uint64
	// Errors counts measured requests that failed: in the dead scenario,
	// those on the dead backend when the gateway reset its connections.
	Errors uint64
	// Dead scenario: how long after backend 0 stopped the scheduler
	// removed it, and sent it its last connection (-1: never removed).
	RemovedAfter, LastPickAfter time.Duration
}

// The simulation is a discrete-event model: a heap of events ordered by
// time (then by insertion), a fake clock that jumps from one to the next.
type event struct {
	at   time.Duration
	seq  uint64
	kind uint8
	b    int32  // backend
	req  int32  // request slot
	ver  uint64 // evShare: the schedule it belongs to
}

const (
	evSend  = iota // a client sends a request (the SYN reaches the gateway)
	evLand         // the request's bytes land in the backend's ring
	evDone         // a worker finished a request
	evWake         // a stall ended: the backend looks at its ring again
	evTick         // the gateway's reading interval
	evGrace        // a request has waited Grace in the ring
	evShare        // Cores > 0: the next request in service finishes
	evEdge         // Cores > 0: a backend stalls, resumes or dies
)

type eventHeap []event

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || h[i].at == h[j].at && h[i].seq < h[j].seq
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(event)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// simBackend is one backend; it is the scheduler's Load for it, read as
// the gateway would read the ring pointers.
type simBackend struct {
	factor   float64
	stalls   bool
	phase    time.Duration
	deadAt   time.Duration // > 0: stops for good then
	inServ   []int32       // requests its workers hold
	lastPick time.Duration
	waiting  []int32 // requests in the ring, FIFO
	occ      int64
	consumed uint64
	conns    int
	busy     int
	wakeSet  bool
	served   uint64
	// The Drainer's view (Drained): the simulation's clock, the time of
	// the last reading, and the counts.
	clock          *time.Duration
	lastRead       time.Duration
	drained, ended uint64
}

func (b *simBackend) Occupancy() int64 { return b.occ }
func (b *simBackend) Consumed() uint64 { return b.consumed }
func (b *simBackend) Conns() int       { return b.conns }

// Drained and Ended make the model's backend an lb.Drainer, as the
// gateway's RingLoad is: drained counts the bytes of requests that were
// in the ring at the previous reading when a worker took them (a
// request taken on arrival by an idle worker is not), ended the
// connections answered or reset.
func (b *simBackend) Drained() uint64 {
	b.lastRead = *b.clock
	return b.drained
}
func (b *simBackend) Ended() uint64 { return b.ended }

type simReq struct {
	sent    time.Duration
	client  int32
	backend int32
	// inRing: its bytes are still in the ring (not read by a worker nor
	// taken in by the stack after Grace); landed: when they arrived.
	inRing  bool
	landed  time.Duration
	graceAt time.Duration // when the stack takes it in (Grace > 0)
}

type simulation struct {
	cfg      SimConfig
	svc      *sched.Service
	backends []*simBackend
	index    map[*sched.Member]int
	err      error
	events   eventHeap
	seq      uint64
	rng      *rand.Rand
	reqs     []simReq
	free     []int32
	hist     *Histogram
	done     uint64
	errors   uint64
	open     int // open-loop requests sent after the warm-up, not yet answered or failed
	perBE    []uint64
	now      time.Duration // of the event being handled
	removed  time.Duration // dead scenario: when backend 0 was removed
	// Cores > 0: the requests in service, their CPU work left (ns at
	// full speed), when that was last brought up to date, and the
	// version of the pending evShare.
	jobs   []psJob
	psLast time.Duration
	psVer  uint64
}

type psJob struct {
	b, req int32
	left   float64
}

// Simulate runs one scenario under one policy and returns what the
// clients measured. It is deterministic for a given cfg.
func Simulate(cfg SimConfig, scenario string, policy sched.Policy) (SimResult, error) {
	if err := cfg.setDefaults(); err != nil {
		return SimResult{}, err
	}
	s := &simulation{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6c62)), hist: &Histogram{},
		perBE: make([]uint64, cfg.Backends), index: map[*sched.Member]int{}, removed: -1}
	lbc := cfg.LB
	lbc.Policy = policy
	if lbc.Seed == 0 {
		lbc.Seed = cfg.Seed
	}
	lbc.OnRemove = s.onRemove
	svc, err := sched.NewService(simVIP, lbc)
	if err != nil {
		return SimResult{}, err
	}
	s.svc = svc
	for i := 0; i < cfg.Backends; i++ {
		b := &simBackend{factor: 1, clock: &s.now}
		switch scenario {
		case ScenarioEqual:
		case ScenarioSlow:
			if i == 0 {
				b.factor = cfg.Slowdown
			}
		case ScenarioStall:
			if i == 0 {
				b.stalls = true
				// Not aligned with the start or with the warm-up.
				b.phase = cfg.StallEvery / 3
			}
		case ScenarioDead:
			if i == 0 {
				b.deadAt = cfg.Warmup + cfg.DieAfter
			}
		default:
			return SimResult{}, fmt.Errorf("lb sim: unknown scenario %q (want equal, slow, stall or dead)", scenario)
		}
		m, err := svc.Join(simAddr(i), 1, b)
		if err != nil {
			return SimResult{}, err
		}
		s.backends = append(s.backends, b)
		s.index[m] = i
	}
	s.push(event{at: 0, kind: evTick})
	if cfg.Cores > 0 {
		for i, b := range s.backends {
			if b.stalls {
				s.push(event{at: b.phase, kind: evEdge, b: int32(i)})
			}
			if b.deadAt > 0 {
				s.push(event{at: b.deadAt, kind: evEdge, b: int32(i)})
			}
		}
	}
	if cfg.Concurrency > 0 {
		for c := 0; c < cfg.Concurrency; c++ {
			// Spread the clients' first requests over one cost.
			s.push(event{at: time.Duration(s.rng.Int64N(int64(cfg.Cost))), kind: evSend, req: int32(c)})
		}
	} else {
		s.push(event{at: s.interarrival(), kind: evSend, req: -1})
	}
	for len(s.events) > 0 && s.err == nil {
		e := heap.Pop(&s.events).(event)
		// The open loop's arrivals end at Duration; the requests then
		// in flight are answered and counted, as the measured load
		// generator waits for them (a policy's backlog must not be
		// dropped from its latencies), for up to drainFor.
		if e.at > cfg.Duration && (cfg.Concurrency > 0 || s.open == 0 || e.at > cfg.Duration+drainFor) {
			break
		}
		s.now = e.at
		s.handle(e)
	}
	if s.err != nil {
		return SimResult{}, s.err
	}
	s.errors += uint64(s.open) // not answered within drainFor: timed out
	res := SimResult{Scenario: scenario, Policy: policy, Requests: s.done, Latency: s.hist,
		Removals: svc.Metrics().Removals, Errors: s.errors, RemovedAfter: -1, LastPickAfter: -1}
	if d := s.backends[0].deadAt; d > 0 {
		if s.removed >= 0 {
			res.RemovedAfter = s.removed - d
		}
		res.LastPickAfter = s.backends[0].lastPick - d
	}
	res.RPS = float64(s.done) / (cfg.Duration - cfg.Warmup).Seconds()
	for _, n := range s.perBE {
		res.Share = append(res.Share, float64(n)/float64(max(s.done, 1)))
	}
	return res, nil
}

// reqTimeout is the load generator's request timeout: an answer later
// than that is an error, not a latency, and the open loop's last
// requests are waited for that long after Duration (drainFor).
const (
	reqTimeout = DefaultTimeout
	drainFor   = reqTimeout
)

func (s *simulation) push(e event) {
	e.seq = s.seq
	s.seq++
	heap.Push(&s.events, e)
}

func (s *simulation) interarrival() time.Duration {
	return time.Duration(s.rng.ExpFloat64() / s.cfg.Rate * 1e9)
}

func (s *simulation) handle(e event) {
	switch e.kind {
	case evTick:
		next := s.svc.Tick(e.at)
		s.push(event{at: next, kind: evTick})
	case evSend:
		if e.req < 0 { // open loop: schedule the next arrival
			if next := e.at + s.interarrival(); next <= s.cfg.Duration {
				s.push(event{at: next, kind: evSend, req: -1})
			}
		}
		m, err := s.svc.Pick(s.rng.Uint64())
		if err != nil {
			// Every backend removed: the request fails at once; in a
			// closed loop the client tries again after one RTT.
			if e.req >= 0 {
				s.push(event{at: e.at + s.cfg.RTT, kind: evSend, req: e.req})
			}
			return
		}
		bi, ok := s.index[m]
		if !ok {
			s.err = fmt.Errorf("lb sim: Pick returned %v, which the simulation did not join", m.Addr())
			return
		}
		s.backends[bi].conns++ // the gateway counts the conn at Pick
		s.backends[bi].lastPick = e.at
		r := s.newReq(simReq{sent: e.at, client: e.req, backend: int32(bi)})
		if e.req < 0 && e.at >= s.cfg.Warmup {
			s.open++
		}
		s.push(event{at: e.at + s.cfg.RTT, kind: evLand, b: int32(bi), req: r})
	case evLand:
		b := s.backends[e.b]
		b.waiting = append(b.waiting, e.req)
		b.occ += int64(s.cfg.RequestBytes)
		r := &s.reqs[e.req]
		r.inRing, r.graceAt, r.landed = true, e.at+s.cfg.Grace, e.at
		if s.cfg.Grace > 0 {
			s.push(event{at: r.graceAt, kind: evGrace, b: e.b, req: e.req})
		}
		s.start(int(e.b), e.at)
	case evDone:
		s.complete(e.b, e.req, e.at)
	case evWake:
		s.backends[e.b].wakeSet = false
		s.start(int(e.b), e.at)
	case evShare:
		if e.ver == s.psVer {
			s.psFinish(e.at)
		}
	case evEdge:
		// The share of the CPU changes: bring the work up to date with
		// the state before the edge, then plan with the state after.
		s.psAdvance(e.at)
		b := s.backends[e.b]
		if b.stalls && !(b.deadAt > 0 && e.at >= b.deadAt) {
			next := s.nextStall(b, e.at)
			if s.stalled(b, e.at) {
				next = s.stallEnd(b, e.at)
			}
			s.push(event{at: next, kind: evEdge, b: e.b})
		}
		s.psSchedule(e.at)
	case evGrace:
		r := &s.reqs[e.req]
		// The slot may have been reused: only the request this event
		// was scheduled for, still in the ring, is taken in.
		if !r.inRing || r.backend != e.b || r.graceAt != e.at {
			return
		}
		if b := s.backends[e.b]; b.deadAt > 0 && e.at >= b.deadAt {
			return // a dead process takes nothing in
		} else if b.stalls && s.stalled(b, e.at) {
			// A stalled process takes nothing in either.
			r.graceAt = s.stallEnd(b, e.at)
			s.push(event{at: r.graceAt, kind: evGrace, b: e.b, req: e.req})
			return
		}
		s.leaveRing(s.backends[e.b], r)
	}
}

// onRemove is the gateway's side of a removal (lb.Config.OnRemove): it
// resets the member's connections, so every request waiting there or
// being served fails, and a closed-loop client, told by the RST, sends
// its next request half an RTT later.
func (s *simulation) onRemove(m *sched.Member) {
	bi, ok := s.index[m]
	if !ok {
		s.err = fmt.Errorf("lb sim: removal of %v, which the simulation did not join", m.Addr())
		return
	}
	b := s.backends[bi]
	if bi == 0 && b.deadAt > 0 && s.removed < 0 {
		s.removed = s.now
	}
	fail := append(append([]int32(nil), b.waiting...), b.inServ...)
	for _, ri := range fail {
		r := &s.reqs[ri]
		if r.inRing {
			s.leaveRing(b, r)
		}
		if r.sent >= s.cfg.Warmup {
			s.errors++
			if r.client < 0 {
				s.open--
			}
		}
		if r.client >= 0 {
			s.push(event{at: s.now + s.cfg.RTT/2, kind: evSend, req: r.client})
		}
		// The slot is not reused: a stale evDone for it may be queued.
	}
	if s.cfg.Cores > 0 {
		s.psAdvance(s.now)
		kept := s.jobs[:0]
		for _, j := range s.jobs {
			if int(j.b) != bi {
				kept = append(kept, j)
			}
		}
		s.jobs = kept
		s.psSchedule(s.now)
	}
	b.conns -= len(fail)
	b.ended += uint64(len(fail))
	b.busy -= len(b.inServ)
	b.waiting, b.inServ = b.waiting[:0], b.inServ[:0]
}

// complete ends request ri's service on backend bi at now: the answer
// goes back, a closed-loop client sends its next request, the worker
// takes the next one.
func (s *simulation) complete(bi, ri int32, now time.Duration) {
	b := s.backends[bi]
	held := false
	for i, x := range b.inServ {
		if x == ri {
			b.inServ = append(b.inServ[:i], b.inServ[i+1:]...)
			held = true
			break
		}
	}
	if !held {
		return // failed when the gateway reset the member's connections
	}
	b.busy--
	b.conns--
	b.ended++
	b.served++
	r := s.reqs[ri]
	answered := now + s.cfg.RTT/2
	if r.sent >= s.cfg.Warmup {
		if answered-r.sent > reqTimeout {
			s.errors++ // the client gave up before it came
		} else {
			s.hist.Record(answered - r.sent)
			s.done++
			s.perBE[bi]++
		}
		if r.client < 0 {
			s.open--
		}
	}
	if r.client >= 0 {
		s.push(event{at: answered, kind: evSend, req: r.client})
	}
	s.free = append(s.free, ri)
	s.start(int(bi), now)
}

// running reports whether backend b's process runs at t (not stalled,
// not dead).
func (s *simulation) running(b *simBackend, t time.Duration) bool {
	return !(b.deadAt > 0 && t >= b.deadAt) && !(b.stalls && s.stalled(b, t))
}

// psAdvance brings the work left of every request in service up to now,
// at the shared speed of the interval since the last update (nothing
// started, ended, stalled or resumed in between: each is an event that
// calls this first).
func (s *simulation) psAdvance(now time.Duration) {
	if now <= s.psLast {
		return
	}
	n := 0
	for _, j := range s.jobs {
		if s.running(s.backends[j.b], s.psLast) {
			n++
		}
	}
	if n > 0 {
		speed := min(1, float64(s.cfg.Cores)/float64(n))
		done := float64(now-s.psLast) * speed
		for i := range s.jobs {
			if s.running(s.backends[s.jobs[i].b], s.psLast) {
				s.jobs[i].left -= done
			}
		}
	}
	s.psLast = now
}

// psSchedule (re)plans the next completion among the running requests.
func (s *simulation) psSchedule(now time.Duration) {
	s.psVer++
	n, least := 0, math.Inf(1)
	for _, j := range s.jobs {
		if s.running(s.backends[j.b], now) {
			n++
			least = min(least, j.left)
		}
	}
	if n == 0 {
		return
	}
	speed := min(1, float64(s.cfg.Cores)/float64(n))
	s.push(event{at: now + time.Duration(math.Ceil(max(least, 0)/speed)), kind: evShare, ver: s.psVer})
}

// psFinish completes the requests whose work is done.
func (s *simulation) psFinish(now time.Duration) {
	s.psAdvance(now)
	var done []psJob
	kept := s.jobs[:0]
	for _, j := range s.jobs {
		if j.left <= 0.5 && s.running(s.backends[j.b], now) {
			done = append(done, j)
		} else {
			kept = append(kept, j)
		}
	}
	s.jobs = kept
	for _, j := range done {
		s.complete(j.b, j.req, now)
	}
	s.psSchedule(now)
}

func (s *simulation) newReq(r simReq) int32 {
	if n := len(s.free); n > 0 {
		i := s.free[n-1]
		s.free = s.free[:n-1]
		s.reqs[i] = r
		return i
	}
	s.reqs = append(s.reqs, r)
	return int32(len(s.reqs) - 1)
}

// start lets free workers of backend bi take requests from its ring.
func (s *simulation) start(bi int, now time.Duration) {
	b := s.backends[bi]
	for b.busy < s.cfg.Workers && len(b.waiting) > 0 {
		if b.deadAt > 0 && now >= b.deadAt {
			return
		}
		if b.stalls && s.stalled(b, now) {
			if !b.wakeSet {
				b.wakeSet = true
				s.push(event{at: s.stallEnd(b, now), kind: evWake, b: int32(bi)})
			}
			return
		}
		r := b.waiting[0]
		b.waiting = b.waiting[1:]
		if rr := &s.reqs[r]; rr.inRing {
			s.leaveRing(b, rr)
		}
		b.busy++
		b.inServ = append(b.inServ, r)
		work := s.serviceTime(b)
		if s.cfg.Cores > 0 {
			s.psAdvance(now)
			s.jobs = append(s.jobs, psJob{b: int32(bi), req: r, left: float64(work)})
			s.psSchedule(now)
			continue
		}
		s.push(event{at: s.finish(b, now, work), kind: evDone, b: int32(bi), req: r})
	}
}

// leaveRing takes r's bytes out of b's ring: consumed, as the gateway
// sees the tail move.
func (s *simulation) leaveRing(b *simBackend, r *simReq) {
	r.inRing = false
	if r.landed <= b.lastRead {
		b.drained += uint64(s.cfg.RequestBytes)
	}
	b.occ -= int64(s.cfg.RequestBytes)
	b.consumed += uint64(s.cfg.RequestBytes)
}

// serviceTime is half fixed, half exponential (or all fixed), times the
// backend's factor.
func (s *simulation) serviceTime(b *simBackend) time.Duration {
	c := float64(s.cfg.Cost) * b.factor
	if s.cfg.FixedCost {
		return time.Duration(c)
	}
	return time.Duration(c/2 + s.rng.ExpFloat64()*c/2)
}

func (s *simulation) stalled(b *simBackend, t time.Duration) bool {
	if t < b.phase {
		return false
	}
	return (t-b.phase)%s.cfg.StallEvery < s.cfg.StallFor
}

func (s *simulation) stallEnd(b *simBackend, t time.Duration) time.Duration {
	return t + s.cfg.StallFor - (t-b.phase)%s.cfg.StallEvery
}

func (s *simulation) nextStall(b *simBackend, t time.Duration) time.Duration {
	if t < b.phase {
		return b.phase
	}
	return t - (t-b.phase)%s.cfg.StallEvery + s.cfg.StallEvery
}

// finish is when work started at now completes: a stalled backend makes
// no progress during its stalls.
func (s *simulation) finish(b *simBackend, now, work time.Duration) time.Duration {
	if b.deadAt > 0 && now+work > b.deadAt {
		return s.cfg.Duration + time.Hour // never, as far as the run goes
	}
	if !b.stalls {
		return now + work
	}
	t := now
	for {
		if s.stalled(b, t) {
			t = s.stallEnd(b, t)
		}
		ns := s.nextStall(b, t)
		if t+work <= ns {
			return t + work
		}
		work -= ns - t
		t = ns
	}
}
