package main

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotHandoff writes the cumulative distributions of the handoff latencies as a PNG: for each
// system, the share of handoffs (y) that took at most x milliseconds, x on a log scale.
func plotHandoff(path string, ss []series) error {
	p := plot.New()
	p.Title.Text = "Step handoff latency: previous step's return to next handler's start"
	p.X.Label.Text = "latency (ms, log scale)"
	p.Y.Label.Text = "share of handoffs at or below"
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = msTicks{}
	p.Y.Min, p.Y.Max = 0, 1
	p.Add(plotter.NewGrid())
	var args []any
	for _, s := range ss {
		if len(s.Samples) == 0 {
			continue
		}
		sorted := slices.Clone(s.Samples)
		slices.Sort(sorted)
		xys := make(plotter.XYs, len(sorted))
		for i, d := range sorted {
			// A log axis cannot show 0; a microsecond is below any real handoff.
			xys[i].X = max(float64(d)/float64(time.Millisecond), 0.001)
			xys[i].Y = float64(i+1) / float64(len(sorted))
		}
		args = append(args, fmt.Sprintf("%s: p50 %s, p99 %s (n=%d)", s.Label, ms(pct(sorted, 0.5)), ms(pct(sorted, 0.99)), len(sorted)), xys)
	}
	if err := plotutil.AddLines(p, args...); err != nil {
		return err
	}
	// The legend goes under the plot, where it hides no line.
	leg := p.Legend
	p.Legend = plot.NewLegend()
	leg.Top, leg.Left, leg.XOffs, leg.YOffs = true, true, 0.6*vg.Inch, -0.1*vg.Inch
	// About a sixth of an inch per legend line, and the plot keeps its size whatever their number.
	lines := len(args) / 2
	legendH := 0.25*vg.Inch + vg.Length(lines)*0.17*vg.Inch
	const w = 9 * vg.Inch
	h := 5.05*vg.Inch + legendH
	img := vgimg.New(w, h)
	dc := draw.New(img)
	p.Draw(draw.Crop(dc, 0, 0, legendH, 0))
	leg.Draw(draw.Crop(dc, 0, 0, 0, legendH-h))
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// msTicks labels 1, 2 and 5 times each power of ten, which a log axis of milliseconds reads best
// with; the other integers between get unlabelled ticks.
type msTicks struct{}

func (msTicks) Ticks(lo, hi float64) []plot.Tick {
	var ts []plot.Tick
	for p := math.Pow(10, math.Floor(math.Log10(lo))); p <= hi; p *= 10 {
		for m := 1; m <= 9; m++ {
			v := float64(m) * p
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || m == 2 || m == 5 {
				t.Label = strconv.FormatFloat(v, 'f', -1, 64)
			}
			ts = append(ts, t)
		}
	}
	return ts
}
