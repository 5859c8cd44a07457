package main

import (
	"bytes"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/timeline"
)

// writeRanks records a small two-rank trace (steps with layers and an AllReduce each) and
// returns the rank files.
func writeRanks(t *testing.T, dir string) []string {
	t.Helper()
	var paths []string
	for rank := range 2 {
		p := timeline.RankPath(filepath.Join(dir, "trace.json"), rank)
		r := timeline.New(timeline.Config{Path: p, Rank: rank})
		coll, train := r.Thread("collective world"), r.Thread("ddp train")
		for step := range int64(3) {
			base := step * 10_000_000
			r.Complete(train, "forward", "ddp", base, base+2_000_000)
			r.Complete(train, "backward", "ddp", base+2_000_000, base+6_000_000)
			r.Complete(train, "backward 2 fc2", "ddp", base+2_000_000, base+3_000_000)
			r.Complete(train, "backward 0 fc1", "ddp", base+3_000_000, base+6_000_000)
			r.Complete(coll, "AllReduce", "collective", base+3_100_000, base+7_000_000, timeline.Int("seq", step))
			r.Complete(train, "wait", "ddp", base+6_000_000, base+7_000_000)
			r.Complete(train, "optimizer", "ddp", base+7_000_000, base+8_000_000)
		}
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}

func TestMergeCheckPlot(t *testing.T) {
	dir := t.TempDir()
	ins := writeRanks(t, dir)
	out := filepath.Join(dir, "all.json")
	var so, se bytes.Buffer
	if code := run(append([]string{"merge", "-o", out}, ins...), &so, &se); code != 0 {
		t.Fatalf("merge: exit %d: %s", code, se.String())
	}
	if code := run([]string{"check", out, ins[0]}, &so, &se); code != 0 || !strings.Contains(so.String(), "valid") {
		t.Fatalf("check: exit %d: %s %s", code, so.String(), se.String())
	}
	png1 := filepath.Join(dir, "t.png")
	if code := run([]string{"plot", "-o", png1, out}, &so, &se); code != 0 {
		t.Fatalf("plot: exit %d: %s", code, se.String())
	}
	f, err := os.Open(png1)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("plot wrote no PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 300 || b.Dy() < 100 {
		t.Fatalf("PNG is %v", b)
	}
	if code := run([]string{"plot", "-o", png1, "-window", "10:20", out}, &so, &se); code != 0 {
		t.Fatalf("plot -window: exit %d: %s", code, se.String())
	}
	// -last-steps needs DDP step slices; this trace has none.
	se.Reset()
	if code := run([]string{"plot", "-o", png1, "-last-steps", "1", out}, &so, &se); code == 0 || !strings.Contains(se.String(), "no DDP step") {
		t.Fatalf("plot -last-steps without steps: exit %d: %s", code, se.String())
	}
}

func TestBadInvocations(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"traceEvents":[{"ph":"B","pid":0,"tid":1,"ts":1,"name":"open"}]}`), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{nil, 2, "usage"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"merge", "a.json"}, 2, "need -o"},
		{[]string{"merge", "-o", filepath.Join(dir, "o.json"), filepath.Join(dir, "missing.json")}, 1, "missing.json"},
		{[]string{"check", bad}, 1, "never ended"},
		{[]string{"plot", "-o", filepath.Join(dir, "x.png"), bad}, 1, "never ended"},
		{[]string{"plot", "-o", filepath.Join(dir, "x.png"), "-last-steps", "-1", bad}, 2, "negative"},
		{[]string{"plot", "-o", filepath.Join(dir, "x.png"), "-window", "5:2", bad}, 2, "FROM:TO"},
	} {
		var so, se bytes.Buffer
		code := run(c.args, &so, &se)
		if code != c.code || !strings.Contains(se.String(), c.msg) {
			t.Errorf("timeline %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, se.String(), c.code, c.msg)
		}
	}
}
