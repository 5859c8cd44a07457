// Command recipe plots training curves from the fashion example's --json
// output (one object per epoch; gorun's "[0] " prefix is accepted): test
// accuracy and training loss per epoch, one line per run, into a PNG.
//
//	go run ./benchmarks/recipe -out curves.png NAME=FILE.jsonl ...
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"image/color"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

type epoch struct {
	Epoch     int      `json:"epoch"`
	TrainLoss float64  `json:"train_loss"`
	TestAcc   *float64 `json:"test_acc"`
}

// readRun returns the epochs of one run's JSON lines.
func readRun(path string) ([]epoch, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []epoch
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "{"); i >= 0 {
			line = line[i:]
		} else {
			continue
		}
		var e epoch
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Epoch == 0 {
			continue
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no epoch reports", path)
	}
	return out, sc.Err()
}

func main() {
	out := flag.String("out", "curves.png", "PNG to write")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: recipe -out FILE.png NAME=RUN.jsonl ...")
		os.Exit(2)
	}
	acc, loss := plot.New(), plot.New()
	acc.Title.Text, acc.X.Label.Text, acc.Y.Label.Text = "test accuracy", "epoch", "accuracy (%)"
	loss.Title.Text, loss.X.Label.Text, loss.Y.Label.Text = "training loss", "epoch", "loss"
	palette := []color.Color{color.RGBA{0x1f, 0x77, 0xb4, 0xff}, color.RGBA{0xd6, 0x27, 0x28, 0xff}, color.RGBA{0x2c, 0xa0, 0x2c, 0xff}, color.RGBA{0x94, 0x67, 0xbd, 0xff}, color.RGBA{0xff, 0x7f, 0x0e, 0xff}}
	for i, arg := range flag.Args() {
		name, path, ok := strings.Cut(arg, "=")
		if !ok {
			name, path = arg, arg
		}
		run, err := readRun(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "recipe:", err)
			os.Exit(1)
		}
		var a, l plotter.XYs
		for _, e := range run {
			if e.TestAcc != nil {
				a = append(a, plotter.XY{X: float64(e.Epoch), Y: 100 * *e.TestAcc})
			}
			l = append(l, plotter.XY{X: float64(e.Epoch), Y: e.TrainLoss})
		}
		for _, pl := range []struct {
			p   *plot.Plot
			xys plotter.XYs
		}{{acc, a}, {loss, l}} {
			line, points, err := plotter.NewLinePoints(pl.xys)
			if err != nil {
				fmt.Fprintln(os.Stderr, "recipe:", err)
				os.Exit(1)
			}
			line.Color, points.Color = palette[i%len(palette)], palette[i%len(palette)]
			pl.p.Add(line, points)
			pl.p.Legend.Add(name, line)
		}
		last := run[len(run)-1]
		if last.TestAcc != nil {
			fmt.Printf("%s: final epoch %d test accuracy %.2f%%\n", name, last.Epoch, 100**last.TestAcc)
		}
	}
	acc.Legend.Top, acc.Legend.Left = false, false
	loss.Legend.Top = true
	img := vgimg.New(12*vg.Inch, 4.5*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 4}
	canvases := plot.Align([][]*plot.Plot{{acc, loss}}, tiles, dc)
	acc.Draw(canvases[0][0])
	loss.Draw(canvases[0][1])
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recipe:", err)
		os.Exit(1)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		fmt.Fprintln(os.Stderr, "recipe:", err)
		os.Exit(1)
	}
	if err := f.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "recipe:", err)
		os.Exit(1)
	}
}
