// Command flops measures where the CPU's floating-point throughput goes in
// the models of package models: the FMA peak of one core (tight assembly
// loops), the GEMM at the shapes of mlp and mlp-wide, every layer's forward
// and backward, and the whole training step (forward, softmax cross-entropy,
// backward, SGD), at batch 64 on one thread.
//
//	GOMAXPROCS=1 go run ./benchmarks/flops                 # table on stdout
//	GOMAXPROCS=1 go run ./benchmarks/flops -json out.jsonl # also JSON lines
//	go run ./benchmarks/flops -compare old.jsonl new.jsonl # before/after ratios
//
// benchmarks/flops/compare.sh builds this very command against an older
// commit (with -tags baseline, which drops the parts that need
// internal/sgemm) and runs the two binaries alternately, so the ratio is
// measured side by side in one run. Timings are the best of -reps: on a
// shared machine the fastest repetition is the least disturbed one. They are
// process CPU time by default (-clock cpu), which leaves out the time slices
// other processes take; -clock wall measures elapsed time.
//
// FLOPs: a layer's forward FLOPs are its Cost (2·in·out per sample for
// Linear, 2·C·k·k·Out per output position for Conv2D, plus the bias); its
// backward is twice that (dW and dx), once for the first layer with
// parameters, whose dx nobody needs (Sequential.BackwardParams skips it, and
// its backward is timed that way here). The step counts the
// forward and backward FLOPs of every layer; ReLU, pooling and the loss
// count as their Cost but are tiny next to the products.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/models"
)

// Record is one measurement, one JSON line.
type Record struct {
	Kind   string  `json:"kind"`            // peak, gemm, layer, step
	Model  string  `json:"model,omitempty"` // mlp, mlp-wide, cnn
	Name   string  `json:"name"`            // kernel, shape, layer/direction, "step"
	Ms     float64 `json:"ms"`              // best time of one call
	FLOPs  float64 `json:"flops"`           // floating-point operations of one call
	GFLOPs float64 `json:"gflops"`          // FLOPs / Ms
	PerSec float64 `json:"samples_per_s,omitempty"`
	Build  string  `json:"build"` // "new" or "baseline"
}

func main() {
	modelList := flag.String("models", "mlp,mlp-wide,cnn", "models to measure")
	batch := flag.Int("batch", 64, "batch size")
	reps := flag.Int("reps", 10, "timed repetitions per measurement (best is kept)")
	jsonOut := flag.String("json", "", "also write JSON lines to this file")
	compare := flag.Bool("compare", false, "compare two JSON-lines files: -compare OLD NEW (several runs may be concatenated)")
	skipGemm := flag.Bool("no-gemm", false, "skip the GEMM shapes")
	clock := flag.String("clock", "cpu", "what timings measure: cpu (this process's CPU time: other processes' time slices on a shared machine do not count) or wall")
	flag.Parse()
	if err := setClock(*clock); err != nil {
		fmt.Fprintln(os.Stderr, "flops:", err)
		os.Exit(2)
	}
	if *compare {
		if flag.NArg() != 2 {
			fmt.Fprintln(os.Stderr, "flops -compare OLD.jsonl NEW.jsonl")
			os.Exit(2)
		}
		if err := compareFiles(os.Stdout, flag.Arg(0), flag.Arg(1)); err != nil {
			fmt.Fprintln(os.Stderr, "flops:", err)
			os.Exit(1)
		}
		return
	}
	var sink io.Writer = io.Discard
	if *jsonOut != "" {
		f, err := os.Create(*jsonOut)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flops:", err)
			os.Exit(1)
		}
		defer f.Close()
		sink = f
	}
	enc := json.NewEncoder(sink)
	emit := func(r Record) {
		r.Build = buildName
		if r.Ms > 0 && r.FLOPs > 0 {
			r.GFLOPs = r.FLOPs / (r.Ms * 1e6)
		}
		enc.Encode(r)
		switch r.Kind {
		case "peak":
			fmt.Printf("peak  %-28s %8.1f GFLOP/s\n", r.Name, r.GFLOPs)
		case "gemm":
			fmt.Printf("gemm  %-44s %8.3f ms %8.1f GFLOP/s %5.0f%% of avx512-fma %5.0f%% of avx2-fma\n", r.Name, r.Ms, r.GFLOPs, 100*r.GFLOPs/peakOf("avx512-fma"), 100*r.GFLOPs/peakOf("avx2-fma"))
		case "layer":
			if strings.HasPrefix(r.Name, "conv") || strings.HasPrefix(r.Name, "fc") {
				fmt.Printf("layer %-8s %-20s %8.3f ms %8.1f GFLOP/s\n", r.Model, r.Name, r.Ms, r.GFLOPs)
			} else {
				fmt.Printf("layer %-8s %-20s %8.3f ms\n", r.Model, r.Name, r.Ms)
			}
		case "step":
			fmt.Printf("step  %-8s %-20s %8.3f ms %8.1f GFLOP/s %8.0f samples/s\n", r.Model, r.Name, r.Ms, r.GFLOPs, r.PerSec)
		}
	}
	fmt.Printf("# GOMAXPROCS=%d, %s, build %s, batch %d, best of %d, GEMM kernel %s, clock %s\n", runtime.GOMAXPROCS(0), runtime.GOARCH, buildName, *batch, *reps, gemmPeakKernel, *clock)
	for _, k := range peakKernels() {
		g := measurePeak(k, *reps)
		peaks[k.name] = g
		emit(Record{Kind: "peak", Name: k.name, Ms: 1, FLOPs: g * 1e6})
	}
	if !*skipGemm {
		for _, r := range gemmRecords(*reps) {
			emit(r)
		}
	}
	for _, name := range strings.Split(*modelList, ",") {
		recs, err := measureModel(name, *batch, *reps)
		if err != nil {
			fmt.Fprintln(os.Stderr, "flops:", err)
			os.Exit(1)
		}
		for _, r := range recs {
			emit(r)
		}
	}
}

var peaks = map[string]float64{}

func peakOf(name string) float64 {
	if p := peaks[name]; p > 0 {
		return p
	}
	return 1
}

// best returns the fastest of reps timed calls of f, in milliseconds.
func best(reps int, f func()) float64 {
	b := time.Duration(1 << 62)
	for range reps {
		t := now()
		f()
		if d := now() - t; d < b {
			b = d
		}
	}
	return float64(b) / 1e6
}

func randTensor(rng *rand.Rand, shape ...int) models.Tensor {
	t := models.NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = float32(2*rng.Float64() - 1)
	}
	return t
}

// measureModel times every layer (forward, backward) and the training step.
func measureModel(name string, batch, reps int) ([]Record, error) {
	m, err := models.Build(name, 1)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(1, 1))
	x := randTensor(rng, append([]int{batch}, models.ImageShape()...)...)
	labels := make([]int, batch)
	for i := range labels {
		labels[i] = rng.IntN(models.NumClasses)
	}
	var recs []Record
	layers := m.Layers()
	in := x
	stepFLOPs := 0.0
	firstParams := len(layers) // Sequential.BackwardParams computes no dx from here down
	for i, l := range layers {
		if len(l.Params()) > 0 {
			firstParams = i
			break
		}
	}
	for i, l := range layers {
		cost := l.Cost(in.SampleShape())
		fwdF := float64(cost.FLOPs) * float64(batch)
		y, saved, err := l.Forward(in, true)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", name, l.Name(), err)
		}
		fwd := best(reps, func() { l.Forward(in, true) })
		dy := randTensor(rng, y.Shape...)
		bwdF := 2 * fwdF
		var back func()
		if pg, ok := l.(models.ParamGradLayer); ok && i == firstParams {
			bwdF = fwdF
			back = func() { pg.BackwardParams(saved, dy) }
		} else {
			back = func() { l.Backward(saved, dy) }
		}
		if len(l.Params()) == 0 {
			bwdF = fwdF
		}
		back()
		bwd := best(reps, back)
		recs = append(recs,
			Record{Kind: "layer", Model: name, Name: l.Name() + ".fwd", Ms: fwd, FLOPs: fwdF},
			Record{Kind: "layer", Model: name, Name: l.Name() + ".bwd", Ms: bwd, FLOPs: bwdF})
		stepFLOPs += fwdF + bwdF
		in = y
	}
	opt, err := models.NewSGD(m.Params(), models.SGDConfig{LR: 0.01, Momentum: 0.9})
	if err != nil {
		return nil, err
	}
	step := func() {
		m.ZeroGrad()
		logits, saved, err := m.Forward(x, true)
		if err != nil {
			panic(err)
		}
		_, d, err := models.SoftmaxCrossEntropy(logits, labels, 1/float32(batch))
		if err != nil {
			panic(err)
		}
		if err := m.BackwardParams(saved, d, nil); err != nil {
			panic(err)
		}
		if err := opt.Step(); err != nil {
			panic(err)
		}
	}
	step()
	ms := best(reps, step)
	recs = append(recs, Record{Kind: "step", Model: name, Name: "step", Ms: ms, FLOPs: stepFLOPs, PerSec: float64(batch) / (ms / 1e3)})
	return recs, nil
}
