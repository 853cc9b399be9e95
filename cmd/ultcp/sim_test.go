package main

import (
	"bytes"
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseProbAcceptsFractionsAndPercentages(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want float64
	}{{"0", 0}, {"0.01", 0.01}, {"1%", 0.01}, {" 1 % ", 0.01}, {"100%", 1}, {"1", 1}, {"0.1%", 0.001}} {
		if got, err := parseProb(tc.in); err != nil || got != tc.want {
			t.Errorf("parseProb(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "x", "2", "101%", "-1%", "NaN", "0.5%%"} {
		if _, err := parseProb(bad); err == nil {
			t.Errorf("parseProb(%q) accepted", bad)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"64MiB", 64 << 20}, {"1000", 1000}, {"1.5KiB", 1536}, {"10MB", 10e6}, {"1GiB", 1 << 30}, {"0", 0}, {"2 kib", 2048}} {
		if got, err := parseSize(tc.in); err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "MiB", "1.5B", "-1", "10XB", "2PiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestParseRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{{"100Mbit", 100e6}, {"1Gbit", 1e9}, {"10kbit", 10e3}, {"100Mbps", 100e6}, {"2.5Gbps", 2.5e9}, {"12500000", 12500000}} {
		if got, err := parseRate(tc.in); err != nil || got != tc.want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "0", "fast", "100Mfoo", "-1Mbit"} {
		if _, err := parseRate(bad); err == nil {
			t.Errorf("parseRate(%q) accepted", bad)
		}
	}
}

func TestSimJSONHasTheIssueFields(t *testing.T) {
	code, out, errOut := runCLI("sim", "--bytes", "1MiB", "--rate", "20Mbit", "--rtt", "10ms", "--loss", "1%", "--json")
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, out)
	}
	for _, k := range []string{"completed", "sha256_ok", "bytes", "sim_seconds", "goodput_bps", "retransmits", "spurious_retransmits"} {
		if _, ok := m[k]; !ok {
			t.Errorf("--json output lacks %q", k)
		}
	}
	if m["completed"] != true || m["sha256_ok"] != true || m["bytes"] != float64(1<<20) {
		t.Fatalf("completed %v sha256_ok %v bytes %v; want true, true, 1048576", m["completed"], m["sha256_ok"], m["bytes"])
	}
	if strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("--json printed more than one line:\n%s", out)
	}
}

// "1%" and "0.01" are the same probability, so the same run.
func TestSimPercentAndFractionGiveTheSameRun(t *testing.T) {
	args := []string{"sim", "--bytes", "512KiB", "--rate", "20Mbit", "--rtt", "10ms", "--json", "--seed", "4"}
	_, a, _ := runCLI(append(args, "--loss", "2%", "--reorder", "1%")...)
	_, b, _ := runCLI(append(args, "--loss", "0.02", "--reorder", "0.01")...)
	if a != b || a == "" {
		t.Fatalf("--loss 2%% and --loss 0.02 differ:\n%s\n%s", a, b)
	}
}

func TestSimTextReport(t *testing.T) {
	code, out, _ := runCLI("sim", "--bytes", "256KiB", "--rtt", "5ms", "--queue", "20p", "--cc", "newreno")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{"completed, SHA-256 verified", "with newreno", "goodput", "retransmits", "queue 20 packets"} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
}

func TestSimPlots(t *testing.T) {
	dir := t.TempDir()
	svg, pngPath := filepath.Join(dir, "run.svg"), filepath.Join(dir, "run.png")
	for _, p := range []string{svg, pngPath} {
		if code, _, errOut := runCLI("sim", "--bytes", "1MiB", "--rtt", "10ms", "--plot", p); code != 0 {
			t.Fatalf("--plot %s: exit %d, %s", p, code, errOut)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil || !bytes.HasPrefix(b, []byte("<svg")) || !bytes.Contains(b, []byte("<polyline")) || !bytes.Contains(b, []byte("goodput")) {
		t.Fatalf("SVG plot: %v, %.200q", err, b)
	}
	f, err := os.Open(pngPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil || img.Bounds().Dx() != plotW || img.Bounds().Dy() != plotH {
		t.Fatalf("PNG plot: %v, bounds %v", err, img.Bounds())
	}
}

func TestSimRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--loss", "150%"},
		{"--rate", "fast"},
		{"--rtt", "forever"},
		{"--queue", "0p"},
		{"--cc", "bbr"},
		{"--bytes", "lots"},
		{"--plot", "out.jpg"},
		{"stray"},
	} {
		code, _, errOut := runCLI(append([]string{"sim"}, args...)...)
		if code != 2 || errOut == "" {
			t.Errorf("ultcp sim %v: exit %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}

func TestHelpSimListsTheFlags(t *testing.T) {
	_, out, _ := runCLI("help", "sim")
	for _, want := range []string{"-bytes", "-rate", "-rtt", "-queue", "-loss", "-reorder", "-dup", "-corrupt", "-cc", "-seed", "-json", "-plot"} {
		if !strings.Contains(out, want) {
			t.Errorf("ultcp help sim does not mention %q", want)
		}
	}
	if _, out, _ := runCLI("help"); !strings.Contains(out, "\n  sim ") {
		t.Errorf("ultcp help does not list sim:\n%s", out)
	}
}

func TestSimAckLossLosesOnTheWayBackOnly(t *testing.T) {
	fs, f := newSimFlags(&bytes.Buffer{})
	if err := fs.Parse([]string{"--loss", "1%", "--ack-loss", "5%"}); err != nil {
		t.Fatal(err)
	}
	if err := f.parse(); err != nil {
		t.Fatal(err)
	}
	cfg := f.config()
	if cfg.Forward.Loss != 0.01 || cfg.Reverse.Loss != 0.05 {
		t.Fatalf("forward loss %v, reverse loss %v; want 0.01 and 0.05", cfg.Forward.Loss, cfg.Reverse.Loss)
	}
}
