package lb

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/ultcp/ultcp/bench"
	sched "github.com/ultcp/ultcp/gateway/lb"
)

var simVIP = netip.MustParseAddrPort("10.77.255.1:80")

func simAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 1, byte(i + 1)}) }

// Results is what --json writes: {"runs": [...]} as issue 8 asks, with
// where the numbers came from.
type Results struct {
	Command string `json:"command,omitempty"`
	// Mode is "simulated" for the in-process model (SimConfig), or
	// "measured" for real backends and a real load generator.
	Mode  string     `json:"mode"`
	Notes []string   `json:"notes,omitempty"`
	Runs  []Run      `json:"runs"`
	Hists Histograms `json:"-"`
}

// Run is one scenario under one policy.
type Run struct {
	Scenario string  `json:"scenario"`
	Policy   string  `json:"policy"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	P999ms   float64 `json:"p999_ms"`
	Requests uint64  `json:"requests"`
	Errors   uint64  `json:"errors"`
	// Share is the fraction of requests each backend answered (backend
	// 0 is the slowed or stalling one).
	Share []float64 `json:"share,omitempty"`
	// Dead scenario only: how long after backend 0 stopped it was
	// removed (null: never) and received its last connection.
	RemovedAfterMs  *float64 `json:"removed_after_ms,omitempty"`
	LastPickAfterMs *float64 `json:"last_pick_after_ms,omitempty"`
}

// Histograms keeps each run's latency distribution for the plot, keyed
// by scenario and policy.
type Histograms map[[2]string]*Histogram

// Add appends a run computed from h and keeps h for the plot.
func (r *Results) Add(scenario, policy string, rps float64, h *Histogram, errors uint64, share []float64) {
	ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
	r.Runs = append(r.Runs, Run{Scenario: scenario, Policy: policy, RPS: rps,
		P50ms: ms(h.Quantile(0.5)), P99ms: ms(h.Quantile(0.99)), P999ms: ms(h.Quantile(0.999)),
		Requests: h.Count(), Errors: errors, Share: share})
	if r.Hists == nil {
		r.Hists = Histograms{}
	}
	r.Hists[[2]string{scenario, policy}] = h
}

// Find returns the run of scenario and policy.
func (r *Results) Find(scenario, policy string) (Run, bool) {
	for _, x := range r.Runs {
		if x.Scenario == scenario && x.Policy == policy {
			return x, true
		}
	}
	return Run{}, false
}

// Table renders the runs, one row per scenario and policy.
func (r *Results) Table() bench.Table {
	t := bench.Table{Title: "load balancing: " + r.Mode, Header: []string{"scenario", "policy", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "share of backend 0"}}
	for _, x := range r.Runs {
		share := "-"
		if len(x.Share) > 0 {
			share = fmt.Sprintf("%.1f %%", 100*x.Share[0])
		}
		t.Rows = append(t.Rows, []string{x.Scenario, x.Policy, fmt.Sprintf("%.0f", x.RPS),
			fmt.Sprintf("%.2f", x.P50ms), fmt.Sprintf("%.2f", x.P99ms), fmt.Sprintf("%.2f", x.P999ms),
			fmt.Sprint(x.Errors), share})
	}
	return t
}

// DeadTable renders the dead scenario's runs: how fast the policy
// stopped sending to the stopped backend, when the scheduler removed it,
// and how many requests failed. ok is false when there is none.
func (r *Results) DeadTable() (t bench.Table, ok bool) {
	t = bench.Table{Title: "dead: backend 0 stops for good mid-run", Header: []string{"policy", "last connection to it after", "removed after", "failed requests", "p99 ms"}}
	for _, x := range r.Runs {
		if x.Scenario != ScenarioDead {
			continue
		}
		ok = true
		removed, last := "never", "-"
		if x.RemovedAfterMs != nil {
			removed = fmt.Sprintf("%.0f ms", *x.RemovedAfterMs)
		}
		if x.LastPickAfterMs != nil {
			last = fmt.Sprintf("%.1f ms", max(*x.LastPickAfterMs, 0))
		}
		t.Rows = append(t.Rows, []string{x.Policy, last, removed, fmt.Sprint(x.Errors), fmt.Sprintf("%.2f", x.P99ms)})
	}
	return t, ok
}

// Check is one of issue 8's targets, judged on the runs.
type Check struct {
	Target   string
	Met      bool
	Measured string
}

// Checks judges the targets: in the slow and stall scenarios,
// queue's p99 at most half of roundrobin's and at most leastconn's; with
// equal backends, queue's throughput within 10 % of roundrobin's. A
// target whose runs are missing is not reported.
func (r *Results) Checks() []Check {
	var cs []Check
	q, rr, lc := sched.Queue.String(), sched.RoundRobin.String(), sched.LeastConn.String()
	for _, sc := range []string{ScenarioSlow, ScenarioStall} {
		a, ok1 := r.Find(sc, q)
		b, ok2 := r.Find(sc, rr)
		c, ok3 := r.Find(sc, lc)
		if ok1 && ok2 {
			cs = append(cs, Check{Target: sc + ": queue p99 ≤ 0.5 × roundrobin p99", Met: a.P99ms <= 0.5*b.P99ms,
				Measured: fmt.Sprintf("%.2f vs %.2f ms (%.2f×)", a.P99ms, b.P99ms, a.P99ms/b.P99ms)})
		}
		if ok1 && ok3 {
			cs = append(cs, Check{Target: sc + ": queue p99 ≤ leastconn p99", Met: a.P99ms <= c.P99ms,
				Measured: fmt.Sprintf("%.2f vs %.2f ms (%.2f×)", a.P99ms, c.P99ms, a.P99ms/c.P99ms)})
		}
	}
	if a, ok := r.Find(ScenarioEqual, q); ok {
		if b, ok := r.Find(ScenarioEqual, rr); ok {
			cs = append(cs, Check{Target: "equal: queue req/s ≥ 0.9 × roundrobin req/s", Met: a.RPS >= 0.9*b.RPS,
				Measured: fmt.Sprintf("%.0f vs %.0f req/s (%.3f×)", a.RPS, b.RPS, a.RPS/b.RPS)})
		}
	}
	return cs
}

// CheckTable renders Checks.
func (r *Results) CheckTable() bench.Table {
	t := bench.Table{Title: "issue 8 targets (" + r.Mode + ")", Header: []string{"target", "result", "measured"}}
	for _, c := range r.Checks() {
		res := "missed"
		if c.Met {
			res = "met"
		}
		t.Rows = append(t.Rows, []string{c.Target, res, c.Measured})
	}
	return t
}

// SimulateAll runs every scenario under every policy and collects the
// results.
func SimulateAll(cfg SimConfig, scenarios []string, policies []sched.Policy) (*Results, error) {
	r := &Results{Mode: "simulated"}
	for _, sc := range scenarios {
		for _, p := range policies {
			res, err := Simulate(cfg, sc, p)
			if err != nil {
				return nil, err
			}
			r.Add(sc, p.String(), res.RPS, res.Latency, res.Errors, res.Share)
			if sc == ScenarioDead {
				run := &r.Runs[len(r.Runs)-1]
				if res.RemovedAfter >= 0 {
					v := float64(res.RemovedAfter) / 1e6
					run.RemovedAfterMs = &v
				}
				v := float64(res.LastPickAfter) / 1e6
				run.LastPickAfterMs = &v
			}
		}
	}
	return r, nil
}
