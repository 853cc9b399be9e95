package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	benchlb "github.com/ultcp/ultcp/bench/lb"
	"github.com/ultcp/ultcp/gateway/lb"
)

// benchLBFlags are the flags of `ultcp bench lb`.
type benchLBFlags struct {
	simulate  bool
	quick     bool
	json      string
	plot      string
	scenarios string
	policies  string
	sim       benchlb.SimConfig
	m         lbMeasured // the measured run and its processes (benchlbrun.go)
}

func newBenchLBFlags(w io.Writer) (*flag.FlagSet, *benchLBFlags) {
	fs := flag.NewFlagSet("ultcp bench lb", flag.ContinueOnError)
	fs.SetOutput(w)
	f := &benchLBFlags{sim: benchlb.DefaultSimConfig()}
	var names []string
	for _, p := range lb.Policies {
		names = append(names, p.String())
	}
	d := f.sim
	fs.BoolVar(&f.simulate, "simulate", false, "run the in-process model of the pool (package bench/lb) instead of real backends behind the gateway")
	fs.BoolVar(&f.quick, "quick", false, "short runs: 5 simulated seconds per run, or 3 measured seconds after 1 s of warm-up (the whole measured run in under two minutes)")
	fs.StringVar(&f.m.role, "role", "", "internal: `backend` (a node serving --vip) or loadgen (the load generator the measured run starts in ext)")
	fs.StringVar(&f.m.vip, "vip", "10.77.255.1:80", "measured run: the service's `address:port`")
	fs.BoolVar(&f.m.spin, "spin", false, "measured run: backends spin the CPU for a request's cost instead of sleeping (on a machine with fewer cores than backends they then slow each other)")
	fs.DurationVar(&f.m.settle, "settle", 500*time.Millisecond, "measured run: wait after the gateway starts, for it to find the pool")
	fs.DurationVar(&f.m.grace, "node-grace", 100*time.Millisecond, "measured run: the backends' ultcp Config.Grace, how long a request may wait unread in its ring before the stack takes it out and acknowledges it (the stack's default is 5ms; 100ms keeps waiting requests visible to the queue policy and stays below Linux's 200 ms minimum RTO)")
	fs.StringVar(&f.m.gwFlags, "gateway-flags", "", "measured run: extra `FLAGS` for every gateway it starts, space-separated (diagnosis: --capture, --cpuprofile, --metrics, --spin)")
	fs.StringVar(&f.m.procs, "gomaxprocs", "", "measured run: GOMAXPROCS of the processes it starts, `N` for all or ROLE=N,... (roles gateway, backend, loadgen; empty: the Go default, one per CPU)")
	fs.IntVar(&f.m.rounds, "rounds", 3, "measured run: split each policy's --duration into this many turns, interleaved with the other policies' (1 with --quick)")
	fs.StringVar(&f.m.fabric, "fabric", "", "--role backend: fabric `name`")
	fs.StringVar(&f.m.addr, "addr", "", "--role backend: the node's `address`")
	fs.StringVar(&f.m.name, "name", "", "--role backend: the name it answers with")
	fs.StringVar(&f.m.target, "target", "", "--role loadgen: the service `address:port`")
	fs.Int64Var(&f.m.epoch, "epoch", 0, "--role backend and loadgen: the stall clock's zero, Unix `nanoseconds` (the loadgen starts its measured run at a whole number of --stall-every after it)")
	fs.Uint64Var(&f.m.requests, "requests", 0, "--role loadgen: stop after this many requests (0: at --duration)")
	fs.StringVar(&f.json, "json", "", "also write {\"runs\": [...]} to `FILE`")
	fs.StringVar(&f.plot, "plot", "", "draw the latency CDFs into `FILE`.svg")
	fs.StringVar(&f.scenarios, "scenarios", strings.Join(benchlb.Scenarios, ","), "comma-separated `LIST` of scenarios (also: dead)")
	fs.StringVar(&f.policies, "policies", strings.Join(names, ","), "comma-separated `LIST` of policies")
	fs.IntVar(&f.sim.Backends, "backends", d.Backends, "backends in the pool")
	fs.IntVar(&f.sim.Workers, "workers", d.Workers, "requests one backend serves at once")
	fs.IntVar(&f.sim.Cores, "cores", 0, "CPUs the backends share, as spinning backends on a small machine do (0: a CPU per worker)")
	fs.DurationVar(&f.sim.Cost, "cost", d.Cost, "mean service time of a request")
	fs.BoolVar(&f.sim.FixedCost, "fixed-cost", true, "model: every request costs exactly --cost (the measured backends' sleep); false: half fixed, half exponential")
	fs.Float64Var(&f.sim.Slowdown, "slowdown", d.Slowdown, "cost factor of backend 0 in the slow scenario")
	fs.DurationVar(&f.sim.StallEvery, "stall-every", d.StallEvery, "period of backend 0's stalls in the stall scenario")
	fs.DurationVar(&f.sim.StallFor, "stall-for", d.StallFor, "length of each stall")
	fs.DurationVar(&f.sim.DieAfter, "die-after", d.DieAfter, "in the dead scenario, backend 0 stops for good this long after the warm-up")
	fs.IntVar(&f.sim.Concurrency, "concurrency", d.Concurrency, "clients in a closed loop (0: open loop at --rate)")
	fs.Float64Var(&f.sim.Rate, "rate", 0, "open-loop requests per second (with --concurrency 0)")
	fs.DurationVar(&f.sim.RTT, "rtt", d.RTT, "round trip between client and backend")
	fs.DurationVar(&f.sim.Grace, "grace", 0, "model a node stack that takes a request out of the ring after it waited this long unread (ultcp's Config.Grace is 5ms; 0: never)")
	fs.DurationVar(&f.sim.Duration, "duration", d.Duration, "simulated time per run")
	fs.DurationVar(&f.sim.Warmup, "warmup", d.Warmup, "simulated time not measured at the start of each run")
	fs.Uint64Var(&f.sim.Seed, "seed", d.Seed, "random seed of the model and the scheduler")
	fs.DurationVar(&f.sim.LB.Interval, "lb-interval", lb.DefaultInterval, "scheduler: interval between readings of the rings")
	fs.DurationVar(&f.sim.LB.Smoothing, "lb-smoothing", lb.DefaultSmoothing, "scheduler: time constant of the backlog EWMA")
	fs.DurationVar(&f.sim.LB.RateSmoothing, "lb-rate-smoothing", lb.DefaultRateSmoothing, "scheduler: time constant of the drain-rate EWMA")
	fs.Float64Var(&f.sim.LB.Slack, "lb-slack", lb.DefaultSlack, "scheduler: members within this fraction of the best are equal")
	fs.DurationVar(&f.sim.LB.StallTimeout, "lb-stall-timeout", lb.DefaultStallTimeout, "scheduler: remove a member that consumed nothing for this long")
	return fs, f
}

func benchLBUsage(w io.Writer) {
	fs, _ := newBenchLBFlags(w)
	fmt.Fprintln(w, "\nusage: ultcp bench lb [--simulate] [--quick] [--json FILE] [--plot FILE.svg] [flags]\n\nwithout --simulate: N backend nodes behind the gateway (in a network namespace the run makes), the load\ngenerator in a second one (ext) over Linux TCP; needs root.\n\nscenarios: equal (alike), slow (backend 0 slowed), stall (backend 0 stalls periodically),\n           dead (backend 0 stops for good; not run unless named)\n\nboth the measured run and the model default to requests of 5ms (--cost, fixed) arriving at 480/s (--rate,\nPoisson); the defaults listed below are the model's own where these are not given.\n\nflags:")
	fs.PrintDefaults()
}

// runBenchLB is `ultcp bench lb`: the load-balancing comparison of issue
// 8, measured through the gateway (benchlbrun.go) or simulated.
func runBenchLB(args []string, stdout, stderr io.Writer) int {
	fs, f := newBenchLBFlags(stderr)
	fs.Usage = func() { benchLBUsage(stderr) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ultcp bench lb: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	switch f.m.role {
	case "":
	case "backend":
		return runLBBackend(f, stdout, stderr)
	case "loadgen":
		return runLBLoadgen(f, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "ultcp bench lb: --role %q: want backend or loadgen\n", f.m.role)
		return 2
	}
	if f.plot != "" && !strings.HasSuffix(f.plot, ".svg") {
		fmt.Fprintf(stderr, "ultcp bench lb: --plot %s: only SVG is drawn (name the file .svg)\n", f.plot)
		return 2
	}
	scenarios, err := splitList(f.scenarios, append(benchlb.Scenarios[:len(benchlb.Scenarios):len(benchlb.Scenarios)], benchlb.ScenarioDead))
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb: --scenarios: %v\n", err)
		return 2
	}
	var policies []lb.Policy
	for _, name := range strings.Split(f.policies, ",") {
		p, err := lb.ParsePolicy(strings.TrimSpace(name))
		if err != nil {
			fmt.Fprintf(stderr, "ultcp bench lb: --policies: %v\n", err)
			return 2
		}
		policies = append(policies, p)
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	switch {
	case set["rate"] && set["concurrency"] && f.sim.Concurrency > 0:
		fmt.Fprintln(stderr, "ultcp bench lb: --rate is the open loop, --concurrency the closed one: give one")
		return 2
	case set["rate"]:
		f.sim.Concurrency = 0
	}
	// Measured or modelled, the pool is by default the one docs/lb.md's
	// "Parameters" explains: requests of 5 ms, Poisson arrivals at 480/s
	// (the model's own defaults, 1 ms and 16 clients, made this 2-CPU
	// machine's scheduling the measurement).
	if !set["cost"] {
		f.sim.Cost = lbMeasuredCost
	}
	if !set["concurrency"] && !set["rate"] {
		f.sim.Concurrency, f.sim.Rate = 0, lbMeasuredRate
	}
	if !f.simulate {
		if slices.Contains(scenarios, benchlb.ScenarioDead) {
			fmt.Fprintln(stderr, "ultcp bench lb: scenario dead is simulated only (test/interop's lb_test kills a real backend)")
			return 2
		}
		return runBenchLBMeasured(f, set, args, scenarios, policies, stdout, stderr)
	}
	cfg := f.sim
	if f.quick {
		cfg.Duration, cfg.Warmup = 5*time.Second, 500*time.Millisecond
	}
	start := time.Now()
	res, err := benchlb.SimulateAll(cfg, scenarios, policies)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb: %v\n", err)
		return 2
	}
	res.Command = strings.TrimSpace("ultcp bench lb " + strings.Join(args, " "))
	load := fmt.Sprintf("closed loop of %d clients", cfg.Concurrency)
	if cfg.Concurrency == 0 {
		load = fmt.Sprintf("open loop at %.0f requests/s", cfg.Rate)
	}
	costShape := "half fixed, half exponential"
	if cfg.FixedCost {
		costShape = "fixed"
	}
	res.Notes = []string{
		"a model, not a measurement: bench/lb's discrete-event simulation driving gateway/lb on a fake clock",
		fmt.Sprintf("%d backends × %d worker, cost %v (%s), %s, RTT %v, %v per run after %v warm-up, seed %d",
			cfg.Backends, cfg.Workers, cfg.Cost, costShape, load, cfg.RTT, cfg.Duration-cfg.Warmup, cfg.Warmup, cfg.Seed),
		fmt.Sprintf("slow: backend 0 × %g; stall: backend 0 stops %v every %v; dead: backend 0 stops %v after the warm-up", cfg.Slowdown, cfg.StallFor, cfg.StallEvery, cfg.DieAfter),
	}
	if cfg.Cores > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the backends share %d CPUs (processor sharing)", cfg.Cores))
	}
	if cfg.Grace > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("a node's stack takes a request out of its ring after %v unread", cfg.Grace))
	}
	return writeLBResults(f, res, start, stdout, stderr)
}

// writeLBResults prints the table and the checks and writes
// --json and --plot.
func writeLBResults(f *benchLBFlags, res *benchlb.Results, start time.Time, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "%s  (%s, %.1f s)\n", res.Command, start.UTC().Format(time.RFC3339), time.Since(start).Seconds())
	for _, n := range res.Notes {
		fmt.Fprintf(stdout, "  %s\n", n)
	}
	fmt.Fprintln(stdout)
	t := res.Table()
	t.WriteText(stdout)
	fmt.Fprintln(stdout)
	if dt, ok := res.DeadTable(); ok {
		dt.WriteText(stdout)
		fmt.Fprintln(stdout)
	}
	if c := res.CheckTable(); len(c.Rows) > 0 {
		c.WriteText(stdout)
	}
	if err := writeResults(f.json, res, f.plot, res.WriteCDFSVG); err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb: %v\n", err)
		return 1
	}
	return 0
}

// runBenchLBMeasured is the measured run (benchlbrun.go) with its notes.
func runBenchLBMeasured(f *benchLBFlags, set map[string]bool, args, scenarios []string, policies []lb.Policy, stdout, stderr io.Writer) int {
	if f.quick {
		f.sim.Duration, f.sim.Warmup, f.m.rounds = 3*time.Second, time.Second, 1
	} else if !set["duration"] {
		f.sim.Duration = 12 * time.Second // per policy; the model's 20 s is simulated time
	}
	if !set["gomaxprocs"] {
		f.m.procs = lbMeasuredProcs
	}
	start := time.Now()
	res, err := runLBMeasured(f, scenarios, policies, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb: %v\n", err)
		return 1
	}
	res.Command = strings.TrimSpace("ultcp bench lb " + strings.Join(args, " "))
	cost := "sleeps"
	if f.m.spin {
		cost = "spins the CPU"
	}
	load := fmt.Sprintf("closed loop of %d clients", f.sim.Concurrency)
	if f.sim.Concurrency == 0 {
		load = fmt.Sprintf("open loop at %.0f requests/s", f.sim.Rate)
	}
	res.Notes = []string{
		"measured: N ultcp backend nodes (processes) behind the ultcp gateway (in its own network namespace, TUN), load from Linux TCP in the ext namespace, a fresh connection per request",
		fmt.Sprintf("%d backends × %d worker at %s, each request %s for %v; %s; %v per policy in %d interleaved turns, each after a %v warm-up with the gateway started afresh; backends' Grace %v",
			f.sim.Backends, f.sim.Workers, f.m.vip, cost, f.sim.Cost, load, f.sim.Duration, max(f.m.rounds, 1), f.sim.Warmup, f.m.grace),
		fmt.Sprintf("slow: backend 0 × %g; stall: backend 0 stops %v every %v", f.sim.Slowdown, f.sim.StallFor, f.sim.StallEvery),
	}
	return writeLBResults(f, res, start, stdout, stderr)
}

// Defaults of the measured run where they differ from the model's.
//
//   - A request sleeps 5 ms, so that the backends' service time, not the
//     CPU work of a connection through two user-level stacks and Linux
//     (about 0.3 ms of CPU), decides where time goes; 4 single-worker
//     backends then serve 800 requests/s at most, which keeps the 2 CPUs
//     under half busy.
//   - An open loop of Poisson arrivals at 480 requests/s, 60 % of what
//     the pool can serve: fresh connections from many clients that do
//     not wait for each other, the load a balancer in front of a service
//     is given. Requests then arrive together now and then and the pool
//     is sometimes all busy, so where a policy sends a request decides
//     how long it waits. The earlier default, 4 clients in a closed
//     loop, one per backend, left a free member for nearly every request
//     (each client's previous answer had just freed one): any policy
//     that counts connections picked it, and queue and leastconn
//     differed only by noise (docs/lb.md, "Earlier: the closed loop").
//   - GOMAXPROCS 8 for the gateway, the backends and the load generator:
//     with the Go default of one P per CPU (2 here) the gateway's event
//     loop and its first-contact acceptor, each asleep in a futex system
//     call, hold both Ps, and the goroutine reading the TUN device, parked
//     in the netpoller, is found only by the runtime's sysmon, up to 10 ms
//     later: the "slow mode" of earlier runs (connect p50 8 ms instead of
//     0.4 ms, a third of the throughput at 15 % CPU), drawn per gateway
//     start.
const (
	lbMeasuredCost  = 5 * time.Millisecond
	lbMeasuredRate  = 480
	lbMeasuredProcs = "8"
)

// splitList parses a comma-separated list whose items must be in known.
func splitList(s string, known []string) ([]string, error) {
	var out []string
	for _, x := range strings.Split(s, ",") {
		x = strings.TrimSpace(x)
		ok := false
		for _, k := range known {
			ok = ok || k == x
		}
		if !ok {
			return nil, fmt.Errorf("unknown %q (want some of %s)", x, strings.Join(known, ","))
		}
		out = append(out, x)
	}
	return out, nil
}
