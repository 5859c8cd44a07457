package report

import (
	"bytes"
	"encoding/xml"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixture builds results as the scaling command would: runs for 1, 2, 4 ranks of two
// models, weak and strong, fp32 and fp16, two repetitions; a sweep on 2 and 4 ranks.
func fixture(t *testing.T) *Results {
	t.Helper()
	s := Settings{NProc: []int{1, 2, 4}, Models: []string{"mlp", "cnn"}, Modes: []string{"weak", "strong"},
		Compress: []string{"none", "fp16"}, Reps: 2, Batch: 32, GlobalBatch: 32, Steps: 10, ThreadsPerRank: 1}
	m := Machine{CPUModel: "Test CPU", Cores: 2, MemoryBytes: 8 << 30, GoVersion: "go1.26", GOMAXPROCSPerRank: 1, Commit: "abc", Date: "2025-01-01T00:00:00Z"}
	var runs []Run
	for _, model := range s.Models {
		base := map[string]float64{"mlp": 1000, "cnn": 200}[model]
		for rep := 0; rep < s.Reps; rep++ {
			jit := 1 + 0.02*float64(rep)
			runs = append(runs, Run{Model: model, Mode: "weak", Compress: "none", Ranks: 1, Rep: rep, BatchPerRank: 32, GlobalBatch: 32,
				SamplesPerS: base * jit, StepMS: 32 / base * 1e3, ComputeMS: 0.8 * 32 / base * 1e3})
			for _, mode := range s.Modes {
				for _, comp := range s.Compress {
					for _, n := range []int{2, 4} {
						b, _ := BatchFor(mode, n, s.Batch, s.GlobalBatch)
						eff := 0.9 / float64(n/2)
						if comp == "fp16" {
							eff *= 1.05
						}
						tput := base * float64(n) * eff * jit
						step := float64(b*n) / tput * 1e3
						runs = append(runs, Run{Model: model, Mode: mode, Compress: comp, Ranks: n, Rep: rep, BatchPerRank: b, GlobalBatch: b * n,
							SamplesPerS: tput, StepMS: step, ComputeMS: 0.6 * step, CommMS: 0.5 * step, ExposedCommMS: 0.3 * step})
					}
				}
			}
		}
	}
	pts, notes, err := Aggregate(runs, s, m)
	if err != nil {
		t.Fatal(err)
	}
	r := &Results{Schema: SchemaVersion, Machine: m, Settings: s, Runs: runs, Scaling: pts, Notes: notes}
	truth := AlphaBeta{Alpha: 80e-6, Beta: 1 / 0.3e9}
	for _, n := range []int{2, 4} {
		for _, dt := range []string{"fp32", "fp16"} {
			for b := int64(1 << 10); b <= 1<<22; b *= 4 {
				sec := truth.Predict(n, float64(b))
				if dt == "fp16" {
					sec = AlphaBeta{Alpha: truth.Alpha, Beta: truth.Beta / 2}.Predict(n, float64(b))
				}
				alg := float64(b) / sec / 1e9
				r.AllReduce = append(r.AllReduce, SweepRow{Op: "allreduce", Ranks: n, Bytes: b, Dtype: dt, TimeUS: sec * 1e6, AlgBWGBs: alg, BusBWGBs: BusBandwidth(alg, n), MaxRelErr: map[string]float64{"fp32": 1e-7, "fp16": 5e-4}[dt]})
			}
		}
		r.AllReduce = append(r.AllReduce, SweepRow{Op: OpRingExchange, Ranks: n, Bytes: 1 << 22, Dtype: "raw", LinkGBs: 0.35})
	}
	var fnotes []string
	r.Fits, fnotes = FitSweep(r.AllReduce, 0)
	r.Notes = append(r.Notes, fnotes...)
	ws := []Workload{{Name: "mlp", StepSeconds: 0.032, ComputeSeconds: 0.0256, GradBytes: 4 * 669706}, {Name: "cnn", StepSeconds: 0.16, ComputeSeconds: 0.128, GradBytes: 4 * 61706}}
	r.Projection, err = BuildProjection(ws, r.Fits[0].Alpha, "fitted")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestAggregate(t *testing.T) {
	r := fixture(t)
	if len(r.Notes) != 0 {
		t.Fatalf("unexpected notes %q", r.Notes)
	}
	// 2 models × 2 modes × 2 compressions × 3 rank counts.
	if len(r.Scaling) != 24 {
		t.Fatalf("%d points, want 24", len(r.Scaling))
	}
	for _, p := range r.Scaling {
		// The fixture's efficiencies: 0.9 on 2 ranks, 0.45 on 4, ×1.05 with fp16, with
		// each repetition's jitter against the median baseline (jitter 1 and 1.02,
		// median 1.01).
		want := 1.0
		if p.Ranks > 1 {
			want = 0.9 / float64(p.Ranks/2)
			if p.Compress == "fp16" {
				want *= 1.05
			}
		}
		if math.Abs(p.Efficiency.Median-want) > 1e-9 || math.Abs(p.Efficiency.Min-want/1.01) > 1e-9 {
			t.Errorf("%+v: efficiency %+v, want median %v", p, p.Efficiency, want)
		}
		if p.Oversubscribed != (p.Ranks > 2) {
			t.Errorf("%s N=%d oversubscribed=%v on 2 cores", p.Model, p.Ranks, p.Oversubscribed)
		}
		if p.Mode == "strong" && p.BatchPerRank*p.Ranks != 32 {
			t.Errorf("strong scaling point with batch %d × %d ranks", p.BatchPerRank, p.Ranks)
		}
	}
	// A missing configuration is named, not silently dropped.
	_, notes, err := Aggregate(r.Runs[:1], r.Settings, r.Machine)
	if err != nil || len(notes) == 0 || !strings.Contains(strings.Join(notes, "\n"), "cnn") {
		t.Fatalf("notes %q, err %v", notes, err)
	}
	if _, _, err := Aggregate(nil, Settings{Models: []string{"m"}, Modes: []string{"strong"}, NProc: []int{3}, GlobalBatch: 32, Compress: []string{"none"}}, Machine{}); err == nil {
		t.Fatal("global batch 32 on 3 ranks accepted")
	}
}

func TestFitSweepRecoversFixture(t *testing.T) {
	r := fixture(t)
	// Oversubscribed rank counts are left out when others can be fitted: triple the
	// 4-rank times and the fit limited to 2 ranks still recovers the truth.
	var skewed []SweepRow
	for _, s := range r.AllReduce {
		if s.Ranks == 4 {
			s.TimeUS *= 3
		}
		skewed = append(skewed, s)
	}
	fits, notes := FitSweep(skewed, 2)
	if len(fits) != 2 || len(notes) != 0 || len(fits[0].Ranks) != 1 || fits[0].Ranks[0] != 2 || math.Abs(fits[0].Alpha-80e-6)/80e-6 > 1e-6 {
		t.Fatalf("limited fit %+v, notes %q", fits, notes)
	}
	if fits, _ := FitSweep(skewed, 0); len(fits[0].Ranks) != 2 || math.Abs(fits[0].Alpha-80e-6)/80e-6 < 0.01 {
		t.Fatalf("unlimited fit should use both rank counts (and be off): %+v", fits[0])
	}
	// No rank count within the limit: fit what there is.
	if fits, _ := FitSweep(skewed, 1); len(fits) != 2 || len(fits[0].Ranks) != 2 {
		t.Fatalf("fallback fit %+v", fits)
	}
	if len(r.Fits) != 2 {
		t.Fatalf("fits %+v", r.Fits)
	}
	for _, f := range r.Fits {
		wantBeta := 1 / 0.3e9
		if f.Dtype == "fp16" {
			wantBeta /= 2
		}
		if math.Abs(f.Alpha-80e-6)/80e-6 > 1e-6 || math.Abs(f.Beta-wantBeta)/wantBeta > 1e-6 || f.CeilingGBs != 0.35 {
			t.Errorf("%s: %+v", f.Dtype, f)
		}
	}
}

func TestRender(t *testing.T) {
	r := fixture(t)
	dir := t.TempDir()
	if d := os.Getenv("REPORT_TEST_OUT"); d != "" {
		dir = d // to look at the rendered fixture: REPORT_TEST_OUT=/tmp/x go test -run Render
	}
	paths, err := WritePlots(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{PlotEfficiency, PlotThroughput, PlotBreakdown, PlotBusBW, PlotAlphaBeta, PlotProjection}
	if len(paths) != 2*len(want) {
		t.Fatalf("wrote %v", paths)
	}
	for _, base := range want {
		CheckPNG(t, filepath.Join(dir, base+".png"))
		CheckSVG(t, filepath.Join(dir, base+".svg"))
	}
	var md bytes.Buffer
	if err := WriteMarkdown(&md, r, paths); err != nil {
		t.Fatal(err)
	}
	text := md.String()
	for _, s := range []string{
		"Ranks outnumber cores", "**2 cores**", "Test CPU", "| mlp | weak | fp32 |", "| cnn | strong | fp16 |",
		"N=4 ⚠", "α per ring step", "Sensitivity to α", "at most 2/N efficiency", "(50% at 4 ranks)", "80 µs", "not a measurement", "Horovod", "![efficiency](efficiency.png)",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("report.md lacks %q", s)
		}
	}
	// The headline efficiency of mlp weak fp32 on 2 ranks is 90%, in the table.
	if !strings.Contains(HeadlineTable(r), "| mlp | weak | fp32 | 1010 | 1818 | 1818 | 90% (89–91) | 45% |") {
		t.Errorf("headline table:\n%s", HeadlineTable(r))
	}
	// And the JSON round trip keeps everything.
	p := filepath.Join(dir, "results.json")
	if err := r.WriteJSON(p); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Scaling) != len(r.Scaling) || back.Projection == nil || len(back.Projection.Curves) != len(r.Projection.Curves) {
		t.Fatal("results.json round trip lost data")
	}
}

// CheckPNG fails t unless path is a decodable PNG of a plausible size.
func CheckPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if b := img.Bounds(); b.Dx() < 200 || b.Dy() < 200 {
		t.Fatalf("%s: %v pixels", path, b)
	}
}

// CheckSVG fails t unless path is well-formed XML with an <svg> root.
func CheckSVG(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root element %q", path, root)
	}
}

func TestFindings(t *testing.T) {
	r := fixture(t)
	fs := Findings(r)
	// Two models, each on 2 ranks (the largest count with a core per rank on 2 cores).
	if len(fs) != 2 {
		t.Fatalf("findings %q", fs)
	}
	// mlp in the fixture: 1010 samples/s on 1 rank (step 32 ms, compute 25.6 ms); on 2
	// ranks 90% efficiency, step 64·… = 35.2 ms with compute 60% and exposed 30% of it.
	mlp := fs[0]
	for _, want := range []string{"**mlp**, weak scaling on 2 ranks (fp32): 90% efficiency", "fp16 gradients: 94% efficiency"} {
		if !strings.Contains(mlp, want) {
			t.Errorf("finding %q lacks %q", mlp, want)
		}
	}
}
