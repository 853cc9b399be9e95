package main

import (
	"bytes"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"math"
	"strings"
	"time"
)

// The plot of `ultcp sim --plot`: two panels over simulated time, the
// sender's congestion window and bytes in flight above, goodput below
// (with the link rate dashed). It is drawn by this file's own code,
// as SVG text or as a PNG through image/png, with no dependency.

const (
	plotW, plotH       = 960, 620
	plotLeft, plotRite = 80, 24
	panelTop1          = 64
	panelH             = 220
	panelGap           = 70
	panelTop2          = panelTop1 + panelH + panelGap
)

var (
	colCwnd    = color.RGBA{0x1f, 0x77, 0xb4, 0xff} // blue
	colFlight  = color.RGBA{0xff, 0x7f, 0x0e, 0xff} // orange
	colGoodput = color.RGBA{0x2c, 0xa0, 0x2c, 0xff} // green
	colLink    = color.RGBA{0x88, 0x88, 0x88, 0xff}
	colGrid    = color.RGBA{0xe4, 0xe4, 0xe4, 0xff}
	colAxis    = color.RGBA{0x33, 0x33, 0x33, 0xff}
)

type series struct {
	name   string
	col    color.RGBA
	x, y   []float64
	dashed bool
}

type panel struct {
	top        int
	title      string
	yMax       float64
	yUnit      string
	series     []series
	xMax       float64
	xTicks     []float64
	yTicks     []float64
	yTickLabel func(float64) string
}

type simPlot struct {
	title  string
	sub    string
	panels [2]panel
}

// newSimPlot lays out the plot for a run.
func newSimPlot(s *simSummary) *simPlot {
	r := s.Result
	p := &simPlot{}
	p.title = fmt.Sprintf("ultcp sim: %s with %s — %s", sizeText(r.Bytes), r.CC, rateText(r.GoodputBps))
	p.sub = fmt.Sprintf("%s, RTT %v, queue %s, loss %g, reorder %g, dup %g, corrupt %g, seed %d; %d retransmits (%d spurious)",
		rateText(float64(s.Path.RateBps)), time.Duration(s.Path.RTTMs*float64(time.Millisecond)), queueText(s.Path),
		s.Path.Loss, s.Path.Reorder, s.Path.Dup, s.Path.Corrupt, s.Path.Seed, r.Retransmits, r.SpuriousRetransmits)

	var t, cw, fl []float64
	maxW := 0.0
	for _, x := range r.Series {
		t = append(t, x.T.Seconds())
		cw = append(cw, float64(x.CWnd))
		fl = append(fl, float64(x.InFlight))
		maxW = max(maxW, float64(x.CWnd), float64(x.InFlight))
	}
	xMax := r.SimSeconds
	if len(t) > 0 {
		xMax = max(xMax, t[len(t)-1])
	}
	xMax = max(xMax, 1e-3)
	xTicks := niceTicks(xMax)

	// Window panel, in the unit that suits its size.
	div, unit := 1.0, "B"
	switch {
	case maxW >= 1<<20:
		div, unit = 1<<20, "MiB"
	case maxW >= 1<<10:
		div, unit = 1<<10, "KiB"
	}
	for i := range cw {
		cw[i] /= div
		fl[i] /= div
	}
	yt := niceTicks(max(maxW/div, 1e-9))
	p.panels[0] = panel{top: panelTop1, title: "congestion window and bytes in flight (" + unit + ")",
		yMax: yt[len(yt)-1], yUnit: unit, xMax: xTicks[len(xTicks)-1], xTicks: xTicks, yTicks: yt, yTickLabel: tickText,
		series: []series{{name: "cwnd", col: colCwnd, x: t, y: cw}, {name: "in flight", col: colFlight, x: t, y: fl}}}

	// Goodput panel: delivered bytes differenced over about 1/150 of
	// the run (at least 8 samples), which smooths the ACK clock's bursts.
	var gt, gp []float64
	step := max(len(r.Series)/150, 8)
	for i := step; i < len(r.Series); i += step {
		a, b := r.Series[i-step], r.Series[i]
		dt := (b.T - a.T).Seconds()
		if dt > 0 {
			gt = append(gt, (a.T+b.T).Seconds()/2)
			gp = append(gp, float64(b.Delivered-a.Delivered)*8/dt/1e6)
		}
	}
	link := float64(s.Path.RateBps) / 1e6
	maxG := link
	for _, g := range gp {
		maxG = max(maxG, g)
	}
	gy := niceTicks(max(maxG, 1e-6))
	p.panels[1] = panel{top: panelTop2, title: "goodput (Mbit/s); dashed: link rate", yMax: gy[len(gy)-1], yUnit: "Mbit/s",
		xMax: xTicks[len(xTicks)-1], xTicks: xTicks, yTicks: gy, yTickLabel: tickText,
		series: []series{{name: "goodput", col: colGoodput, x: gt, y: gp},
			{name: "link", col: colLink, x: []float64{0, xTicks[len(xTicks)-1]}, y: []float64{link, link}, dashed: true}}}
	return p
}

func queueText(p simPath) string {
	if p.QueuePackets > 0 {
		return fmt.Sprintf("%d packets", p.QueuePackets)
	}
	return sizeText(int64(p.QueueBytes))
}

// niceTicks returns 0 and about five round steps up to at least max.
func niceTicks(maxV float64) []float64 {
	raw := maxV / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []float64
	for v := 0.0; ; v += step {
		t = append(t, v)
		if v >= maxV-step*1e-9 || len(t) > 12 {
			break
		}
	}
	return t
}

func tickText(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "" || s == "-0" {
		return "0"
	}
	return s
}

// px maps a data point of panel p to pixels.
func (p *panel) px(x, y float64) (float64, float64) {
	w := float64(plotW - plotLeft - plotRite)
	return float64(plotLeft) + x/p.xMax*w, float64(p.top+panelH) - min(max(y/p.yMax, 0), 1.02)*float64(panelH)
}

func svgColor(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

// svg renders the plot as an SVG document.
func (sp *simPlot) svg() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif">`+"\n", plotW, plotH, plotW, plotH)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", plotLeft, html.EscapeString(sp.title))
	fmt.Fprintf(&b, `<text x="%d" y="44" font-size="11" fill="#555">%s</text>`+"\n", plotLeft, html.EscapeString(sp.sub))
	for i := range sp.panels {
		p := &sp.panels[i]
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12">%s</text>`+"\n", plotLeft, p.top-8, html.EscapeString(p.title))
		for _, v := range p.yTicks {
			_, y := p.px(0, v)
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="%s"/>`, plotLeft, y, plotW-plotRite, y, svgColor(colGrid))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", plotLeft-6, y+4, tickText(v))
		}
		for _, v := range p.xTicks {
			x, _ := p.px(v, 0)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s"/>`, x, p.top, x, p.top+panelH, svgColor(colGrid))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" text-anchor="middle">%s</text>`+"\n", x, p.top+panelH+16, tickText(v))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end">simulated time (s)</text>`+"\n", plotW-plotRite, p.top+panelH+32)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="%s"/>`+"\n", plotLeft, p.top, plotW-plotLeft-plotRite, panelH, svgColor(colAxis))
		lx := plotW - plotRite - 10
		for k := len(p.series) - 1; k >= 0; k-- {
			s := &p.series[k]
			if len(s.x) == 0 {
				continue
			}
			var pts strings.Builder
			for j := range s.x {
				x, y := p.px(s.x[j], s.y[j])
				fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
			}
			dash := ""
			if s.dashed {
				dash = ` stroke-dasharray="6 4"`
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5"%s points="%s"/>`+"\n", svgColor(s.col), dash, strings.TrimSpace(pts.String()))
		}
		for k := len(p.series) - 1; k >= 0; k-- {
			s := &p.series[k]
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="11" text-anchor="end" fill="%s">%s</text>`+"\n", lx, p.top+16, svgColor(s.col), html.EscapeString(s.name))
			lx -= 8 * (len(s.name) + 2)
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// png renders the plot as a PNG: the same panels, grid and series, and
// the tick values in a small built-in digit font (titles and legends,
// which need a full font, are only in the SVG; the series keep the same
// colours: cwnd blue, in flight orange, goodput green, link rate grey).
func (sp *simPlot) png() ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, plotW, plotH))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for i := range sp.panels {
		p := &sp.panels[i]
		for _, v := range p.yTicks {
			_, y := p.px(0, v)
			drawLine(img, plotLeft, y, plotW-plotRite, y, colGrid, 1, false)
			drawDigits(img, plotLeft-6, int(y)-5, tickText(v), colAxis, true)
		}
		for _, v := range p.xTicks {
			x, _ := p.px(v, 0)
			drawLine(img, x, float64(p.top), x, float64(p.top+panelH), colGrid, 1, false)
			s := tickText(v)
			drawDigits(img, int(x)+len(s)*4, p.top+panelH+6, s, colAxis, true)
		}
		l, r := float64(plotLeft), float64(plotW-plotRite)
		t, bt := float64(p.top), float64(p.top+panelH)
		drawLine(img, l, t, r, t, colAxis, 1, false)
		drawLine(img, l, bt, r, bt, colAxis, 1, false)
		drawLine(img, l, t, l, bt, colAxis, 1, false)
		drawLine(img, r, t, r, bt, colAxis, 1, false)
		for k := len(p.series) - 1; k >= 0; k-- {
			s := &p.series[k]
			for j := 1; j < len(s.x); j++ {
				x0, y0 := p.px(s.x[j-1], s.y[j-1])
				x1, y1 := p.px(s.x[j], s.y[j])
				drawLine(img, x0, y0, x1, y1, s.col, 2, s.dashed)
			}
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// drawLine draws a line of the given width by stepping along its longer
// axis (a DDA line); dashed lines skip alternate stretches of 6 pixels.
func drawLine(img *image.RGBA, x0, y0, x1, y1 float64, c color.RGBA, width int, dashed bool) {
	dx, dy := x1-x0, y1-y0
	n := int(math.Ceil(max(math.Abs(dx), math.Abs(dy))))
	if n == 0 {
		n = 1
	}
	for i := 0; i <= n; i++ {
		if dashed && (i/6)%2 == 1 {
			continue
		}
		x := int(math.Round(x0 + dx*float64(i)/float64(n)))
		y := int(math.Round(y0 + dy*float64(i)/float64(n)))
		for ox := 0; ox < width; ox++ {
			for oy := 0; oy < width; oy++ {
				if (image.Point{x + ox, y + oy}).In(img.Rect) {
					img.SetRGBA(x+ox, y+oy, c)
				}
			}
		}
	}
}

// digitFont is a 3×5 font for tick values: each glyph is five rows of
// three bits, most significant bit leftmost.
var digitFont = map[rune][5]uint8{
	'0': {7, 5, 5, 5, 7}, '1': {2, 6, 2, 2, 7}, '2': {7, 1, 7, 4, 7}, '3': {7, 1, 7, 1, 7},
	'4': {5, 5, 7, 1, 1}, '5': {7, 4, 7, 1, 7}, '6': {7, 4, 7, 5, 7}, '7': {7, 1, 1, 1, 1},
	'8': {7, 5, 7, 5, 7}, '9': {7, 5, 7, 1, 7}, '.': {0, 0, 0, 0, 2}, '-': {0, 0, 7, 0, 0},
}

// drawDigits writes s at scale 2; with right set, x is the right edge.
func drawDigits(img *image.RGBA, x, y int, s string, c color.RGBA, right bool) {
	const scale, adv = 2, 8
	if right {
		x -= len(s) * adv
	}
	for i, ch := range s {
		g, ok := digitFont[ch]
		if !ok {
			continue
		}
		for row := range 5 {
			for col := range 3 {
				if g[row]&(4>>col) == 0 {
					continue
				}
				for a := range scale {
					for b := range scale {
						px, py := x+i*adv+col*scale+a, y+row*scale+b
						if (image.Point{px, py}).In(img.Rect) {
							img.SetRGBA(px, py, c)
						}
					}
				}
			}
		}
	}
}
