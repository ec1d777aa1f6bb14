package bench

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Plot file names, written into the directory given to WritePlots.
const (
	LatencyPlot    = "bench-latency.png"
	ThroughputPlot = "bench-throughput.png"
)

var palette = []color.Color{
	color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff},
	color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff},
	color.RGBA{R: 0x2c, G: 0xa0, B: 0x2c, A: 0xff},
	color.RGBA{R: 0x80, G: 0x80, B: 0x80, A: 0xff},
}

// WritePlots draws the latency percentiles of each shape per concurrency
// (proxy solid, baseline dashed), and the throughput and CPU-per-request
// ratios per concurrency, into dir as PNG.
func (r *Report) WritePlots(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := r.latencyPlot(filepath.Join(dir, LatencyPlot)); err != nil {
		return err
	}
	return r.throughputPlot(filepath.Join(dir, ThroughputPlot))
}

// concurrencyTicks places the concurrencies evenly along x, labelled.
func (r *Report) concurrencyTicks() (map[int]float64, plot.ConstantTicks) {
	pos := map[int]float64{}
	var ticks plot.ConstantTicks
	for _, c := range r.Cells {
		if _, ok := pos[c.Concurrency]; !ok {
			pos[c.Concurrency] = float64(len(pos))
			ticks = append(ticks, plot.Tick{Value: pos[c.Concurrency], Label: strconv.Itoa(c.Concurrency)})
		}
	}
	return pos, ticks
}

func (r *Report) latencyPlot(path string) error {
	pos, ticks := r.concurrencyTicks()
	var row []*plot.Plot
	for _, sh := range shapes {
		p := plot.New()
		p.Title.Text = sh.Name
		p.X.Label.Text = "concurrency"
		p.Y.Label.Text = "latency (ms, log)"
		p.X.Tick.Marker = ticks
		p.X.Min, p.X.Max = -0.2, float64(len(pos))-0.8
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.Legend.Top, p.Legend.Left = true, true
		for k, pc := range []struct {
			name string
			get  func(Side) time.Duration
		}{{"p50", func(s Side) time.Duration { return s.P50 }}, {"p99", func(s Side) time.Duration { return s.P99 }},
			{"p99.9", func(s Side) time.Duration { return s.P999 }}} {
			for _, side := range []struct {
				name   string
				get    func(Cell) Side
				dashed bool
			}{{"proxy", func(c Cell) Side { return c.Proxy }, false}, {"baseline", func(c Cell) Side { return c.Baseline }, true}} {
				var xys plotter.XYs
				for _, c := range r.Cells {
					if c.Shape == sh.Name {
						ms := float64(pc.get(side.get(c))) / float64(time.Millisecond)
						xys = append(xys, plotter.XY{X: pos[c.Concurrency], Y: max(ms, 0.001)})
					}
				}
				l, pts, err := plotter.NewLinePoints(xys)
				if err != nil {
					return fmt.Errorf("bench: plot: %w", err)
				}
				l.Color, pts.Color = palette[k], palette[k]
				if side.dashed {
					l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
					pts.Shape = draw.BoxGlyph{}
				}
				p.Add(l, pts)
				p.Legend.Add(side.name+" "+pc.name, l, pts)
			}
		}
		row = append(row, p)
	}
	return savePlots(path, row, 15*vg.Inch, 5*vg.Inch)
}

func (r *Report) throughputPlot(path string) error {
	pos, ticks := r.concurrencyTicks()
	ratios := []struct {
		title string
		ratio func(Cell) float64
	}{
		{"throughput: proxy / tuned baseline", Cell.Ratio},
		{"CPU per request: baseline / proxy", func(c Cell) float64 { return ratio(1, c.CPURatio()) }},
	}
	var row []*plot.Plot
	for _, rt := range ratios {
		p := plot.New()
		p.Title.Text = rt.title + " (1.0 = as good)"
		p.X.Label.Text = "concurrency"
		p.Y.Label.Text = "ratio"
		p.X.Tick.Marker = ticks
		p.X.Min, p.X.Max = -0.2, float64(len(pos))-0.8
		p.Y.Min, p.Y.Max = 0, 1.1
		p.Legend.Left = true
		for k, sh := range shapes {
			var xys plotter.XYs
			for _, c := range r.Cells {
				if c.Shape == sh.Name {
					xys = append(xys, plotter.XY{X: pos[c.Concurrency], Y: rt.ratio(c)})
				}
			}
			l, pts, err := plotter.NewLinePoints(xys)
			if err != nil {
				return fmt.Errorf("bench: plot: %w", err)
			}
			l.Color, pts.Color = palette[k], palette[k]
			p.Add(l, pts)
			p.Legend.Add(sh.Name, l, pts)
		}
		for _, t := range []struct {
			y    float64
			name string
		}{{0.95, "GET target 0.95×"}, {0.90, "POST target 0.90×"}} {
			l, err := plotter.NewLine(plotter.XYs{{X: p.X.Min, Y: t.y}, {X: p.X.Max, Y: t.y}})
			if err != nil {
				return fmt.Errorf("bench: plot: %w", err)
			}
			l.Color = palette[3]
			l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
			p.Add(l)
			p.Legend.Add(t.name, l)
		}
		p.Add(plotter.NewGrid())
		row = append(row, p)
	}
	return savePlots(path, row, 12*vg.Inch, 4.5*vg.Inch)
}

// savePlots draws plots side by side into one PNG.
func savePlots(path string, row []*plot.Plot, w, h vg.Length) error {
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Millimeter * 4, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 2}
	canvases := plot.Align([][]*plot.Plot{row}, tiles, dc)
	for i, p := range row {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: plot: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	return nil
}
