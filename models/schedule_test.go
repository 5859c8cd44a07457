package models

import (
	"math"
	"testing"
)

func TestSchedules(t *testing.T) {
	near := func(got, want float32) bool {
		return math.Abs(float64(got-want)) <= 1e-7*math.Max(1, math.Abs(float64(want)))
	}
	cases := []struct {
		cfg  ScheduleConfig
		at   []int64
		want []float32
	}{
		{ScheduleConfig{Base: 0.1}, []int64{0, 1e9}, []float32{0.1, 0.1}},
		{ScheduleConfig{Kind: "step", Base: 0.1, StepSamples: 100, Gamma: 0.5}, []int64{0, 99, 100, 250}, []float32{0.1, 0.1, 0.05, 0.025}},
		{ScheduleConfig{Kind: "cosine", Base: 1, Min: 0, TotalSamples: 100}, []int64{0, 50, 100, 500}, []float32{1, 0.5, 0, 0}},
		// Warm-up: linear to Base over 10 samples, then the cosine over the remaining 90.
		{ScheduleConfig{Kind: "cosine", Base: 1, Min: 0.1, TotalSamples: 100, WarmupSamples: 10}, []int64{0, 4, 10, 55, 100}, []float32{0.1, 0.5, 1, 0.55, 0.1}},
	}
	for _, c := range cases {
		s, err := NewSchedule(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		for i, n := range c.at {
			if got := s.LR(n); !near(got, c.want[i]) {
				t.Errorf("%s at %d samples: %g, want %g", s, n, got, c.want[i])
			}
		}
	}
	for _, bad := range []ScheduleConfig{
		{Base: 0}, {Kind: "step", Base: 1}, {Kind: "cosine", Base: 1, TotalSamples: 10, WarmupSamples: 10},
		{Kind: "cosine", Base: 1, TotalSamples: 10, Min: 2}, {Kind: "linear", Base: 1}, {Base: 1, WarmupSamples: -1},
	} {
		if _, err := NewSchedule(bad); err == nil {
			t.Errorf("NewSchedule(%+v) accepted", bad)
		}
	}
}

// fakeDeviceModel keeps "device" gradients of its own, to check that the
// clipping optimizer pulls, clips and pushes them.
type fakeDeviceModel struct {
	*Sequential
	devGrad [][]float32
	pulls   int
	pushes  int
}

func (f *fakeDeviceModel) Device() string    { return "fake:0" }
func (f *fakeDeviceModel) PullParams() error { return nil }
func (f *fakeDeviceModel) PushParams() error { return nil }
func (f *fakeDeviceModel) PullGrads() error {
	f.pulls++
	for i, p := range f.Params() {
		copy(p.Grad, f.devGrad[i])
	}
	return nil
}
func (f *fakeDeviceModel) PushGrads() error {
	f.pushes++
	for i, p := range f.Params() {
		copy(f.devGrad[i], p.Grad)
	}
	return nil
}

type countingOpt struct {
	Optimizer
	steps int
}

func (c *countingOpt) Step() error { c.steps++; return nil }

func TestClipGradNorm(t *testing.T) {
	p := &Param{Name: "a", Shape: []int{2}, Value: make([]float32, 2), Grad: []float32{3, 4}}
	if n := ClipGradNorm([]*Param{p}, 10); n != 5 || p.Grad[0] != 3 {
		t.Fatalf("norm %g, grad %v: below the limit nothing changes", n, p.Grad)
	}
	if n := ClipGradNorm([]*Param{p}, 1); n != 5 || math.Abs(GradNorm([]*Param{p})-1) > 1e-6 {
		t.Fatalf("after clipping to 1: norm %g (was %g)", GradNorm([]*Param{p}), n)
	}

	fc, _ := NewLinear("fc", 2, 1, InitHe)
	seq, _ := NewSequential(fc)
	f := &fakeDeviceModel{Sequential: seq, devGrad: [][]float32{{30, 40}, {0}}}
	inner := &countingOpt{}
	c, err := NewClippingOptimizer(inner, f, 5)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Step(); err != nil {
		t.Fatal(err)
	}
	if f.pulls != 1 || f.pushes != 1 || inner.steps != 1 || c.LastNorm() != 50 {
		t.Fatalf("pulls %d pushes %d steps %d norm %g", f.pulls, f.pushes, inner.steps, c.LastNorm())
	}
	if got := f.devGrad[0]; math.Abs(float64(got[0])-3) > 1e-6 || math.Abs(float64(got[1])-4) > 1e-6 {
		t.Fatalf("device gradients after clipping %v, want [3 4]", got)
	}
	if _, err := NewClippingOptimizer(inner, f, 0); err == nil {
		t.Fatal("max norm 0 accepted")
	}
}
