package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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

func TestBenchLBWithoutSimulateSaysWhy(t *testing.T) {
	code, _, errOut := runCLI("bench", "lb")
	if code != 2 || !strings.Contains(errOut, "--simulate") {
		t.Fatalf("exit %d, stderr %q: want 2 and a pointer to --simulate", code, errOut)
	}
}

func TestBenchLBRejectsUnknownPolicy(t *testing.T) {
	code, _, errOut := runCLI("bench", "lb", "--simulate", "--policies", "random")
	if code != 2 || !strings.Contains(errOut, `unknown policy "random"`) {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
