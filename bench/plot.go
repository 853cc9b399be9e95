package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// WriteSVG draws NetPIPE's two classic graphs side by side: throughput
// against message size and half round-trip time against message size,
// both axes logarithmic, one curve per transport. It is plain SVG written
// by hand, so the core module needs no plotting dependency.
func (r *Report) WriteSVG(w io.Writer) error {
	const (
		pw, ph       = 520, 380 // one panel
		ml, mr       = 70, 20
		mt, mb       = 40, 50
		width        = 2*pw + 20
		legendHeight = 30
	)
	names := r.transports()
	colors := []string{"#d62728", "#ff7f0e", "#9467bd", "#1f77b4", "#2ca02c", "#8c564b", "#7f7f7f", "#e377c2"}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, ph+legendHeight)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	type panel struct {
		title, ylabel string
		y             func(RunResult) float64
	}
	panels := []panel{
		{"throughput against message size", "Mbit/s", func(x RunResult) float64 { return x.Mbps }},
		{"latency against message size (median half round trip)", "µs", func(x RunResult) float64 { return float64(x.HalfMedian) / 1e3 }},
	}
	minX, maxX := 1.0, float64(8<<20)
	for _, x := range r.Runs {
		maxX = math.Max(maxX, float64(x.Bytes))
	}
	for pi, p := range panels {
		ox := pi * (pw + 20)
		minY, maxY := math.Inf(1), math.Inf(-1)
		for _, x := range r.Runs {
			if v := p.y(x); v > 0 {
				minY, maxY = math.Min(minY, v), math.Max(maxY, v)
			}
		}
		if math.IsInf(minY, 1) {
			minY, maxY = 1, 10
		}
		lo, hi := math.Floor(math.Log10(minY)), math.Ceil(math.Log10(maxY))
		if hi <= lo {
			hi = lo + 1
		}
		xlo, xhi := math.Log10(minX), math.Log10(maxX)
		px := func(v float64) float64 {
			return float64(ox+ml) + (math.Log10(v)-xlo)/(xhi-xlo)*float64(pw-ml-mr)
		}
		py := func(v float64) float64 {
			return float64(mt) + (hi-math.Log10(v))/(hi-lo)*float64(ph-mt-mb)
		}
		fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", ox+ml, p.title)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>`+"\n", ox+ml, mt, pw-ml-mr, ph-mt-mb)
		for e := lo; e <= hi; e++ {
			y := py(math.Pow(10, e))
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", ox+ml, y, ox+pw-mr, y)
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", ox+ml-4, y+4, tick(math.Pow(10, e)))
		}
		for s := 1.0; s <= maxX; s *= 16 {
			x := px(s)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, mt, x, ph-mb)
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, ph-mb+16, SizeName(int(s)))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">message size (bytes)</text>`+"\n", ox+ml+(pw-ml-mr)/2, ph-mb+36)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle" transform="rotate(-90 %d %d)">%s</text>`+"\n", ox+16, mt+(ph-mt-mb)/2, ox+16, mt+(ph-mt-mb)/2, p.ylabel)
		for ti, t := range names {
			var pts []string
			for _, x := range r.Runs {
				if x.Transport == t && p.y(x) > 0 && x.Bytes > 0 {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(x.Bytes)), py(p.y(x))))
				}
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", colors[ti%len(colors)], strings.Join(pts, " "))
		}
	}
	for ti, t := range names {
		x := ml + ti*130
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", x, ph+12, x+24, ph+12, colors[ti%len(colors)])
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+30, ph+16, t)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555">pin: %s · %s</text>`+"\n", width-300, ph+16, r.Machine.Pin, r.Machine.Date)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func tick(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}
