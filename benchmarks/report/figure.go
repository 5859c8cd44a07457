package report

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// figure is a grid of plots under one title, saved as SVG and PNG.
type figure struct {
	title string
	cells [][]*plot.Plot // rows of plots; a nil cell is left empty
	cellW vg.Length
	cellH vg.Length
	// plainTiles lays the plots out in equal tiles instead of aligning their axes with
	// plot.Align, which leaves a blank band above plots with a logarithmic y axis.
	plainTiles bool
}

// titleLine is the height of one line of a figure's title.
const titleLine = 0.28 * vg.Inch

// save writes base.svg and base.png in dir and returns their paths.
func (f figure) save(dir, base string) ([]string, error) {
	rows := len(f.cells)
	if rows == 0 {
		return nil, fmt.Errorf("figure %s: no plots", base)
	}
	cols := 0
	for _, r := range f.cells {
		cols = max(cols, len(r))
	}
	w := f.cellW * vg.Length(cols)
	titleHeight := titleLine*vg.Length(strings.Count(strings.TrimRight(f.title, "\n"), "\n")+1) + 0.15*vg.Inch
	h := f.cellH*vg.Length(rows) + titleHeight
	var paths []string
	for _, format := range []string{"svg", "png"} {
		c, err := draw.NewFormattedCanvas(w, h, format)
		if err != nil {
			return nil, err
		}
		dc := draw.New(c)
		// White background: PNG viewers with dark themes would otherwise show black text on
		// a transparent (dark) page.
		dc.SetColor(color.White)
		dc.Fill(dc.Rectangle.Path())

		sty := text.Style{
			Color:   color.Black,
			Font:    font.From(plot.DefaultFont, 14),
			XAlign:  draw.XCenter,
			YAlign:  draw.YTop,
			Handler: plot.DefaultTextHandler,
		}
		dc.FillText(sty, vg.Point{X: w / 2, Y: h - 0.1*vg.Inch}, f.title)

		grid := make([][]*plot.Plot, rows)
		for i, r := range f.cells {
			grid[i] = make([]*plot.Plot, cols)
			copy(grid[i], r)
		}
		area := draw.Crop(dc, 0, 0, 0, -titleHeight)
		tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Millimeter * 4, PadY: vg.Millimeter * 4,
			PadTop: vg.Millimeter * 2, PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 3}
		var canvases [][]draw.Canvas
		if f.plainTiles {
			canvases = make([][]draw.Canvas, rows)
			for i := range grid {
				canvases[i] = make([]draw.Canvas, cols)
				for j := range grid[i] {
					canvases[i][j] = tiles.At(area, j, i)
				}
			}
		} else {
			canvases = plot.Align(grid, tiles, area)
		}
		for i := range grid {
			for j, p := range grid[i] {
				if p != nil {
					drawAtOrigin(p, canvases[i][j])
				}
			}
		}
		path := filepath.Join(dir, base+"."+format)
		out, err := os.Create(path)
		if err != nil {
			return nil, err
		}
		if _, err := c.WriteTo(out); err != nil {
			out.Close()
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		if err := out.Close(); err != nil {
			return nil, err
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// drawAtOrigin draws p into the area of c, translated so that the plot sees a canvas whose
// corner is (0, 0): gonum's padding of log-scaled axes misplaces the data area inside a
// canvas that does not start at the origin (a blank band appears above the data).
func drawAtOrigin(p *plot.Plot, c draw.Canvas) {
	c.Push()
	defer c.Pop()
	c.Translate(c.Min)
	size := vg.Point{X: c.Max.X - c.Min.X, Y: c.Max.Y - c.Min.Y}
	p.Draw(draw.Canvas{Canvas: c.Canvas, Rectangle: vg.Rectangle{Max: size}})
}
