package timeline

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func parseRecorder(t *testing.T, r *Recorder) *Trace {
	t.Helper()
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	tr, err := Parse(&buf)
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if err := Check(tr); err != nil {
		t.Fatalf("Check: %v\n%s", err, buf.String())
	}
	return tr
}

// TestOffCostsNothing: a nil recorder (tracing off) allocates nothing, whatever is called.
func TestOffCostsNothing(t *testing.T) {
	var r *Recorder
	allocs := testing.AllocsPerRun(1000, func() {
		tid := r.Thread("collective world")
		s := r.Now()
		r.Complete(tid, "AllReduce", "collective", s, r.Now(), Str("dtype", "fp32"), Int("bytes", 4096), Int("seq", 7))
		r.Instant(tid, "queued", "collective", s, Int("seq", 7))
		r.Begin(tid, "step", "ddp", Int("step", 1))
		r.End(tid)
	})
	if allocs != 0 {
		t.Fatalf("a nil recorder allocates %v times per call sequence, want 0", allocs)
	}
	if r.Enabled() || r.Flush() != nil || r.Close() != nil || r.Dropped() != 0 {
		t.Fatal("a nil recorder is not inert")
	}
}

// TestOnRecordsWithoutAllocating: once the ring is full, recording allocates nothing
// either (arguments are stored inline).
func TestOnRecordsWithoutAllocating(t *testing.T) {
	r := New(Config{MaxEvents: 64})
	tid := r.Thread("t")
	for i := 0; i < 64; i++ {
		r.Instant(tid, "warm", "", r.Now())
	}
	allocs := testing.AllocsPerRun(1000, func() {
		s := r.Now()
		r.Complete(tid, "AllReduce", "collective", s, r.Now(), Str("dtype", "fp32"), Int("bytes", 4096), Int("seq", 7))
	})
	if allocs != 0 {
		t.Fatalf("recording allocates %v times per event, want 0", allocs)
	}
}

func TestWriteParsesAndNests(t *testing.T) {
	r := New(Config{Rank: 3})
	a, b := r.Thread("collective world"), r.Thread("ddp \"train\"\n")
	if r.Thread("collective world") != a || a == b {
		t.Fatal("Thread does not give one id per name")
	}
	r.Begin(b, "step", "ddp", Int("step", 0))
	s := r.Now()
	r.Complete(b, "forward", "ddp", s, s+1500)
	r.Complete(b, "backward", "ddp", s+1500, s+5000)
	r.Complete(b, "backward layer 2", "ddp", s+1500, s+3000, Int("layer", 2))
	r.Instant(a, "queued AllReduce", "collective", s+2000, Int("seq", 0))
	r.Complete(a, "AllReduce", "collective", s+2500, s+9000, Str("algorithm", "ring"), Int("bytes", 4096))
	r.End(b)
	tr := parseRecorder(t, r)
	names := map[string]int{}
	for _, e := range tr.TraceEvents {
		if *e.Pid != 3 {
			t.Errorf("event %q has pid %d, want the rank 3", e.Name, *e.Pid)
		}
		names[e.Ph+" "+e.Name]++
	}
	for _, want := range []string{"M process_name", "M thread_name", "B step", "E ", "X forward", "X backward layer 2", "i queued AllReduce", "X AllReduce"} {
		if names[want] == 0 {
			t.Errorf("no %q event; have %v", want, names)
		}
	}
	for _, e := range tr.TraceEvents {
		if e.Name == "AllReduce" {
			var alg string
			var n int
			if !e.Arg("algorithm", &alg) || alg != "ring" || !e.Arg("bytes", &n) || n != 4096 {
				t.Errorf("AllReduce args %s", e.Args)
			}
			if *e.Dur != 6.5 {
				t.Errorf("AllReduce dur %v µs, want 6.5", *e.Dur)
			}
		}
	}
	var step *Event
	for _, e := range tr.Slices() {
		if e.Name == "step" {
			step = &e
		}
	}
	if step == nil || step.Ph != "X" || step.End() <= step.Start() {
		t.Errorf("Slices did not make the B/E pair one interval: %+v", step)
	}
	if _, ok := tr.OtherData["start_unix_ns"].(json.Number); !ok {
		t.Errorf("otherData has no exact start_unix_ns: %v", tr.OtherData)
	}
}

// TestRingDropsOldest: a full ring keeps the newest events, says how many it dropped,
// and leaves out an E whose B was dropped.
func TestRingDropsOldest(t *testing.T) {
	r := New(Config{MaxEvents: 10})
	tid := r.Thread("t")
	r.Begin(tid, "outer", "")
	for i := 0; i < 20; i++ {
		r.Instant(tid, "tick", "", r.Now(), Int("i", int64(i)))
	}
	r.End(tid) // its B is gone
	if r.Dropped() != 12 {
		t.Fatalf("dropped %d, want 12", r.Dropped())
	}
	tr := parseRecorder(t, r)
	var ticks, notes int
	first := int64(-1)
	for _, e := range tr.TraceEvents {
		switch e.Name {
		case "tick":
			ticks++
			var i int64
			e.Arg("i", &i)
			if first < 0 {
				first = i
			}
		case "timeline: older events dropped":
			notes++
		}
	}
	if ticks != 9 || first != 11 || notes != 1 {
		t.Fatalf("kept %d ticks from %d with %d drop notes, want 9 from 11 with 1", ticks, first, notes)
	}
	if d, _ := tr.OtherData["dropped_events"].(json.Number).Int64(); d != 12 {
		t.Fatalf("otherData.dropped_events = %v", tr.OtherData["dropped_events"])
	}
}

func TestCheckFindsBadTraces(t *testing.T) {
	for name, js := range map[string]string{
		"unended B":      `[{"ph":"B","pid":0,"tid":1,"ts":1,"name":"a"}]`,
		"stray E":        `[{"ph":"E","pid":0,"tid":1,"ts":1}]`,
		"crossing B/E":   `[{"ph":"B","pid":0,"tid":1,"ts":1,"name":"a"},{"ph":"X","pid":0,"tid":1,"ts":2,"dur":5,"name":"x"},{"ph":"E","pid":0,"tid":1,"ts":3}]`,
		"overlapping X":  `[{"ph":"X","pid":0,"tid":1,"ts":1,"dur":5,"name":"a"},{"ph":"X","pid":0,"tid":1,"ts":3,"dur":5,"name":"b"}]`,
		"X without dur":  `[{"ph":"X","pid":0,"tid":1,"ts":1,"name":"a"}]`,
		"no pid":         `[{"ph":"X","tid":1,"ts":1,"dur":1,"name":"a"}]`,
		"no ts":          `[{"ph":"i","pid":0,"tid":1,"name":"a"}]`,
		"unknown phase":  `[{"ph":"Q","pid":0,"tid":1,"ts":1,"name":"a"}]`,
		"bad scope":      `[{"ph":"i","pid":0,"tid":1,"ts":1,"name":"a","s":"x"}]`,
		"negative dur":   `[{"ph":"X","pid":0,"tid":1,"ts":1,"dur":-1,"name":"a"}]`,
		"nameless event": `[{"ph":"X","pid":0,"tid":1,"ts":1,"dur":1}]`,
	} {
		tr, err := Parse(strings.NewReader(js))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if Check(tr) == nil {
			t.Errorf("%s: Check found nothing wrong in %s", name, js)
		}
	}
	ok := `{"traceEvents":[{"ph":"B","pid":0,"tid":1,"ts":1,"name":"a"},{"ph":"X","pid":0,"tid":1,"ts":2,"dur":1,"name":"x"},
	{"ph":"X","pid":0,"tid":1,"ts":2.5,"dur":0.5,"name":"y"},{"ph":"E","pid":0,"tid":1,"ts":3},{"ph":"X","pid":0,"tid":2,"ts":2,"dur":9,"name":"z"}]}`
	tr, err := Parse(strings.NewReader(ok))
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(tr); err != nil {
		t.Fatalf("Check refused a valid trace: %v", err)
	}
	if _, err := Parse(strings.NewReader(`{"traceEvents":[{"ph":`)); err == nil {
		t.Fatal("Parse accepted truncated JSON")
	}
}

func TestRankPath(t *testing.T) {
	for in, want := range map[string]string{
		"trace.json": "trace.rank3.json", "/a/b.c/trace": "/a/b.c/trace.rank3", "t.x.json": "t.x.rank3.json",
	} {
		if got := RankPath(in, 3); got != want {
			t.Errorf("RankPath(%q) = %q, want %q", in, got, want)
		}
		if ok, _ := filepath.Match(RankGlob(in), want); !ok {
			t.Errorf("RankGlob(%q) = %q does not match %q", in, RankGlob(in), want)
		}
	}
}

// TestMergeAlignsRanks: two ranks whose recorders started 2 ms apart land 2 ms apart in the
// merged trace, one process row each.
func TestMergeAlignsRanks(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for rank := 0; rank < 2; rank++ {
		p := RankPath(filepath.Join(dir, "trace.json"), rank)
		r := New(Config{Path: p, Rank: rank})
		tid := r.Thread("collective world")
		r.Complete(tid, "AllReduce", "collective", 1000, 5000, Int("seq", 0))
		paths = append(paths, p)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Rewrite rank 1's start to be exactly 2 ms after rank 0's.
	setStart := func(p string, ns int64) {
		b, _ := os.ReadFile(p)
		tr, _ := Parse(bytes.NewReader(b))
		old := tr.OtherData["start_unix_ns"].(json.Number).String()
		b = bytes.Replace(b, []byte(`"start_unix_ns":`+old), []byte(`"start_unix_ns":`+strconv.FormatInt(ns, 10)), 1)
		os.WriteFile(p, b, 0o644)
	}
	setStart(paths[0], 1_000_000_000)
	setStart(paths[1], 1_002_000_000)
	out := filepath.Join(dir, "trace.json")
	if err := Merge(out, []string{paths[1], paths[0]}); err != nil {
		t.Fatal(err)
	}
	f, _ := os.Open(out)
	defer f.Close()
	tr, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(tr); err != nil {
		t.Fatal(err)
	}
	start := map[int]float64{}
	procs := map[int]bool{}
	for _, e := range tr.TraceEvents {
		if e.Name == "AllReduce" {
			start[*e.Pid] = *e.Ts
		}
		if e.Name == "process_name" {
			procs[*e.Pid] = true
		}
	}
	if len(procs) != 2 || start[1]-start[0] != 2000 {
		t.Fatalf("process rows %v, AllReduce starts %v µs: want 2 rows, 2000 µs apart", procs, start)
	}
	if err := Merge(out, []string{paths[0], paths[0]}); err == nil || !strings.Contains(err.Error(), "both rank 0") {
		t.Fatalf("merging one rank twice: %v", err)
	}
	if err := Merge(out, []string{filepath.Join(dir, "absent.json")}); err == nil {
		t.Fatal("merging a missing file succeeded")
	}
}

// FuzzParseCheck: Parse and Check never panic on any bytes (Merge reads files that may
// come from other machines).
func FuzzParseCheck(f *testing.F) {
	f.Add([]byte(`{"traceEvents":[{"ph":"B","pid":0,"tid":1,"ts":1,"name":"a"},{"ph":"E","pid":0,"tid":1,"ts":2}]}`))
	f.Add([]byte(`[{"ph":"X","pid":0,"tid":1,"ts":1,"dur":5,"name":"a"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := Parse(bytes.NewReader(b))
		if err != nil {
			return
		}
		_ = Check(tr)
	})
}

func TestFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		return func(k string) string {
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i] == k {
					return kv[i+1]
				}
			}
			return ""
		}
	}
	if r, err := fromEnv(env()); r != nil || err != nil {
		t.Fatalf("without GORUN_TIMELINE: %v, %v; want no recorder", r, err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "trace.json")
	r, err := fromEnv(env("GORUN_TIMELINE", file, "RANK", "3"))
	if err != nil || r == nil || r.Path() != filepath.Join(dir, "trace.rank3.json") {
		t.Fatalf("fromEnv: %v, %v", r, err)
	}
	// The file exists at once, as a valid empty trace.
	f, err := os.Open(r.Path())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Parse(f)
	f.Close()
	if err != nil || Check(tr) != nil {
		t.Fatalf("the initial file: %v", err)
	}
	if _, err := fromEnv(env("GORUN_TIMELINE", filepath.Join(dir, "missing", "t.json"), "RANK", "1")); err == nil ||
		!strings.Contains(err.Error(), "GORUN_TIMELINE") || !strings.Contains(err.Error(), "rank 1") {
		t.Fatalf("a file in a missing directory: %v", err)
	}
	if _, err := fromEnv(env("GORUN_TIMELINE", file, "RANK", "x")); err == nil || !strings.Contains(err.Error(), "RANK") {
		t.Fatalf("a bad RANK: %v", err)
	}
}
