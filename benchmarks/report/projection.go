package report

import (
	"fmt"
	"math"
)

// DefaultBucketBytes is the gradient bucket cap the projection assumes when a Workload
// gives none: 25 MiB, PyTorch DDP's default and ringtrain's ddp default.
const DefaultBucketBytes = 25 << 20

// DefaultBackwardShare is the share of compute the projection treats as backward pass
// when a Workload gives none: 2/3, because a backward pass costs about twice a forward
// pass (one product for the input gradient, one for the weight gradient).
const DefaultBackwardShare = 2.0 / 3.0

// Workload is what the projection needs to know of one model's training step.
type Workload struct {
	// Name labels the workload in tables and plots.
	Name string `json:"name"`
	// StepSeconds is the time of one training step on a single rank, with no
	// communication: forward, backward, optimizer, batching. It must be positive.
	StepSeconds float64 `json:"step_s"`
	// ComputeSeconds is the forward+backward part of StepSeconds; its backward share is
	// what communication can overlap with. Zero means StepSeconds.
	ComputeSeconds float64 `json:"compute_s"`
	// BackwardShare is the part of ComputeSeconds spent in the backward pass; zero means
	// DefaultBackwardShare.
	BackwardShare float64 `json:"backward_share"`
	// GradBytes is the size of all gradients as float32 (4 × parameters). Must be > 0.
	GradBytes float64 `json:"grad_bytes"`
	// BucketBytes caps one AllReduce (gradients travel in buckets, each paying the ring's
	// latency); zero means DefaultBucketBytes. Ignored when Buckets is set.
	BucketBytes float64 `json:"bucket_bytes"`
	// Buckets is the number of AllReduce ops per step, as measured; zero means
	// ⌈GradBytes / BucketBytes⌉.
	Buckets int `json:"buckets,omitempty"`
}

// NumBuckets is the number of AllReduce ops per step the projection charges.
func (w Workload) NumBuckets() int {
	if w.Buckets > 0 {
		return w.Buckets
	}
	bucket := w.BucketBytes
	if bucket == 0 {
		bucket = DefaultBucketBytes
	}
	return int(math.Ceil(w.GradBytes / bucket))
}

// Link describes the network the projection assumes between ranks.
type Link struct {
	// Gbps is the line rate in gigabits per second; β = 8 / (Gbps × 1e9) seconds per
	// byte. It must be positive; math.Inf(1) is infinite bandwidth (β = 0).
	Gbps float64 `json:"gbps"`
	// Alpha is the latency of one ring step, in seconds.
	Alpha float64 `json:"alpha_s"`
}

// Beta is the link's seconds per byte (0 for infinite bandwidth).
func (l Link) Beta() float64 {
	return 8 / (l.Gbps * 1e9)
}

// Variant is one way of running the gradient exchange.
type Variant struct {
	// FP16 sends gradients as float16: half the bytes (same number of ring steps).
	FP16 bool `json:"fp16"`
	// Overlap hides communication behind the backward pass (DDP's bucketed AllReduce);
	// without it the whole AllReduce follows backward.
	Overlap bool `json:"overlap"`
}

// String names the variant as the report does: "fp32", "fp16", with "+overlap".
func (v Variant) String() string {
	s := "fp32"
	if v.FP16 {
		s = "fp16"
	}
	if v.Overlap {
		s += " + overlap"
	} else {
		s += ", no overlap"
	}
	return s
}

// Validate reports what is wrong with w, naming the field.
func (w Workload) Validate() error {
	switch {
	case !(w.StepSeconds > 0) || math.IsInf(w.StepSeconds, 0):
		return fmt.Errorf("workload %q: step time %v s, want > 0", w.Name, w.StepSeconds)
	case !(w.GradBytes > 0) || math.IsInf(w.GradBytes, 0):
		return fmt.Errorf("workload %q: gradient bytes %v, want > 0", w.Name, w.GradBytes)
	case w.ComputeSeconds < 0 || w.ComputeSeconds > w.StepSeconds*(1+1e-9):
		return fmt.Errorf("workload %q: compute %v s outside [0, step time %v s]", w.Name, w.ComputeSeconds, w.StepSeconds)
	case w.BackwardShare < 0 || w.BackwardShare > 1:
		return fmt.Errorf("workload %q: backward share %v outside [0, 1]", w.Name, w.BackwardShare)
	case w.BucketBytes < 0 || w.Buckets < 0:
		return fmt.Errorf("workload %q: bucket bytes %v < 0", w.Name, w.BucketBytes)
	}
	return nil
}

// Estimate is the projected cost of one step of a Workload on N ranks.
type Estimate struct {
	Ranks      int     `json:"ranks"`
	CommS      float64 `json:"comm_s"`       // the whole gradient AllReduce
	ExposedS   float64 `json:"exposed_s"`    // what the step waits for
	StepS      float64 `json:"step_s"`       // StepSeconds + ExposedS
	Efficiency float64 `json:"efficiency"`   // StepSeconds / StepS
	Buckets    int     `json:"buckets"`      // AllReduce calls per step
	WireBytes  float64 `json:"wire_bytes"`   // gradient bytes as sent
	HiddenMaxS float64 `json:"hidden_max_s"` // backward time available for overlap
}

// Project returns the modelled cost of one weak-scaling step (fixed per-rank batch, so the
// per-rank compute does not change with N) on n ranks over link:
//
//	buckets  k = Buckets, else ⌈GradBytes / BucketBytes⌉
//	comm     C(N) = k·2(N−1)·α + 2(N−1)/N · bytes · β      bytes halved with fp16
//	exposed  E(N) = max(0, C(N) − BackwardShare·Compute)    with overlap, else C(N)
//	eff(N)   = Step / (Step + E(N))
//
// so eff(1) = 1 (nothing to send) and eff = 1 on a link with no latency and infinite
// bandwidth. The model ignores the fp16 conversion cost, congestion, stragglers and the
// last bucket's tail that cannot overlap; it is a bound, not a measurement.
func Project(w Workload, link Link, v Variant, n int) (Estimate, error) {
	if err := w.Validate(); err != nil {
		return Estimate{}, err
	}
	if n < 1 {
		return Estimate{}, fmt.Errorf("project %q: %d ranks, want at least 1", w.Name, n)
	}
	if !(link.Alpha >= 0) || math.IsInf(link.Alpha, 0) || !(link.Gbps > 0) {
		return Estimate{}, fmt.Errorf("project %q: link α %v s, %v Gbit/s: want α ≥ 0 and a positive rate", w.Name, link.Alpha, link.Gbps)
	}
	compute := w.ComputeSeconds
	if compute == 0 {
		compute = w.StepSeconds
	}
	share := w.BackwardShare
	if share == 0 {
		share = DefaultBackwardShare
	}
	e := Estimate{Ranks: n, Buckets: w.NumBuckets(), WireBytes: w.GradBytes}
	if v.FP16 {
		e.WireBytes /= 2
	}
	if n > 1 {
		N := float64(n)
		e.CommS = float64(e.Buckets)*2*(N-1)*link.Alpha + 2*(N-1)/N*e.WireBytes*link.Beta()
	}
	e.ExposedS = e.CommS
	if v.Overlap {
		e.HiddenMaxS = share * compute
		e.ExposedS = math.Max(0, e.CommS-e.HiddenMaxS)
	}
	e.StepS = w.StepSeconds + e.ExposedS
	e.Efficiency = w.StepSeconds / e.StepS
	return e, nil
}

// ProjectionRanks are the rank counts the report projects: 8, 16, …, 1024.
var ProjectionRanks = []int{8, 16, 32, 64, 128, 256, 512, 1024}

// ProjectionLinks are the line rates the report projects, in Gbit/s.
var ProjectionLinks = []float64{10, 25, 100}

// ProjectionVariants are the exchange variants the report projects.
var ProjectionVariants = []Variant{{false, false}, {false, true}, {true, false}, {true, true}}
