package main

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ultcp/ultcp/gateway/lb"
)

func TestBenchLBSimulateWritesRunsJSONAndPlot(t *testing.T) {
	dir := t.TempDir()
	js, svg := filepath.Join(dir, "lb.json"), filepath.Join(dir, "lb.svg")
	code, out, errOut := runCLI("bench", "lb", "--simulate", "--quick", "--scenarios", "slow", "--policies", "queue,roundrobin", "--json", js, "--plot", svg)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"load balancing: simulated", "slow: queue p99 ≤ 0.5 × roundrobin p99", "a model, not a measurement"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not mention %q:\n%s", want, out)
		}
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Runs []map[string]any `json:"runs"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Runs) != 2 {
		t.Fatalf("%d runs in the JSON, want 2", len(doc.Runs))
	}
	for _, r := range doc.Runs {
		for _, k := range []string{"scenario", "policy", "rps", "p50_ms", "p99_ms", "p999_ms"} {
			if _, ok := r[k]; !ok {
				t.Errorf("run %v has no %q", r, k)
			}
		}
	}
	if s, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(s), "<svg") {
		t.Fatalf("plot: %.20q, %v", s, err)
	}
}

// The measured run has no dead scenario (a real backend is killed in
// test/interop's lb_test instead): refused before anything is started.
func TestBenchLBMeasuredRefusesTheDeadScenario(t *testing.T) {
	code, _, errOut := runCLI("bench", "lb", "--scenarios", "dead")
	if code != 2 || !strings.Contains(errOut, "simulated only") {
		t.Fatalf("exit %d, stderr %q: want 2 and the scenario named simulated only", code, errOut)
	}
}

func TestBenchLBRejectsUnknownRole(t *testing.T) {
	code, _, errOut := runCLI("bench", "lb", "--role", "proxy")
	if code != 2 || !strings.Contains(errOut, `--role "proxy"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// --service parses VIP:PORT[=POLICY] and names what is wrong.
func TestGatewayServiceFlagParses(t *testing.T) {
	var s serviceFlags
	if err := s.Set("10.77.255.1:80=leastconn"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("10.77.255.2:443"); err != nil {
		t.Fatal(err)
	}
	if p := s.m[netip.MustParseAddrPort("10.77.255.1:80")]; p != lb.LeastConn {
		t.Fatalf("10.77.255.1:80 policy %v, want leastconn", p)
	}
	if p := s.m[netip.MustParseAddrPort("10.77.255.2:443")]; p != lb.Queue {
		t.Fatalf("10.77.255.2:443 policy %v, want the default, queue", p)
	}
	for _, bad := range []string{"10.77.255.1", "10.77.255.1:80=random", "[::1]:80", "10.77.255.1:0"} {
		if err := s.Set(bad); err == nil {
			t.Errorf("--service %q accepted", bad)
		}
	}
}

func TestBenchLBRejectsUnknownPolicy(t *testing.T) {
	code, _, errOut := runCLI("bench", "lb", "--simulate", "--policies", "random")
	if code != 2 || !strings.Contains(errOut, `unknown policy "random"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

// Without flags the model is the measured run's pool: fixed 5 ms
// requests, Poisson arrivals at 480/s.
func TestBenchLBSimulateDefaultsToTheMeasuredPool(t *testing.T) {
	code, out, errOut := runCLI("bench", "lb", "--simulate", "--quick", "--scenarios", "equal", "--policies", "queue")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	for _, want := range []string{"cost 5ms (fixed)", "open loop at 480 requests/s"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI("bench", "lb", "--simulate", "--quick", "--scenarios", "equal", "--policies", "queue", "--cost", "1ms", "--fixed-cost=false", "--concurrency", "16")
	if code != 0 || !strings.Contains(out, "cost 1ms (half fixed, half exponential), closed loop of 16 clients") {
		t.Errorf("with the model's old parameters given: exit %d, stdout %q", code, out)
	}
}

// --rate alone is the open loop (the closed loop's default client count
// does not win over it); --rate with a client count is an error.
func TestBenchLBRateMeansTheOpenLoop(t *testing.T) {
	code, out, errOut := runCLI("bench", "lb", "--simulate", "--quick", "--scenarios", "equal", "--policies", "queue", "--rate", "300")
	if code != 0 || !strings.Contains(out, "open loop at 300 requests/s") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want the open loop at 300/s", code, out, errOut)
	}
	code, _, errOut = runCLI("bench", "lb", "--simulate", "--rate", "300", "--concurrency", "4")
	if code != 2 || !strings.Contains(errOut, "give one") {
		t.Fatalf("exit %d, stderr %q: want 2 and both loops named", code, errOut)
	}
}

// --gomaxprocs sets GOMAXPROCS for all the measured run's processes or
// per role, and names what is wrong.
func TestBenchLBGomaxprocsPerRole(t *testing.T) {
	last := func(env []string) string {
		v := ""
		for _, e := range env {
			if strings.HasPrefix(e, "GOMAXPROCS=") {
				v = e
			}
		}
		return v
	}
	for _, c := range []struct{ spec, role, want string }{
		{"8", "gateway", "GOMAXPROCS=8"},
		{"8", "loadgen", "GOMAXPROCS=8"},
		{"gateway=8,backend=4", "backend", "GOMAXPROCS=4"},
		{"gateway=8", "loadgen", ""},
	} {
		m := lbMeasured{procs: c.spec}
		env, err := m.env(c.role)
		if err != nil {
			t.Fatalf("%q: %v", c.spec, err)
		}
		if c.want != "" && last(env) != c.want {
			t.Errorf("--gomaxprocs %q, role %s: %q, want %q", c.spec, c.role, last(env), c.want)
		}
		if c.want == "" && len(env) != len(os.Environ()) {
			t.Errorf("--gomaxprocs %q, role %s: environment changed, want it inherited as is", c.spec, c.role)
		}
	}
	for _, bad := range []string{"0", "x", "proxy=2", "gateway=0"} {
		m := lbMeasured{procs: bad}
		if _, err := m.env("gateway"); err == nil {
			t.Errorf("--gomaxprocs %q accepted", bad)
		}
	}
}
