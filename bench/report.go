package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is the result of one run, marshalled as --json writes it:
// {"machine": {...}, "runs": [...], "crr": [...]}.
type Report struct {
	Machine Machine     `json:"machine"`
	Runs    []RunResult `json:"runs"`
	CRR     []CRR       `json:"crr"`
}

// Machine says where, when and how the numbers were taken.
type Machine struct {
	Date       string  `json:"date"`
	Command    string  `json:"command,omitempty"`
	CPU        string  `json:"cpu"`
	CPUs       int     `json:"cpus"`
	Kernel     string  `json:"kernel"`
	Go         string  `json:"go"`
	Pin        string  `json:"pin"`
	Quick      bool    `json:"quick"`
	LoadBefore string  `json:"load_before"`
	LoadAfter  string  `json:"load_after"`
	Seconds    float64 `json:"seconds"`
	// OthersBusy is the share of all CPUs that other processes used
	// during the run (/proc/stat less this process tree): the noise.
	OthersBusy float64  `json:"others_busy"`
	GVisorLink string   `json:"gvisor_link,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// RunResult is one point of the sweep. CPUPerRT is null where it was not
// measured (NPtcp reports no CPU time).
type RunResult struct {
	Transport  string  `json:"transport"`
	Bytes      int     `json:"bytes"`
	HalfMin    int64   `json:"half_rtt_ns_min"`
	HalfMedian int64   `json:"half_rtt_ns_median"`
	Mbps       float64 `json:"mbit_per_s"`
	CPUPerRT   *int64  `json:"cpu_ns_per_rt"`
}

// CRR is one transport's connection rate.
type CRR struct {
	Transport string `json:"transport"`
	// ConnsPerS is the median over batches of 20 ms (bench.crrBatch);
	// MeanConnsPerS is all connections over all the time.
	ConnsPerS     float64 `json:"conns_per_s"`
	MeanConnsPerS float64 `json:"mean_conns_per_s"`
	Batches       int     `json:"batches"`
}

// Find returns the point of transport at size bytes.
func (r *Report) Find(transport string, bytes int) (RunResult, bool) {
	for _, x := range r.Runs {
		if x.Transport == transport && x.Bytes == bytes {
			return x, true
		}
	}
	return RunResult{}, false
}

func (r *Report) crr(transport string) (float64, bool) {
	for _, x := range r.CRR {
		if x.Transport == transport {
			return x.ConnsPerS, true
		}
	}
	return 0, false
}

// transports lists the transports with results, in table order.
func (r *Report) transports() []string {
	var ts []string
	for _, t := range Transports {
		if slices.ContainsFunc(r.Runs, func(x RunResult) bool { return x.Transport == t.Name }) {
			ts = append(ts, t.Name)
		}
	}
	return ts
}

// Check is one target of issue 6's "must show" list, judged on a report.
type Check struct {
	What   string  // the target in words
	Ratio  float64 // measured ratio, in the direction the target states
	Want   float64 // the ratio the target asks for
	OK     bool
	Detail string // the two numbers, or why the check could not be made
}

// Checks judges r against issue 6's targets. A target whose transports
// did not run is reported as not made, with the reason.
func Checks(r *Report) []Check {
	var cs []Check
	const mib4 = 4 << 20
	half := func(t string, b int) (float64, bool) {
		x, ok := r.Find(t, b)
		return float64(x.HalfMedian), ok && x.HalfMedian > 0
	}
	tput := func(t string, b int) (float64, bool) {
		x, ok := r.Find(t, b)
		return x.Mbps, ok && x.Mbps > 0
	}
	cpu := func(t string, b int) (float64, bool) {
		x, ok := r.Find(t, b)
		return float64(ptrOr(x.CPUPerRT)), ok && x.CPUPerRT != nil && *x.CPUPerRT > 0
	}
	// ratio a/b must be >= want.
	add := func(what string, want float64, unit string, get func(string, int) (float64, bool), a string, b string, size int, invert bool) {
		va, oka := get(a, size)
		vb, okb := get(b, size)
		c := Check{What: what, Want: want}
		if !oka || !okb {
			c.Detail = fmt.Sprintf("not measured (%s: %v, %s: %v)", a, oka, b, okb)
			cs = append(cs, c)
			return
		}
		if invert {
			c.Ratio = vb / va
		} else {
			c.Ratio = va / vb
		}
		c.OK = c.Ratio >= want
		c.Detail = fmt.Sprintf("%s %s, %s %s", a, fmtUnit(va, unit), b, fmtUnit(vb, unit))
		cs = append(cs, c)
	}
	add("1 B half RTT median: kernel-tcp / ultcp ≥ 20", 20, "ns", half, UlTCP, KernelTCP, 1, true)
	add("1 B half RTT median: fabric / ultcp ≥ 1/3 (ultcp within 3× of fabric)", 1.0/3, "ns", half, UlTCP, Fabric, 1, true)
	add("4 MiB throughput: ultcp-zc / kernel-tcp ≥ 2", 2, "Mbit/s", tput, UlTCPZC, KernelTCP, mib4, false)
	add("4 MiB throughput: ultcp / kernel-tcp ≥ 1.5", 1.5, "Mbit/s", tput, UlTCP, KernelTCP, mib4, false)
	add("1 B half RTT median: gvisor / ultcp ≥ 10", 10, "ns", half, UlTCP, GVisor, 1, true)
	add("4 MiB throughput: ultcp / gvisor ≥ 2", 2, "Mbit/s", tput, UlTCP, GVisor, mib4, false)
	add("connection rate: ultcp / kernel-tcp ≥ 3", 3, "conn/s", func(t string, _ int) (float64, bool) { return r.crr(t) }, UlTCP, KernelTCP, 0, false)
	add("1 B CPU per round trip: kernel-tcp / ultcp > 1", 1, "ns", cpu, UlTCP, KernelTCP, 1, true)
	return cs
}

func ptrOr(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

func fmtUnit(v float64, unit string) string {
	switch unit {
	case "ns":
		return fmtNs(int64(v))
	case "Mbit/s":
		return fmt.Sprintf("%.0f Mbit/s", v)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}

func fmtNs(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2f µs", float64(ns)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.1f µs", float64(ns)/1e3)
	default:
		return fmt.Sprintf("%.2f ms", float64(ns)/1e6)
	}
}

// SizeName writes a message size the way the tables show it.
func SizeName(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// Table is a titled grid of cells.
type Table struct {
	Title  string
	Note   string
	Header []string
	Rows   [][]string
}

// Tables renders r: one table per transport (a row per size: half RTT
// min and median, throughput, CPU per round trip), side-by-side tables of
// median half RTT and throughput at the powers of two, the connection
// rates, and the checks against issue 6.
func (r *Report) Tables() []Table {
	var ts []Table
	for _, t := range r.transports() {
		tb := Table{Title: "transport " + t, Note: describe(t),
			Header: []string{"bytes", "half RTT min", "half RTT median", "Mbit/s", "CPU/round trip"}}
		for _, x := range r.Runs {
			if x.Transport != t {
				continue
			}
			c := "-"
			if x.CPUPerRT != nil {
				c = fmtNs(*x.CPUPerRT)
			}
			tb.Rows = append(tb.Rows, []string{fmt.Sprint(x.Bytes), fmtNs(x.HalfMin), fmtNs(x.HalfMedian), fmt.Sprintf("%.1f", x.Mbps), c})
		}
		ts = append(ts, tb)
	}
	names := r.transports()
	if len(names) > 0 {
		lat := Table{Title: "side by side: half round trip, median", Header: append([]string{"size"}, names...)}
		bw := Table{Title: "side by side: throughput, Mbit/s (from the median)", Header: append([]string{"size"}, names...)}
		for size := 1; size <= 8<<20; size *= 2 {
			lr, br := []string{SizeName(size)}, []string{SizeName(size)}
			any := false
			for _, t := range names {
				x, ok := r.Find(t, size)
				if !ok {
					lr, br = append(lr, "-"), append(br, "-")
					continue
				}
				any = true
				lr = append(lr, fmtNs(x.HalfMedian))
				br = append(br, fmt.Sprintf("%.0f", x.Mbps))
			}
			if any {
				lat.Rows = append(lat.Rows, lr)
				bw.Rows = append(bw.Rows, br)
			}
		}
		ts = append(ts, lat, bw)
	}
	if len(r.CRR) > 0 {
		c := Table{Title: "connection rate (connect, 1 byte each way, close)",
			Header: []string{"transport", "connections/s (median of 20 ms batches)", "mean", "batches"}}
		for _, x := range r.CRR {
			c.Rows = append(c.Rows, []string{x.Transport, fmt.Sprintf("%.0f", x.ConnsPerS), fmt.Sprintf("%.0f", x.MeanConnsPerS), fmt.Sprint(x.Batches)})
		}
		ts = append(ts, c)
	}
	ck := Table{Title: "issue 6 targets", Header: []string{"target", "measured", "result", "numbers"}}
	for _, c := range Checks(r) {
		res := "MISSED"
		switch {
		case c.OK:
			res = "met"
		case c.Ratio == 0:
			res = "not made"
		default:
			res = fmt.Sprintf("MISSED by %.2f×", c.Want/c.Ratio)
		}
		ratio := "-"
		if c.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f", c.Ratio)
		}
		ck.Rows = append(ck.Rows, []string{c.What, ratio, res, c.Detail})
	}
	ts = append(ts, ck)
	return ts
}

func describe(t string) string {
	for _, x := range Transports {
		if x.Name == t {
			return x.Description
		}
	}
	return ""
}

// WriteHeader prints how the run was made: pinning, load, links, notes.
func (r *Report) WriteHeader(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "%s  %s\n", m.Command, m.Date)
	fmt.Fprintf(w, "machine: %s, %d CPUs, Linux %s, %s\npin: %s; load before %s, after %s; other processes used %.0f%% of the CPUs during the %.0f s run\n",
		m.CPU, m.CPUs, m.Kernel, m.Go, m.Pin, m.LoadBefore, m.LoadAfter, 100*m.OthersBusy, m.Seconds)
	if m.GVisorLink != "" {
		fmt.Fprintf(w, "gvisor link: %s\n", m.GVisorLink)
	}
	for _, n := range m.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	fmt.Fprintln(w, "half RTT: half a round trip of one message each way; Mbit/s = message bits / median half RTT; CPU/round trip: user+system time of both processes (getrusage), spinning included")
}

// WriteText prints t aligned for a terminal: cells that start like a
// number align right (after the first column), everything else left.
func (t Table) WriteText(w io.Writer) {
	fmt.Fprintln(w, t.Title)
	if t.Note != "" {
		fmt.Fprintln(w, t.Note)
	}
	ws := make([]int, len(t.Header))
	for _, row := range append([][]string{t.Header}, t.Rows...) {
		for i, c := range row {
			ws[i] = max(ws[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			pad := strings.Repeat(" ", ws[i]-len([]rune(c)))
			if i > 0 && numeric(c) {
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
			if i < len(cells)-1 {
				b.WriteString("  ")
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(t.Header)
	var rule []string
	for _, n := range ws {
		rule = append(rule, strings.Repeat("-", n))
	}
	line(rule)
	for _, r := range t.Rows {
		line(r)
	}
}

// WriteMarkdown prints t as a Markdown table; columns of numbers align
// right, as in the text table.
func (t Table) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "**%s**\n\n", t.Title)
	if t.Note != "" {
		fmt.Fprintf(w, "%s\n\n", t.Note)
	}
	fmt.Fprintf(w, "| %s |\n|", strings.Join(t.Header, " | "))
	for i := range t.Header {
		if i > 0 && len(t.Rows) > 0 && numeric(t.Rows[0][i]) {
			fmt.Fprint(w, "---:|")
		} else {
			fmt.Fprint(w, "---|")
		}
	}
	fmt.Fprintln(w)
	for _, r := range t.Rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join(r, " | "))
	}
}

// numeric reports whether a cell starts like a number, to right-align it.
func numeric(s string) bool {
	return s != "" && (s[0] >= '0' && s[0] <= '9' || s[0] == '-' && len(s) > 1 && s[1] >= '0' && s[1] <= '9')
}
