package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ultcp/ultcp"
	benchlb "github.com/ultcp/ultcp/bench/lb"
	"github.com/ultcp/ultcp/fabric"
	"github.com/ultcp/ultcp/gateway/lb"
	"github.com/ultcp/ultcp/internal/netns"
)

// The measured run of `ultcp bench lb` (issue 8, Build 5): real backends
// behind the real gateway, load from Linux TCP.
//
//	ext namespace          gw namespace                    root namespace
//	load generator  ──veth──  ultcp gateway (TUN ultcp0)  ══fabric══  N backend nodes
//	(kernel TCP,             --service VIP=POLICY                     listening on VIP
//	 fresh conns)
//
// Both namespaces are made by the run and removed at its end
// (internal/netns); the TUN device and the route to the cluster subnet
// exist only inside gw. The backends are node processes (this binary with
// --role backend): each is an ultcp Stack on the run's own fabric running
// bench/lb's Backend on a listener at the VIP. Per scenario the backends
// start afresh (backend 0 slowed or stalling); per policy the gateway
// starts afresh with that policy, so no run inherits another's readings;
// the load generator (this binary with --role loadgen, inside ext) runs a
// warm-up, then the measured loop (open, Poisson arrivals, by default;
// in the stall scenario started at a whole period of the backends' stall
// clock, --epoch), and prints its LoadReport as JSON.

// Addresses of the measured run.
var (
	lbGWVeth    = netip.MustParsePrefix("192.168.77.1/24")
	lbExtVeth   = netip.MustParsePrefix("192.168.77.2/24")
	lbCluster   = netip.MustParsePrefix("10.77.0.0/16")
	lbGatewayIP = "10.77.0.1"
)

func lbBackendAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 77, 1, byte(i + 1)}) }

// lbMeasured holds what the measured run needs besides the model's flags.
type lbMeasured struct {
	role     string
	vip      string
	fabric   string
	addr     string
	name     string
	spin     bool
	target   string
	requests uint64
	epoch    int64
	rounds   int
	settle   time.Duration
	grace    time.Duration
	gwFlags  string
	procs    string
}

// epochTime is --epoch as a time, zero if unset.
func (m *lbMeasured) epochTime() time.Time {
	if m.epoch == 0 {
		return time.Time{}
	}
	return time.Unix(0, m.epoch)
}

// lbEnv is the environment of a process of the measured run in role:
// this process's, with GOMAXPROCS as --gomaxprocs says for the role.
func (m *lbMeasured) env(role string) ([]string, error) {
	n := ""
	for _, item := range strings.Split(m.procs, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, v, named := strings.Cut(item, "=")
		if !named {
			v = r
		}
		k, err := strconv.Atoi(v)
		if err != nil || k < 1 || k > 1024 {
			return nil, fmt.Errorf("--gomaxprocs %q: want N or ROLE=N with N in [1, 1024]", m.procs)
		}
		if !named || r == role {
			n = v
		} else if r != "gateway" && r != "backend" && r != "loadgen" {
			return nil, fmt.Errorf("--gomaxprocs %q: unknown role %q (want gateway, backend or loadgen)", m.procs, r)
		}
	}
	env := os.Environ()
	if n != "" {
		env = append(env, "GOMAXPROCS="+n)
	}
	return env, nil
}

// runLBBackend is --role backend: one node serving the VIP until SIGTERM.
func runLBBackend(f *benchLBFlags, stdout, stderr io.Writer) int {
	addr, err := netip.ParseAddr(f.m.addr)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role backend: --addr: %v\n", err)
		return 2
	}
	s, err := ultcp.NewStack(ultcp.Config{Addr: addr, Fabric: f.m.fabric, Grace: f.m.grace})
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role backend: %v\n", err)
		return 1
	}
	defer s.Close()
	l, err := s.Listen("tcp", f.m.vip)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role backend: %v\n", err)
		return 1
	}
	be, err := benchlb.NewBackend(benchlb.BackendConfig{Name: f.m.name, Cost: f.sim.Cost, Slowdown: f.sim.Slowdown, Sleep: !f.m.spin,
		StallEvery: f.sim.StallEvery, StallFor: f.sim.StallFor, Workers: f.sim.Workers, Epoch: f.m.epochTime()})
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role backend: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintf(stdout, "serving %s as %v (%s)\n", f.m.vip, addr, f.m.name)
	if err := be.Serve(ctx, l); err != nil && ctx.Err() == nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role backend: %v\n", err)
		return 1
	}
	return 0
}

// runLBLoadgen is --role loadgen: a warm-up, then the measured closed (or
// open) loop against --target over kernel TCP; the LoadReport on stdout.
func runLBLoadgen(f *benchLBFlags, stdout, stderr io.Writer) int {
	cfg := benchlb.LoadConfig{Addr: f.m.target, Concurrency: f.sim.Concurrency, Rate: f.sim.Rate, Seed: f.sim.Seed}
	if f.sim.Warmup > 0 {
		w := cfg
		w.Duration, w.Seed = f.sim.Warmup, ^cfg.Seed // arrivals of their own
		if _, err := benchlb.RunLoad(context.Background(), w); err != nil {
			fmt.Fprintf(stderr, "ultcp bench lb --role loadgen: warm-up: %v\n", err)
			return 1
		}
	}
	if e := f.m.epochTime(); !e.IsZero() && f.sim.StallEvery > 0 {
		// Start at a whole period of the backends' stall clock: every
		// policy then meets the stalls at the same points of the same
		// arrivals, and differs by what it does with them.
		time.Sleep(time.Until(benchlb.NextPeriod(e, time.Now(), f.sim.StallEvery)))
	}
	cfg.Duration, cfg.MaxRequests = f.sim.Duration, f.m.requests
	res, err := benchlb.RunLoad(context.Background(), cfg)
	if err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role loadgen: %v\n", err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(res.Report()); err != nil {
		fmt.Fprintf(stderr, "ultcp bench lb --role loadgen: %v\n", err)
		return 1
	}
	return 0
}

// lbLine is a writer that remembers what was written and signals when a
// line containing want arrives.
type lbLog struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func newLBLog(want string) *lbLog { return &lbLog{want: want, seen: make(chan struct{})} }

func (l *lbLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.buf.Len() < 1<<20 {
		l.buf.Write(b)
	}
	if bytes.Contains(l.buf.Bytes(), []byte(l.want)) {
		l.once.Do(func() { close(l.seen) })
	}
	return len(b), nil
}

func (l *lbLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.buf.String()
	if len(s) > 4096 {
		s = "…" + s[len(s)-4096:]
	}
	return s
}

// lbBackendProc is a backend node process.
type lbBackendProc struct {
	cmd  *exec.Cmd
	log  *lbLog
	done chan struct{}
}

func (p *lbBackendProc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// runLBMeasured is the measured comparison: every scenario under every
// policy, through the gateway.
func runLBMeasured(f *benchLBFlags, scenarios []string, policies []lb.Policy, stdout, stderr io.Writer) (*benchlb.Results, error) {
	if err := netns.Available(); err != nil {
		return nil, fmt.Errorf("the measured run makes network namespaces: %w (--simulate runs the model)", err)
	}
	for _, sc := range scenarios {
		if sc == benchlb.ScenarioDead {
			return nil, errors.New("scenario dead is simulated only (test/interop's lb_test kills a real backend)")
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ext, err := netns.New("ext")
	if err != nil {
		return nil, err
	}
	defer ext.Close()
	gw, err := netns.New("gw")
	if err != nil {
		return nil, err
	}
	defer gw.Close()
	if err := netns.Veth(netns.End{NS: gw, Dev: "veth-ext", Addr: lbGWVeth}, netns.End{NS: ext, Dev: "veth-gw", Addr: lbExtVeth}); err != nil {
		return nil, err
	}
	if err := gw.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	if err := ext.AddRoute(lbCluster, lbGWVeth.Addr()); err != nil {
		return nil, err
	}
	fab := fmt.Sprintf("benchlb-%d", os.Getpid())
	defer os.RemoveAll(filepath.Join(fabric.DefaultRoot, fab))
	res := &benchlb.Results{Mode: "measured"}
	for _, sc := range scenarios {
		// The stall clock's zero, shared by the backends and the load
		// generator (--epoch): in the stall scenario each turn starts at
		// the same phase of the stalls.
		epoch := time.Now()
		backs, err := startLBBackends(f, exe, fab, sc, epoch)
		if err != nil {
			return nil, err
		}
		// Rounds: each policy runs Duration/Rounds at a time, in an
		// order that rotates each round, so that a change in the
		// machine's other load (it is shared) falls on every policy
		// alike rather than on the ones that happened to run then.
		rounds := max(f.m.rounds, 1)
		merged := make([]*benchlb.LoadResult, len(policies))
		for r := range rounds {
			for k := range policies {
				i := (k + r) % len(policies)
				p := policies[i]
				fmt.Fprintf(stderr, "ultcp bench lb: %s / %s (round %d of %d) ...\n", sc, p, r+1, rounds)
				// Every policy of a round gets the same open-loop arrivals.
				align := time.Duration(0)
				if sc == benchlb.ScenarioStall {
					align = f.sim.StallEvery
				}
				rep, err := runLBPolicy(f, exe, fab, gw, ext, p, f.sim.Duration/time.Duration(rounds), f.sim.Seed+uint64(r), epoch, align, stderr)
				if err != nil {
					for _, b := range backs {
						b.stop()
					}
					return nil, fmt.Errorf("%s / %s: %w", sc, p, err)
				}
				got := rep.Result()
				fmt.Fprintf(stderr, "ultcp bench lb:   %.0f req/s, p50 %v p99 %v, %.2f %% over 4× the cost, connect p50 %v p99 %v, errors %d\n",
					float64(got.Requests)/got.Elapsed.Seconds(), got.Latency.Quantile(0.5), got.Latency.Quantile(0.99),
					100*got.Latency.Above(4*f.sim.Cost), got.Connect.Quantile(0.5), got.Connect.Quantile(0.99), got.Errors)
				if m := merged[i]; m == nil {
					merged[i] = &got
				} else {
					m.Requests += got.Requests
					m.Errors += got.Errors
					m.Elapsed += got.Elapsed
					m.Latency.Merge(got.Latency)
					m.Connect.Merge(got.Connect)
					for k, v := range got.ByServer {
						m.ByServer[k] += v
					}
					if m.FirstError == nil {
						m.FirstError = got.FirstError
					}
				}
			}
		}
		for i, p := range policies {
			r := merged[i]
			rps := float64(r.Requests) / r.Elapsed.Seconds()
			share := make([]float64, f.sim.Backends)
			for i := range share {
				if r.Requests > 0 {
					share[i] = float64(r.ByServer[fmt.Sprintf("b%d", i)]) / float64(r.Requests)
				}
			}
			res.Add(sc, p.String(), rps, r.Latency, r.Errors, share)
			if r.Errors > 0 {
				fmt.Fprintf(stderr, "ultcp bench lb: %s / %s: %d errors, first: %v\n", sc, p, r.Errors, r.FirstError)
			}
		}
		for _, b := range backs {
			b.stop()
		}
	}
	return res, nil
}

// startLBBackends starts the scenario's backend processes and waits until
// each serves.
func startLBBackends(f *benchLBFlags, exe, fab, scenario string, epoch time.Time) ([]*lbBackendProc, error) {
	var backs []*lbBackendProc
	fail := func(err error) ([]*lbBackendProc, error) {
		for _, b := range backs {
			b.stop()
		}
		return nil, err
	}
	for i := range f.sim.Backends {
		slow, every, stall := 1.0, time.Duration(0), time.Duration(0)
		if i == 0 {
			switch scenario {
			case benchlb.ScenarioSlow:
				slow = f.sim.Slowdown
			case benchlb.ScenarioStall:
				every, stall = f.sim.StallEvery, f.sim.StallFor
			}
		}
		args := []string{"bench", "lb", "--role", "backend", "--fabric", fab, "--addr", lbBackendAddr(i).String(),
			"--vip", f.m.vip, "--name", fmt.Sprintf("b%d", i), "--cost", f.sim.Cost.String(),
			"--slowdown", strconv.FormatFloat(slow, 'g', -1, 64), "--workers", strconv.Itoa(f.sim.Workers),
			"--stall-every", every.String(), "--stall-for", stall.String(), "--epoch", strconv.FormatInt(epoch.UnixNano(), 10)}
		if f.m.spin {
			args = append(args, "--spin")
		}
		if f.m.grace > 0 {
			args = append(args, "--node-grace", f.m.grace.String())
		}
		log := newLBLog("serving ")
		cmd := exec.Command(exe, args...)
		cmd.Stdout, cmd.Stderr = log, log
		env, err := f.m.env("backend")
		if err != nil {
			return fail(err)
		}
		cmd.Env = env
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			return fail(err)
		}
		b := &lbBackendProc{cmd: cmd, log: log, done: make(chan struct{})}
		go func() { cmd.Wait(); close(b.done) }()
		backs = append(backs, b)
		select {
		case <-log.seen:
		case <-b.done:
			return fail(fmt.Errorf("backend %d exited: %s", i, log))
		case <-time.After(10 * time.Second):
			return fail(fmt.Errorf("backend %d not serving after 10 s: %s", i, log))
		}
	}
	return backs, nil
}

// runLBPolicy starts the gateway with policy p, lets it find the pool,
// runs the load generator in ext and stops the gateway.
func runLBPolicy(f *benchLBFlags, exe, fab string, gw, ext *netns.NS, p lb.Policy, d time.Duration, seed uint64, epoch time.Time, align time.Duration, stderr io.Writer) (benchlb.LoadReport, error) {
	var rep benchlb.LoadReport
	glog := newLBLog("gateway: forwarding")
	runFor := f.sim.Warmup + f.sim.Duration + time.Minute
	args := append([]string{"gateway", "--fabric", fab, "--addr", lbGatewayIP, "--subnet", lbCluster.String(), "--tun", "ultcp0",
		"--service", f.m.vip + "=" + p.String()}, strings.Fields(f.m.gwFlags)...)
	genv, err := f.m.env("gateway")
	if err != nil {
		return rep, err
	}
	gp, err := gw.Start(runFor, func(c *exec.Cmd) { c.Stdout, c.Stderr, c.Env = glog, glog, genv }, exe, args...)
	if err != nil {
		return rep, err
	}
	defer gp.Stop()
	select {
	case <-glog.seen:
	case <-gp.Done():
		return rep, fmt.Errorf("gateway exited: %s", glog)
	case <-time.After(10 * time.Second):
		return rep, fmt.Errorf("gateway not forwarding after 10 s: %s", glog)
	}
	// The gateway reads the pool from the fabric directory every 100 ms.
	time.Sleep(f.m.settle)
	if !strings.Contains(glog.String(), "service member joined") {
		return rep, fmt.Errorf("the gateway found no member of %s: %s", f.m.vip, glog)
	}
	ctx, cancel := context.WithTimeout(context.Background(), runFor)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := ext.Command(ctx, exe, "bench", "lb", "--role", "loadgen", "--target", f.m.vip,
		"--concurrency", strconv.Itoa(f.sim.Concurrency), "--rate", strconv.FormatFloat(f.sim.Rate, 'g', -1, 64),
		"--duration", d.String(), "--warmup", f.sim.Warmup.String(), "--seed", strconv.FormatUint(seed, 10),
		"--epoch", strconv.FormatInt(epoch.UnixNano(), 10), "--stall-every", align.String())
	cmd.Stdout, cmd.Stderr = &out, &errb
	if cmd.Env, err = f.m.env("loadgen"); err != nil {
		return rep, err
	}
	if err := cmd.Run(); err != nil {
		return rep, fmt.Errorf("load generator: %v: %s", err, errb.String())
	}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	if !sc.Scan() {
		return rep, fmt.Errorf("load generator printed nothing: %s", errb.String())
	}
	if err := json.Unmarshal(sc.Bytes(), &rep); err != nil {
		return rep, fmt.Errorf("load generator's report: %v", err)
	}
	var removals []string
	for _, line := range strings.Split(glog.String(), "\n") {
		if strings.Contains(line, "service member removed") {
			removals = append(removals, line)
		}
	}
	if len(removals) > 0 {
		fmt.Fprintf(stderr, "ultcp bench lb:   the gateway removed a member for stalling %d times; first: %s\n", len(removals), removals[0])
	}
	return rep, nil
}
