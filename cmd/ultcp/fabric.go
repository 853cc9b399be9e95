package main

import (
	"fmt"

	"github.com/ultcp/ultcp/bench"
	"github.com/ultcp/ultcp/fabric/fabricbench"
)

// fabricResult is the fabric section's outcome; it marshals as the report.
type fabricResult struct {
	*fabricbench.Report
}

func runFabricSection(o benchOptions, progress func(done, total int, what string)) (sectionResult, error) {
	r, err := fabricbench.Compare(fabricbench.Options{Quick: o.quick, Pin: o.pin, Progress: progress})
	if err != nil {
		return nil, err
	}
	return fabricResult{r}, nil
}

func (r fabricResult) tables() []bench.Table {
	pinned := "no"
	if r.Pinned {
		pinned = "yes (receiver on CPU 0, sender on CPU 1)"
	}
	other := "unknown"
	if r.OtherCPU >= 0 {
		other = fmt.Sprintf("%.0f %%", 100*r.OtherCPU)
	}
	note := fmt.Sprintf("%d CPUs; other processes used %s of them during the run (load average %s before, %s after); pinned: %s; %.0f s.",
		r.CPUs, other, r.LoadBefore, r.LoadAfter, pinned, r.Duration.Seconds())
	ts := []bench.Table{r.checkTable(note), r.latencyTable()}
	for _, k := range []struct {
		title string
		value func(fabricbench.Measurement) float64
		unit  string
	}{
		{"Streaming bandwidth, GB/s (receiver's wall clock)", func(m fabricbench.Measurement) float64 { return m.GBps }, "GB/s"},
		{"Sender CPU time per byte, ns/B (getrusage of the sending process)", func(m fabricbench.Measurement) float64 { return m.SenderNsPerB }, "ns/B"},
		{"Receiver CPU time per byte, ns/B (getrusage of the receiving process)", func(m fabricbench.Measurement) float64 { return m.ReceiverNsPerB }, "ns/B"},
	} {
		ts = append(ts, r.sweepTable(k.title, k.value, k.unit))
	}
	return ts
}

func (r fabricResult) checkTable(note string) bench.Table {
	t := bench.Table{
		Title:  "Fabric against its floors (targets from issue 10)",
		Note:   note,
		Header: []string{"measurement", "fabric", "floor", "floor measured by", "fabric ÷ floor", "target", "met"},
	}
	for _, c := range r.Checks {
		fab, fl, ratio := "—", "—", "—"
		if c.HasFabric {
			fab = number(c.Fabric, c.Unit)
		}
		if c.HasFloor {
			fl = number(c.Floor, c.Unit)
		}
		if c.HasFabric && c.HasFloor && c.Floor > 0 {
			ratio = ratioText(c.Ratio, c.Unit)
		}
		met := "—"
		switch {
		case c.Target == "":
		case c.Missing != "":
			met = "not measured"
		case c.Met:
			met = "yes"
		default:
			met = "NO"
		}
		target := c.Target
		if target == "" {
			target = "—"
		}
		t.Rows = append(t.Rows, []string{c.Name, fab, fl, c.FloorName, ratio, target, met})
	}
	return t
}

func (r fabricResult) latencyTable() bench.Table {
	t := bench.Table{
		Title:  "Ping-pong of one 8-byte record: half round trip, over 50 batches",
		Header: []string{"subject", "min", "median"},
	}
	for _, m := range r.Measurements {
		if m.Block == 0 {
			t.Rows = append(t.Rows, []string{m.Subject, number(m.HalfRTTMinNs, "ns"), number(m.HalfRTTMedianNs, "ns")})
		}
	}
	return t
}

// sweepTable is one row per record size, one column per streaming subject.
func (r fabricResult) sweepTable(title string, value func(fabricbench.Measurement) float64, unit string) bench.Table {
	var subjects []string
	var sizes []int
	seenSub, seenSize := map[string]bool{}, map[int]bool{}
	for _, m := range r.Measurements {
		if m.Block == 0 {
			continue
		}
		if !seenSub[m.Subject] {
			seenSub[m.Subject] = true
			subjects = append(subjects, m.Subject)
		}
		if !seenSize[m.Block] {
			seenSize[m.Block] = true
			sizes = append(sizes, m.Block)
		}
	}
	t := bench.Table{Title: title, Header: append([]string{"record size"}, subjects...)}
	for _, size := range sizes {
		row := []string{fabricbench.SizeName(size)}
		for _, s := range subjects {
			m, ok := r.Find(s, size)
			if !ok {
				row = append(row, "—")
				continue
			}
			row = append(row, plain(value(m), unit))
		}
		t.Rows = append(t.Rows, row)
	}
	return t
}

// number prints a value with its unit, with digits suited to the unit.
func number(v float64, unit string) string { return plain(v, unit) + " " + unit }

func plain(v float64, unit string) string {
	switch unit {
	case "ns":
		return fmt.Sprintf("%.1f", v)
	case "GB/s":
		return fmt.Sprintf("%.2f", v)
	case "ns/B":
		if v < 0.01 {
			return fmt.Sprintf("%.5f", v)
		}
		return fmt.Sprintf("%.4f", v)
	}
	return fmt.Sprintf("%g", v)
}

// ratioText shows bandwidth ratios as a share of the floor and the others
// (time, CPU) as multiples of it, the way issue 10 states its targets.
func ratioText(r float64, unit string) string {
	if unit == "GB/s" {
		return fmt.Sprintf("%.0f %%", 100*r)
	}
	return fmt.Sprintf("%.2f×", r)
}
