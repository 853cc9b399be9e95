package lb

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// WriteCDFSVG draws the latency distribution of every run: one panel per
// scenario, one curve per policy, latency on a logarithmic x axis and the
// cumulative fraction on a y axis stretched towards the tail (the
// distance from the top is log10 of 1 - F, so 90 %, 99 % and 99.9 % are
// evenly spaced: the tail is where the policies differ). It is plain SVG
// in the manner of bench/plot.go, which draws only the NetPIPE report and
// has no hook for other plots.
func (r *Results) WriteCDFSVG(w io.Writer) error {
	const (
		pw, ph       = 420, 360
		ml, mr       = 60, 15
		mt, mb       = 40, 50
		legendHeight = 30
		maxNines     = 4.0 // the top of the y axis: 99.99 %
	)
	var scenarios, policies []string
	for _, x := range r.Runs {
		if !slices.Contains(scenarios, x.Scenario) {
			scenarios = append(scenarios, x.Scenario)
		}
		if !slices.Contains(policies, x.Policy) {
			policies = append(policies, x.Policy)
		}
	}
	if len(scenarios) == 0 {
		return fmt.Errorf("lb: no runs to plot")
	}
	colors := []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}
	width := len(scenarios) * (pw + 20)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, h := range r.Hists {
		for _, p := range h.CDF() {
			v := math.Log10(max(float64(p.Latency)/1e6, 1e-3))
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
	}
	if math.IsInf(lo, 1) {
		return fmt.Errorf("lb: runs have no latency distribution to plot")
	}
	lo, hi = math.Floor(lo), math.Ceil(hi)
	if hi <= lo {
		hi = lo + 1
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, ph+legendHeight)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	for si, sc := range scenarios {
		ox := si * (pw + 20)
		px := func(ms float64) float64 {
			return float64(ox+ml) + (math.Log10(max(ms, 1e-3))-lo)/(hi-lo)*float64(pw-ml-mr)
		}
		py := func(f float64) float64 {
			n := math.Min(-math.Log10(math.Max(1-f, 1e-12)), maxNines)
			return float64(ph-mb) - n/maxNines*float64(ph-mt-mb)
		}
		fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s: latency CDF (%s)</text>`+"\n", ox+ml, xmlEscape(sc), xmlEscape(r.Mode))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", ox+ml, mt, pw-ml-mr, ph-mt-mb)
		for n := 0.0; n <= maxNines; n++ {
			f := 1 - math.Pow(10, -n)
			y := py(f)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", ox+ml, y, ox+pw-mr, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+ml-4, y+4, percentLabel(f))
		}
		for e := lo; e <= hi; e++ {
			x := px(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, mt, x, ph-mb)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%g</text>`+"\n", x, ph-mb+16, math.Pow(10, e))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">latency (ms)</text>`+"\n", ox+ml+(pw-ml-mr)/2, ph-mb+36)
		for pi, p := range policies {
			h := r.Hists[[2]string{sc, p}]
			if h == nil || h.Count() == 0 {
				continue
			}
			var pts []string
			prev := 0.0
			for _, c := range h.CDF() {
				// Steps: up at each bucket's edge.
				x := px(float64(c.Latency) / 1e6)
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, py(prev)), fmt.Sprintf("%.1f,%.1f", x, py(c.Fraction)))
				prev = c.Fraction
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"><title>%s</title></polyline>`+"\n", colors[pi%len(colors)], strings.Join(pts, " "), xmlEscape(p))
		}
	}
	for pi, p := range policies {
		x := ml + pi*120
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", x, ph+12, x+24, ph+12, colors[pi%len(colors)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+30, ph+16, xmlEscape(p))
	}
	if r.Command != "" {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" text-anchor="end">%s</text>`+"\n", width-10, ph+26, xmlEscape(r.Command))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func percentLabel(f float64) string {
	s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", 100*f), "0"), ".")
	return s + "%"
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
