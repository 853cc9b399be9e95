package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ultcp/ultcp/internal/proc"
)

func TestMain(m *testing.M) {
	proc.RunChild()
	os.Exit(m.Run())
}

func TestSweepSizesAreNetPIPEs(t *testing.T) {
	s := Options{}.sizes()
	want := []int{1, 2, 4, 5, 8, 11, 13, 16, 19}
	for i, w := range want {
		if s[i] != w {
			t.Fatalf("sizes start %v, want %v", s[:len(want)], want)
		}
	}
	if got := s[len(s)-2:]; got[0] != 8<<20 || got[1] != 8<<20+3 {
		t.Errorf("sizes end %v, want 8 MiB and 8 MiB+3", got)
	}
	if q := (Options{Quick: true}).sizes(); len(q) != 12 || q[11] != 4<<20 {
		t.Errorf("quick sizes %v, want the 12 powers of four up to 4 MiB", q)
	}
}

func TestUnknownTransportIsAnError(t *testing.T) {
	if _, err := Run(Options{Transports: []string{"kernel-tcp", "carrier-pigeon"}}); err == nil || !strings.Contains(err.Error(), `"carrier-pigeon"`) {
		t.Errorf("Run with an unknown transport: %v, want an error naming it", err)
	}
}

func TestUnknownPinIsAnError(t *testing.T) {
	if _, err := Run(Options{Pin: "diagonal"}); err == nil || !strings.Contains(err.Error(), "diagonal") {
		t.Errorf("Run with --pin diagonal: %v, want an error naming it", err)
	}
}

// A tiny run over two transports between real processes: every point and
// connection rate is there, in the issue's JSON schema. Speed is not
// asserted.
func TestTinyRunHasEveryPointInTheIssueSchema(t *testing.T) {
	if testing.Short() {
		t.Skip("starts child processes")
	}
	o := Options{
		Transports:  []string{KernelTCP, Unix},
		Sizes:       []int{1, 1000, 70000},
		PointBudget: 20 * time.Millisecond,
		CRRBudget:   20 * time.Millisecond,
	}
	rep, err := Run(o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Machine.Notes) != 0 {
		t.Errorf("notes %q, want none", rep.Machine.Notes)
	}
	if len(rep.Runs) != 6 {
		t.Fatalf("%d runs, want 2 transports × 3 sizes", len(rep.Runs))
	}
	for _, r := range rep.Runs {
		if r.HalfMin <= 0 || r.HalfMedian < r.HalfMin || r.Mbps <= 0 || r.CPUPerRT == nil || *r.CPUPerRT <= 0 {
			t.Errorf("run %+v: want 0 < min <= median, throughput and CPU", r)
		}
	}
	if len(rep.CRR) != 2 || rep.CRR[0].ConnsPerS <= 0 || rep.CRR[1].ConnsPerS <= 0 {
		t.Errorf("crr %+v, want a positive rate for both", rep.CRR)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var generic struct {
		Machine map[string]any   `json:"machine"`
		Runs    []map[string]any `json:"runs"`
		CRR     []map[string]any `json:"crr"`
	}
	if err := json.Unmarshal(b, &generic); err != nil {
		t.Fatal(err)
	}
	wantKeys := "bytes,cpu_ns_per_rt,half_rtt_ns_median,half_rtt_ns_min,mbit_per_s,transport"
	if got := keys(generic.Runs[0]); got != wantKeys {
		t.Errorf("run keys %s, want %s", got, wantKeys)
	}
	// The issue's two keys, and how the median rate was made.
	if got := keys(generic.CRR[0]); got != "batches,conns_per_s,mean_conns_per_s,transport" {
		t.Errorf("crr keys %s, want batches,conns_per_s,mean_conns_per_s,transport", got)
	}
	if generic.Machine["pin"] != "none" {
		t.Errorf("machine.pin %v, want none", generic.Machine["pin"])
	}
}

func keys(m map[string]any) string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	return strings.Join(sorted(k), ",")
}

func sorted(s []string) []string {
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}

func cpu(ns int64) *int64 { return &ns }

// sample is a report with literal numbers, for checks, tables and plot.
func sample() *Report {
	return &Report{
		Machine: Machine{Pin: "none", Date: "2026-11-25T14:00:00Z"},
		Runs: []RunResult{
			{Transport: UlTCP, Bytes: 1, HalfMin: 900, HalfMedian: 1000, Mbps: 8, CPUPerRT: cpu(4000)},
			{Transport: UlTCP, Bytes: 4 << 20, HalfMin: 500000, HalfMedian: 600000, Mbps: 55924, CPUPerRT: cpu(1200000)},
			{Transport: KernelTCP, Bytes: 1, HalfMin: 9000, HalfMedian: 10000, Mbps: 0.8, CPUPerRT: cpu(30000)},
			{Transport: KernelTCP, Bytes: 4 << 20, HalfMin: 1000000, HalfMedian: 1200000, Mbps: 27962, CPUPerRT: cpu(2400000)},
		},
		CRR: []CRR{{Transport: UlTCP, ConnsPerS: 30000}, {Transport: KernelTCP, ConnsPerS: 10000}},
	}
}

func TestChecksJudgeTheIssueTargets(t *testing.T) {
	got := map[string]Check{}
	for _, c := range Checks(sample()) {
		got[c.What] = c
	}
	for what, ok := range map[string]bool{
		"1 B half RTT median: kernel-tcp / ultcp ≥ 20":   false, // 10×
		"4 MiB throughput: ultcp / kernel-tcp ≥ 1.5":     true,  // 2×
		"connection rate: ultcp / kernel-tcp ≥ 3":        true,  // 3×
		"1 B CPU per round trip: kernel-tcp / ultcp > 1": true,  // 7.5×
	} {
		c, found := got[what]
		if !found || c.OK != ok || c.Ratio <= 0 {
			t.Errorf("%s: %+v, want measured and OK=%v", what, c, ok)
		}
	}
	if c := got["1 B half RTT median: gvisor / ultcp ≥ 10"]; c.OK || c.Ratio != 0 || !strings.Contains(c.Detail, "not measured") {
		t.Errorf("gvisor check without gvisor runs: %+v, want not measured", c)
	}
}

func TestPlotDrawsACurvePerTransport(t *testing.T) {
	var b bytes.Buffer
	if err := sample().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	svg := b.String()
	if !strings.HasPrefix(svg, "<svg ") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Fatalf("not an SVG document:\n%.200s", svg)
	}
	// two panels × two transports
	if n := strings.Count(svg, "<polyline"); n != 4 {
		t.Errorf("%d curves, want 4", n)
	}
	for _, want := range []string{"throughput against message size", "latency against message size", ">ultcp<", ">kernel-tcp<"} {
		if !strings.Contains(svg, want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

func TestParseNetPIPEOutput(t *testing.T) {
	p := t.TempDir() + "/np.out"
	_ = os.WriteFile(p, []byte("       1 1.101201   0.00000693\n       8 6.774038   0.00000901\n"), 0o644)
	runs, err := parseNetPIPE(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) != 2 || runs[0].Bytes != 1 || runs[0].HalfMedian != 6930 || runs[1].Mbps != 6.774038 || runs[0].CPUPerRT != nil {
		t.Errorf("parsed %+v", runs)
	}
}

func TestNetPIPERunsNPtcpWhenInstalled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NPtcp")
	}
	if _, err := exec.LookPath("NPtcp"); err != nil {
		t.Skip("NPtcp not installed (Debian netpipe-tcp)")
	}
	runs, err := runNetPIPE(Options{Sizes: []int{1, 4}})
	if err != nil {
		t.Fatal(err)
	}
	// NPtcp's own sweep from 1 byte up to 4 bytes and their ±3 perturbations.
	if len(runs) < 3 || runs[0].Bytes != 1 || runs[len(runs)-1].Bytes > 7 {
		t.Fatalf("runs %+v, want NPtcp's sizes from 1 to at most 7", runs)
	}
	for _, r := range runs {
		if r.Transport != NetPIPE || r.HalfMedian <= 0 || r.Mbps <= 0 || r.CPUPerRT != nil {
			t.Errorf("run %+v: want a time, a throughput and no CPU", r)
		}
	}
}
