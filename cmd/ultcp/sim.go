package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ultcp/ultcp/internal/tcp/cc"
	"github.com/ultcp/ultcp/internal/tcp/sim"
)

// `ultcp sim` runs one bulk transfer between two ultcp TCP engines through
// the simulated path of internal/tcp/sim, in simulated time, and reports
// what happened. Everything it prints is a function of its flags: the same
// command gives the same numbers on any machine.

func init() {
	subcommands = append(subcommands, subcommand{name: "sim",
		summary: "simulate one TCP transfer over a lossy, delaying path (deterministic, seeded)",
		run:     runSim, usage: simUsage})
}

type simFlags struct {
	bytes, rate, rtt, queue         string
	loss, reorder, dup, corrupt, cc string
	ackLoss                         string
	seed                            uint64
	json                            bool
	plot                            string
	parsedBytes                     int64
	parsedRate                      int64
	parsedRTT                       time.Duration
	queueBytes, queuePackets        int
	pLoss, pReorder, pDup, pCorrupt float64
	pAckLoss                        float64
}

func newSimFlags(w io.Writer) (*flag.FlagSet, *simFlags) {
	fs := flag.NewFlagSet("ultcp sim", flag.ContinueOnError)
	fs.SetOutput(w)
	f := &simFlags{}
	fs.StringVar(&f.bytes, "bytes", "64MiB", "bytes to transfer: a number with an optional `SIZE` suffix (B, KB, KiB, MB, MiB, GB, GiB)")
	fs.StringVar(&f.rate, "rate", "100Mbit", "bottleneck `RATE` each way, IPv4 headers included (bit, kbit, Mbit, Gbit; or bps forms)")
	fs.StringVar(&f.rtt, "rtt", "50ms", "round-trip propagation delay (a Go `DURATION`), split evenly between the two directions")
	fs.StringVar(&f.queue, "queue", "", "drop-tail queue in front of each bottleneck: bytes (`SIZE`) or packets (100p); default one bandwidth-delay product, at least 10 packets")
	fs.StringVar(&f.loss, "loss", "0", "random loss `PROBABILITY` of a data packet (0.01 and 1% are the same)")
	fs.StringVar(&f.ackLoss, "ack-loss", "0", "random loss `PROBABILITY` of a packet on the way back (ACKs), as a path that loses both ways does")
	fs.StringVar(&f.reorder, "reorder", "0", "`PROBABILITY` that a data packet is held back up to 10 ms, so later ones overtake it")
	fs.StringVar(&f.dup, "dup", "0", "`PROBABILITY` that a data packet arrives twice")
	fs.StringVar(&f.corrupt, "corrupt", "0", "`PROBABILITY` that one byte of a data packet is changed (the checksum must catch it)")
	fs.StringVar(&f.cc, "cc", cc.DefaultName, "congestion control: "+strings.Join(cc.Names(), "|"))
	fs.Uint64Var(&f.seed, "seed", 1, "random `SEED`: same seed, same run")
	fs.BoolVar(&f.json, "json", false, "print one JSON object instead of text")
	fs.StringVar(&f.plot, "plot", "", "draw cwnd, bytes in flight and goodput over time into `FILE`.svg or FILE.png")
	return fs, f
}

func simUsage(w io.Writer) {
	fs, _ := newSimFlags(w)
	fmt.Fprintln(w, "\nusage: ultcp sim [flags]\n\nFaults apply to the data direction; ACKs cross a clean path of the same rate, delay and queue.\n\nflags:")
	fs.PrintDefaults()
}

// parse checks and converts every flag value.
func (f *simFlags) parse() error {
	var err error
	if f.parsedBytes, err = parseSize(f.bytes); err != nil {
		return fmt.Errorf("--bytes: %w", err)
	}
	if f.parsedRate, err = parseRate(f.rate); err != nil {
		return fmt.Errorf("--rate: %w", err)
	}
	if f.parsedRTT, err = time.ParseDuration(f.rtt); err != nil || f.parsedRTT < 0 {
		return fmt.Errorf("--rtt: %q is not a non-negative duration such as 50ms", f.rtt)
	}
	if q := strings.TrimSpace(f.queue); q != "" {
		if n, ok := strings.CutSuffix(strings.ToLower(q), "p"); ok {
			p, err := strconv.Atoi(n)
			if err != nil || p <= 0 {
				return fmt.Errorf("--queue: %q is not a positive packet count such as 100p", f.queue)
			}
			f.queuePackets = p
		} else {
			b, err := parseSize(q)
			if err != nil || b <= 0 || b > math.MaxInt32 {
				return fmt.Errorf("--queue: %q is not a positive size such as 625000 or 64KiB, nor a packet count such as 100p", f.queue)
			}
			f.queueBytes = int(b)
		}
	}
	for _, p := range []struct {
		name string
		s    string
		v    *float64
	}{{"--loss", f.loss, &f.pLoss}, {"--ack-loss", f.ackLoss, &f.pAckLoss}, {"--reorder", f.reorder, &f.pReorder}, {"--dup", f.dup, &f.pDup}, {"--corrupt", f.corrupt, &f.pCorrupt}} {
		if *p.v, err = parseProb(p.s); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	if _, err := cc.New(f.cc, cc.Config{}); err != nil {
		return fmt.Errorf("--cc: %w", err)
	}
	if f.plot != "" {
		switch strings.ToLower(filepath.Ext(f.plot)) {
		case ".svg", ".png":
		default:
			return fmt.Errorf("--plot: %q must end in .svg or .png", f.plot)
		}
	}
	return nil
}

// config builds the simulator's configuration from the flags.
func (f *simFlags) config() sim.Config {
	fwd, rev := sim.Path(f.parsedRate, f.parsedRTT, f.queueBytes)
	if f.queuePackets > 0 {
		fwd.QueueBytes, rev.QueueBytes = 0, 0
		fwd.QueuePackets, rev.QueuePackets = f.queuePackets, f.queuePackets
	}
	fwd.Loss, fwd.Reorder, fwd.Dup, fwd.Corrupt = f.pLoss, f.pReorder, f.pDup, f.pCorrupt
	rev.Loss = f.pAckLoss
	return sim.Config{Bytes: f.parsedBytes, CC: f.cc, Seed: f.seed, Forward: fwd, Reverse: rev}
}

// simSummary is the --json object: the result's fields, then the path.
type simSummary struct {
	*sim.Result
	Path simPath `json:"path"`
}

type simPath struct {
	RateBps      int64   `json:"rate_bps"`
	RTTMs        float64 `json:"rtt_ms"`
	QueueBytes   int     `json:"queue_bytes,omitempty"`
	QueuePackets int     `json:"queue_packets,omitempty"`
	Loss         float64 `json:"loss"`
	AckLoss      float64 `json:"ack_loss,omitempty"`
	Reorder      float64 `json:"reorder"`
	Dup          float64 `json:"dup"`
	Corrupt      float64 `json:"corrupt"`
	Seed         uint64  `json:"seed"`
	// LinkUtilisation is goodput over the link rate.
	LinkUtilisation float64 `json:"link_utilisation,omitempty"`
}

func runSim(args []string, stdout, stderr io.Writer) int {
	fs, f := newSimFlags(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ultcp sim: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := f.parse(); err != nil {
		fmt.Fprintf(stderr, "ultcp sim: %v\n", err)
		return 2
	}
	cfg := f.config()
	prog := newProgress(stderr, time.Now())
	last := time.Now()
	cfg.Progress = func(p sim.Progress) {
		if time.Since(last) < 500*time.Millisecond {
			return
		}
		last = time.Now()
		prog.show("sim", 0, 1, fmt.Sprintf("%.0f simulated s, %s of %s delivered", p.Now.Seconds(), sizeText(p.Delivered), sizeText(p.Bytes)))
	}
	r, err := sim.Run(cfg)
	prog.clear()
	if err != nil {
		fmt.Fprintf(stderr, "ultcp sim: %v\n", err)
		return 2
	}
	sum := simSummary{Result: r, Path: simPath{RateBps: f.parsedRate, RTTMs: float64(f.parsedRTT) / float64(time.Millisecond),
		QueueBytes: cfg.Forward.QueueBytes, QueuePackets: cfg.Forward.QueuePackets,
		Loss: f.pLoss, AckLoss: f.pAckLoss, Reorder: f.pReorder, Dup: f.pDup, Corrupt: f.pCorrupt, Seed: f.seed}}
	if f.parsedRate > 0 {
		sum.Path.LinkUtilisation = r.GoodputBps / float64(f.parsedRate)
	}
	if f.json {
		b, err := json.Marshal(sum)
		if err != nil {
			fmt.Fprintf(stderr, "ultcp sim: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		writeSimText(stdout, &sum)
	}
	if f.plot != "" {
		if err := writePlot(f.plot, &sum); err != nil {
			fmt.Fprintf(stderr, "ultcp sim: --plot: %v\n", err)
			return 1
		}
	}
	if !r.Completed || !r.SHA256OK {
		return 1
	}
	return 0
}

func writeSimText(w io.Writer, s *simSummary) {
	r, p := s.Result, s.Path
	status := "completed, SHA-256 verified"
	switch {
	case !r.Completed:
		status = "NOT completed: " + r.Error
	case !r.SHA256OK:
		status = "completed, SHA-256 MISMATCH"
	}
	q := sizeText(int64(p.QueueBytes))
	if p.QueuePackets > 0 {
		q = fmt.Sprintf("%d packets", p.QueuePackets)
	}
	fmt.Fprintf(w, "path        %s, RTT %v, queue %s, loss %g, reorder %g, dup %g, corrupt %g, seed %d\n",
		rateText(float64(p.RateBps)), time.Duration(p.RTTMs*float64(time.Millisecond)), q, p.Loss, p.Reorder, p.Dup, p.Corrupt, p.Seed)
	fmt.Fprintf(w, "transfer    %s with %s: %s\n", sizeText(r.Bytes), r.CC, status)
	fmt.Fprintf(w, "time        %.3f simulated seconds\n", r.SimSeconds)
	fmt.Fprintf(w, "goodput     %s", rateText(r.GoodputBps))
	if p.LinkUtilisation > 0 {
		fmt.Fprintf(w, " (%.1f%% of the link)", 100*p.LinkUtilisation)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "retransmits %d (%d spurious); %d fast retransmits, %d timeouts\n", r.Retransmits, r.SpuriousRetransmits, r.FastRetransmits, r.Timeouts)
	fmt.Fprintf(w, "RTT         %d samples: min %.2f ms, median %.2f ms, p99 %.2f ms, max %.2f ms\n",
		r.RTT.Samples, r.RTT.MinMs, r.RTT.P50Ms, r.RTT.P99Ms, r.RTT.MaxMs)
	fl := r.Forward
	fmt.Fprintf(w, "data path   %d packets: %d queue drops, %d lost, %d corrupted (%d checksum drops), %d duplicated, %d reordered; queue peak %s\n",
		fl.Packets, fl.QueueDrops, fl.Lost, fl.Corrupted, r.ChecksumDrops, fl.Duplicated, fl.Reordered, sizeText(int64(fl.MaxQueue)))
}

// parseSize reads "64MiB", "1.5GB", "1000" (bytes).
func parseSize(s string) (int64, error) {
	num, unit := splitNumber(s)
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a size such as 64MiB", s)
	}
	mult := map[string]float64{"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1 << 10, "m": 1e6, "mb": 1e6,
		"mib": 1 << 20, "g": 1e9, "gb": 1e9, "gib": 1 << 30, "tib": 1 << 40, "tb": 1e12}[strings.ToLower(unit)]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown size unit %q (B, KB, KiB, MB, MiB, GB, GiB)", s, unit)
	}
	b := v * mult
	if b > 1<<50 || b != math.Trunc(b) {
		return 0, fmt.Errorf("%q is not a whole number of bytes below 1 PiB", s)
	}
	return int64(b), nil
}

// parseRate reads "100Mbit", "1Gbps", "12500000" (bits per second).
func parseRate(s string) (int64, error) {
	num, unit := splitNumber(s)
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v <= 0 || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%q is not a positive rate such as 100Mbit", s)
	}
	u := strings.ToLower(strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(unit), "/s"), "ps"))
	u = strings.TrimSuffix(u, "bit")
	u = strings.TrimSuffix(u, "b")
	mult := map[string]float64{"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[u]
	if mult == 0 {
		return 0, fmt.Errorf("%q: unknown rate unit %q (bit, kbit, Mbit, Gbit, or kbps, Mbps, Gbps)", s, unit)
	}
	r := v * mult
	if r < 8 || r > 1e13 {
		return 0, fmt.Errorf("%q is outside 8 bit/s to 10 Tbit/s", s)
	}
	return int64(r), nil
}

// parseProb reads "0.01" or "1%".
func parseProb(s string) (float64, error) {
	t := strings.TrimSpace(s)
	scale := 1.0
	if n, ok := strings.CutSuffix(t, "%"); ok {
		t, scale = strings.TrimSpace(n), 100
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) {
		return 0, fmt.Errorf("%q is not a probability such as 0.01 or 1%%", s)
	}
	v /= scale
	if v < 0 || v > 1 {
		return 0, fmt.Errorf("%q is not between 0 and 1 (0%% and 100%%)", s)
	}
	return v, nil
}

// splitNumber splits "64MiB" into "64" and "MiB".
func splitNumber(s string) (num, unit string) {
	s = strings.TrimSpace(s)
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.' || s[i] == 'e' && i > 0 && i+1 < len(s) && (s[i+1] >= '0' && s[i+1] <= '9' || s[i+1] == '-' || s[i+1] == '+') || (s[i] == '-' || s[i] == '+') && i > 0 && s[i-1] == 'e') {
		i++
	}
	return s[:i], strings.TrimSpace(s[i:])
}

// sizeText prints bytes in binary units.
func sizeText(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// rateText prints bits per second.
func rateText(bps float64) string {
	switch {
	case bps >= 1e9:
		return fmt.Sprintf("%.2f Gbit/s", bps/1e9)
	case bps >= 1e6:
		return fmt.Sprintf("%.2f Mbit/s", bps/1e6)
	case bps >= 1e3:
		return fmt.Sprintf("%.2f kbit/s", bps/1e3)
	}
	return fmt.Sprintf("%.0f bit/s", bps)
}

// writePlot draws the run's time series into path, as SVG or PNG by its
// extension.
func writePlot(path string, s *simSummary) error {
	p := newSimPlot(s)
	var data []byte
	var err error
	if strings.EqualFold(filepath.Ext(path), ".png") {
		data, err = p.png()
	} else {
		data = p.svg()
	}
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
