package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"image/png"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/benchmarks/report"
)

// requirePrograms skips the test, saying why, when a program the session runs is not in
// the tree (or there is no go command to build it).
func requirePrograms(t *testing.T, repo string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("prerequisite missing: no go command in PATH to build gorun, the trainer and the AllReduce benchmark")
	}
	for _, dir := range []string{"cmd/gorun", "examples/fashion", "benchmarks/allreduce"} {
		m, _ := filepath.Glob(filepath.Join(repo, dir, "*.go"))
		if len(m) == 0 {
			t.Skipf("prerequisite missing: %s has no Go files yet", dir)
		}
	}
}

// TestQuickEndToEnd runs the real command (real gorun, real ranks over the real transport)
// with --quick on tiny settings, then checks what it wrote against what it was asked.
func TestQuickEndToEnd(t *testing.T) {
	repo, err := findRepo(".")
	if err != nil {
		t.Fatal(err)
	}
	requirePrograms(t, repo)
	out := t.TempDir()
	// GOMAXPROCS = all cores per rank, on 2 ranks: the machine is oversubscribed whatever
	// its size, so the report must say so.
	tpr := runtime.NumCPU()
	args := []string{"--quick", "--nproc", "1,2", "--model", "mlp,cnn", "--batch", "8", "--steps", "3",
		"--sweep-min", "4K", "--sweep-max", "64K", "--sweep-iters", "3", "--threads-per-rank", strconv.Itoa(tpr),
		"--run-timeout", "90s", "--out", out, "--repo", repo}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, args, &stdout, &stderr); code != 0 {
		t.Fatalf("scaling exited %d\nstderr:\n%s", code, stderr.String())
	}
	// Progress on the terminal: i of n, and the configuration.
	if !strings.Contains(stderr.String(), "[ 1/") && !strings.Contains(stderr.String(), "[1/") {
		t.Errorf("no progress lines on stderr:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), "train cnn weak+strong baseline, 1 rank(s) × batch 8") {
		t.Errorf("progress does not name the configurations:\n%s", stderr.String())
	}

	res, err := report.ReadJSON(filepath.Join(out, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	s := res.Settings
	if !s.Quick || strings.Join(s.Models, ",") != "mlp,cnn" || len(s.NProc) != 2 || s.Batch != 8 || s.GlobalBatch != 8 {
		t.Fatalf("settings %+v", s)
	}
	// Every configuration asked for has a scaling point with a real throughput; the
	// single-rank point is its own baseline.
	for _, model := range s.Models {
		for _, mode := range []string{"weak", "strong"} {
			for _, comp := range []string{"none", "fp16"} {
				for _, n := range []int{1, 2} {
					var pt *report.ScalingPoint
					for i := range res.Scaling {
						p := &res.Scaling[i]
						if p.Model == model && p.Mode == mode && p.Compress == comp && p.Ranks == n {
							pt = p
						}
					}
					if pt == nil {
						t.Errorf("no scaling point for %s %s %s N=%d", model, mode, comp, n)
						continue
					}
					wantBatch := 8
					if mode == "strong" {
						wantBatch = 8 / n
					}
					if !(pt.SamplesPerS.Median > 0) || pt.BatchPerRank != wantBatch || pt.Efficiency.N != 1 {
						t.Errorf("%s %s %s N=%d: %+v", model, mode, comp, n, pt)
					}
					if n == 1 && pt.Efficiency.Median != 1 {
						t.Errorf("%s %s single-rank efficiency %v, want 1", model, mode, pt.Efficiency.Median)
					}
					if n == 2 && !(pt.CommMS.Median > 0) {
						t.Errorf("%s %s %s on 2 ranks reports no communication time: %+v", model, mode, comp, pt.CommMS)
					}
					if !pt.Oversubscribed && n == 2 {
						t.Errorf("2 ranks × %d threads on %d cores not marked oversubscribed", tpr, runtime.NumCPU())
					}
				}
			}
		}
	}
	// The sweep ran on 2 ranks in both dtypes with its ceiling, and was fitted.
	ops := map[string]bool{}
	for _, r := range res.AllReduce {
		ops[r.Op+"/"+r.Dtype] = true
		if r.Ranks != 2 {
			t.Errorf("sweep row on %d ranks", r.Ranks)
		}
	}
	if !ops["allreduce/fp32"] || !ops["allreduce/fp16"] {
		t.Errorf("sweep lacks fp32 or fp16 AllReduce rows: %v", ops)
	}
	ceiling := false
	for _, r := range res.AllReduce {
		ceiling = ceiling || (r.Op == report.OpRingExchange && r.LinkGBs > 0)
	}
	if !ceiling {
		t.Errorf("no ring-exchange ceiling in the sweep: %v", ops)
	}
	if len(res.Fits) != 2 {
		t.Errorf("fits: %+v (notes %q)", res.Fits, res.Notes)
	}
	if res.Projection == nil || len(res.Projection.Curves) != len(s.Models)*len(report.ProjectionLinks)*len(report.ProjectionVariants) {
		t.Errorf("projection: %+v (notes %q)", res.Projection, res.Notes)
	}

	md, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Ranks outnumber cores", "| mlp | weak | fp32 |", "| cnn | strong | fp16 |", "## α-β fit", "not a measurement", runtime.Version()[:4]} {
		if !bytes.Contains(md, []byte(want)) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	for _, base := range []string{report.PlotEfficiency, report.PlotThroughput, report.PlotBreakdown, report.PlotBusBW, report.PlotAlphaBeta, report.PlotProjection} {
		checkPNG(t, filepath.Join(out, base+".png"))
		checkSVG(t, filepath.Join(out, base+".svg"))
	}
}

func checkPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() < 200 {
		t.Errorf("%s: %v pixels", path, b)
	}
}

func checkSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Errorf("%s: root element %q, want svg", path, root)
	}
}
