package lb

import (
	"bytes"
	"encoding/xml"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	sched "github.com/ultcp/ultcp/gateway/lb"
)

// shortSim is the default model over 3 simulated seconds.
func shortSim() SimConfig {
	c := DefaultSimConfig()
	c.Duration, c.Warmup = 3*time.Second, 500*time.Millisecond
	return c
}

func TestSimulateIsRepeatable(t *testing.T) {
	a, err := Simulate(shortSim(), ScenarioSlow, sched.Queue)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Simulate(shortSim(), ScenarioSlow, sched.Queue)
	if err != nil {
		t.Fatal(err)
	}
	if a.Requests != b.Requests || a.Latency.Quantile(0.99) != b.Latency.Quantile(0.99) {
		t.Fatalf("two runs of one seed differ: %d/%v and %d/%v", a.Requests, a.Latency.Quantile(0.99), b.Requests, b.Latency.Quantile(0.99))
	}
}

func TestSimRoundRobinGivesEachBackendAQuarter(t *testing.T) {
	r, err := Simulate(shortSim(), ScenarioEqual, sched.RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range r.Share {
		if s < 0.24 || s > 0.26 {
			t.Errorf("backend %d answered %.3f of the requests, want 0.25", i, s)
		}
	}
}

func TestSimQueueSendsLittleToSlowBackend(t *testing.T) {
	r, err := Simulate(shortSim(), ScenarioSlow, sched.Queue)
	if err != nil {
		t.Fatal(err)
	}
	// At a quarter of the others' speed its fair share of the capacity
	// is 1/13; round robin would give it 1/4.
	if r.Share[0] > 0.15 {
		t.Fatalf("the 4× slower backend answered %.3f of the requests under queue, want ≤ 0.15", r.Share[0])
	}
}

func TestSimClosedLoopRoundRobinIsBoundBySlowBackend(t *testing.T) {
	// 16 clients, round robin: every fourth request waits for the slow
	// backend, so the pool runs at 4 × its rate of 250/s = 1000/s.
	r, err := Simulate(shortSim(), ScenarioSlow, sched.RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS < 950 || r.RPS > 1050 {
		t.Fatalf("round robin with a 4× slower backend: %.0f req/s, want ~1000", r.RPS)
	}
}

func TestSimStalledBackendMakesNoProgressDuringStall(t *testing.T) {
	s := &simulation{cfg: DefaultSimConfig()}
	b := &simBackend{stalls: true, phase: 100 * time.Millisecond}
	// Stalls [100, 150) ms, [600, 650) ms. Work of 20 ms started at 90 ms:
	// 10 ms before the stall, 10 after it.
	if got := s.finish(b, 90*time.Millisecond, 20*time.Millisecond); got != 160*time.Millisecond {
		t.Fatalf("finish = %v, want 160ms", got)
	}
	// Started inside the stall: nothing until 150 ms.
	if got := s.finish(b, 120*time.Millisecond, 5*time.Millisecond); got != 155*time.Millisecond {
		t.Fatalf("finish = %v, want 155ms", got)
	}
	// Long work crosses two stalls.
	if got := s.finish(b, 0, 700*time.Millisecond); got != 800*time.Millisecond {
		t.Fatalf("finish = %v, want 800ms", got)
	}
}

func TestSimOpenLoopAnswersTheOfferedRate(t *testing.T) {
	c := shortSim()
	c.Concurrency, c.Rate = 0, 2000
	r, err := Simulate(c, ScenarioEqual, sched.LeastConn)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS < 1850 || r.RPS > 2150 {
		t.Fatalf("open loop at 2000/s answered %.0f/s", r.RPS)
	}
}

// Round robin over a pool with a member four times slower sends it more
// than it can serve: its queue grows for the whole run. Every arrival is
// still accounted for, as answered or as an error: answers later than
// the load generator's 5 s timeout are errors, and the requests in
// flight when the arrivals end are waited for.
func TestSimOpenLoopAccountsForEveryArrival(t *testing.T) {
	c := DefaultSimConfig()
	c.Duration, c.Warmup = 12*time.Second, 500*time.Millisecond
	c.Concurrency, c.Rate = 0, 2600 // 650/s to a member that serves 250/s
	r, err := Simulate(c, ScenarioSlow, sched.RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	want := c.Rate * (c.Duration - c.Warmup).Seconds() // 29 900, sd 173
	if got := float64(r.Requests + r.Errors); math.Abs(got-want) > 0.03*want {
		t.Fatalf("%d answered + %d errors = %.0f, want every arrival, about %.0f", r.Requests, r.Errors, got, want)
	}
	if r.Errors == 0 || r.Latency.Quantile(1) > reqTimeout {
		t.Fatalf("%d errors, slowest answer %v: want timeouts, and no answer counted past %v", r.Errors, r.Latency.Quantile(1), reqTimeout)
	}
}

// With FixedCost and no queueing (one request at a time) every latency
// is the cost plus one RTT (handshake, then request and answer): the
// shortest and the longest fall in the same 1.6 % bucket.
func TestSimFixedCostIsExact(t *testing.T) {
	c := shortSim()
	c.FixedCost, c.Concurrency = true, 1
	r, err := Simulate(c, ScenarioEqual, sched.LeastConn)
	if err != nil {
		t.Fatal(err)
	}
	want := c.Cost + c.RTT + c.RTT/2
	lo, hi := r.Latency.Quantile(0), r.Latency.Quantile(1)
	if float64(lo) < 0.98*float64(want) || float64(hi) > 1.02*float64(want) {
		t.Fatalf("latencies %v to %v, want all near %v", lo, hi, want)
	}
}

func TestSimRejectsBadConfig(t *testing.T) {
	for _, c := range []struct {
		mod  func(*SimConfig)
		want string
	}{
		{func(c *SimConfig) { c.StallFor = c.StallEvery }, "shorter than its period"},
		{func(c *SimConfig) { c.Backends = 1 }, "1 backends"},
		{func(c *SimConfig) { c.Concurrency, c.Rate = 0, -1 }, "open-loop rate"},
		{func(c *SimConfig) { c.Warmup = c.Duration }, "warm-up"},
	} {
		cfg := DefaultSimConfig()
		c.mod(&cfg)
		if _, err := Simulate(cfg, ScenarioEqual, sched.Queue); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v, want an error containing %q", err, c.want)
		}
	}
	if _, err := Simulate(DefaultSimConfig(), "flaky", sched.Queue); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("scenario flaky: %v", err)
	}
}

func TestChecksJudgeTargets(t *testing.T) {
	var r Results
	h := func(ms float64) *Histogram {
		var x Histogram
		x.Record(time.Duration(ms * 1e6))
		return &x
	}
	r.Add(ScenarioSlow, "queue", 1000, h(10), 0, nil)
	r.Add(ScenarioSlow, "roundrobin", 1000, h(30), 0, nil)
	r.Add(ScenarioSlow, "leastconn", 1000, h(9), 0, nil)
	r.Add(ScenarioEqual, "queue", 950, h(1), 0, nil)
	r.Add(ScenarioEqual, "roundrobin", 1000, h(1), 0, nil)
	got := map[string]bool{}
	for _, c := range r.Checks() {
		got[c.Target] = c.Met
	}
	want := map[string]bool{
		"slow: queue p99 ≤ 0.5 × roundrobin p99":      true,  // 10 ≤ 15
		"slow: queue p99 ≤ leastconn p99":             false, // 10 > 9
		"equal: queue req/s ≥ 0.9 × roundrobin req/s": true,  // 950 ≥ 900
	}
	if len(got) != len(want) {
		t.Fatalf("checks %v, want %v", got, want)
	}
	for k, v := range want {
		if m, ok := got[k]; !ok || m != v {
			t.Errorf("%s: met=%v (present %v), want %v", k, m, ok, v)
		}
	}
}

func TestCDFPlotIsSVGWithACurvePerRun(t *testing.T) {
	r, err := SimulateAll(shortSim(), []string{ScenarioEqual, ScenarioSlow}, []sched.Policy{sched.Queue, sched.RoundRobin})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := r.WriteCDFSVG(&buf); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&buf)
	lines := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatalf("not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "polyline" {
			lines++
		}
	}
	if lines != 4 {
		t.Fatalf("%d curves, want 4 (2 scenarios × 2 policies)", lines)
	}
}

func BenchmarkSimulate(b *testing.B) {
	c := shortSim()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Simulate(c, ScenarioSlow, sched.Queue); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSimGraceTakesAWaitingRequestOutOfTheRing(t *testing.T) {
	cfg := DefaultSimConfig()
	cfg.Grace = 5 * time.Millisecond
	if err := cfg.setDefaults(); err != nil {
		t.Fatal(err)
	}
	b := &simBackend{factor: 1, busy: 1} // its one worker is busy
	s := &simulation{cfg: cfg, backends: []*simBackend{b}, reqs: []simReq{{backend: 0}}, rng: rand.New(rand.NewPCG(1, 2))}
	s.handle(event{at: 0, kind: evLand, b: 0, req: 0})
	if b.occ != 100 || b.consumed != 0 {
		t.Fatalf("after landing: occupancy %d, consumed %d; want 100, 0", b.occ, b.consumed)
	}
	s.handle(event{at: 5 * time.Millisecond, kind: evGrace, b: 0, req: 0})
	if b.occ != 0 || b.consumed != 100 || len(b.waiting) != 1 {
		t.Fatalf("after the grace: occupancy %d, consumed %d, waiting %d; want 0, 100, 1", b.occ, b.consumed, len(b.waiting))
	}
	// The worker frees up and serves it: the ring does not count it twice.
	b.busy = 0
	s.start(0, 6*time.Millisecond)
	if b.occ != 0 || b.consumed != 100 || b.busy != 1 {
		t.Fatalf("after the worker took it: occupancy %d, consumed %d, busy %d; want 0, 100, 1", b.occ, b.consumed, b.busy)
	}
}

func TestSimDeadBackendIsRemovedAndQueueStopsSendingWithinMilliseconds(t *testing.T) {
	c := shortSim()
	c.Concurrency, c.Rate, c.DieAfter = 0, 2600, time.Second
	q, err := Simulate(c, ScenarioDead, sched.Queue)
	if err != nil {
		t.Fatal(err)
	}
	rr, err := Simulate(c, ScenarioDead, sched.RoundRobin)
	if err != nil {
		t.Fatal(err)
	}
	// Removed at the first reading 250 ms (StallTimeout) after its last
	// progress: the request it finished or took last, a little before it
	// stopped (it stops in mid-request).
	for _, r := range []SimResult{q, rr} {
		if r.RemovedAfter < 245*time.Millisecond || r.RemovedAfter > 252*time.Millisecond {
			t.Errorf("%v: removed %v after it stopped, want 245ms to 252ms", r.Policy, r.RemovedAfter)
		}
	}
	// queue sees the ring stop draining once it holds a request the
	// backend does not take (an empty ring looks idle), and its stall
	// time outgrows the others' delays within milliseconds; roundrobin
	// sends it every fourth connection until the removal.
	if q.LastPickAfter > 10*time.Millisecond {
		t.Errorf("queue sent the stopped backend a connection %v after it stopped, want ≤ 10ms", q.LastPickAfter)
	}
	if rr.LastPickAfter < 240*time.Millisecond {
		t.Errorf("roundrobin's last connection to it %v after it stopped, want ≥ 240ms", rr.LastPickAfter)
	}
	if q.Errors >= rr.Errors {
		t.Errorf("failed requests: queue %d, roundrobin %d; want fewer under queue", q.Errors, rr.Errors)
	}
}

func TestSimSharedCoresBoundThroughput(t *testing.T) {
	// Four single-worker backends at 1 ms a request on one shared CPU:
	// the pool answers at most 1000 requests a second, and nearly that
	// when 16 clients keep it busy.
	c := shortSim()
	c.Cores = 1
	r, err := Simulate(c, ScenarioEqual, sched.LeastConn)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS > 1010 || r.RPS < 950 {
		t.Fatalf("%.0f req/s on one shared core, want 950 to 1010", r.RPS)
	}
	// Two cores: twice that.
	c.Cores = 2
	if r, err = Simulate(c, ScenarioEqual, sched.LeastConn); err != nil {
		t.Fatal(err)
	}
	if r.RPS > 2020 || r.RPS < 1900 {
		t.Fatalf("%.0f req/s on two shared cores, want 1900 to 2020", r.RPS)
	}
}

func TestSimSharedCoresPauseStalledBackend(t *testing.T) {
	c := shortSim()
	c.Cores = 2
	for _, sc := range []string{ScenarioStall, ScenarioDead} {
		r, err := Simulate(c, sc, sched.Queue)
		if err != nil {
			t.Fatal(err)
		}
		if r.Requests == 0 || r.Share[0] >= 0.25 {
			t.Fatalf("%s on shared cores: %d requests, backend 0 answered %.3f, want requests and < 0.25", sc, r.Requests, r.Share[0])
		}
	}
}
