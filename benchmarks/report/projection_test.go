package report

import (
	"math"
	"testing"
)

var testWorkload = Workload{Name: "w", StepSeconds: 0.1, ComputeSeconds: 0.09, GradBytes: 100e6}

func TestProjectLimits(t *testing.T) {
	link := Link{Gbps: 10, Alpha: 50e-6}
	for _, v := range ProjectionVariants {
		// One rank sends nothing: efficiency 1 whatever the link.
		e, err := Project(testWorkload, link, v, 1)
		if err != nil || e.Efficiency != 1 || e.CommS != 0 {
			t.Errorf("%v, N=1: %+v, %v", v, e, err)
		}
		// No latency and infinite bandwidth: nothing to wait for at any N.
		for _, n := range ProjectionRanks {
			e, err := Project(testWorkload, Link{Gbps: math.Inf(1)}, v, n)
			if err != nil || e.Efficiency != 1 {
				t.Errorf("%v, infinite link, N=%d: %+v, %v", v, n, e, err)
			}
		}
	}
}

func TestProjectMatchesHandComputation(t *testing.T) {
	// 100 MB of fp32 gradients in 4 buckets of 25 MiB; 8 ranks on 10 Gbit/s, α = 50 µs.
	link := Link{Gbps: 10, Alpha: 50e-6}
	beta := 8 / 10e9
	buckets := math.Ceil(100e6 / (25 << 20))
	comm := buckets*2*7*50e-6 + 2*7.0/8*100e6*beta
	e, err := Project(testWorkload, link, Variant{}, 8)
	if err != nil {
		t.Fatal(err)
	}
	if e.Buckets != 4 || math.Abs(e.CommS-comm) > 1e-12 || e.ExposedS != e.CommS {
		t.Fatalf("no overlap: %+v, want comm %v", e, comm)
	}
	if want := 0.1 / (0.1 + comm); math.Abs(e.Efficiency-want) > 1e-12 {
		t.Fatalf("efficiency %v, want %v", e.Efficiency, want)
	}
	// Overlap hides up to 2/3 of the 90 ms of compute.
	e, _ = Project(testWorkload, link, Variant{Overlap: true}, 8)
	if want := comm - 0.09*2/3; math.Abs(e.ExposedS-want) > 1e-12 {
		t.Fatalf("overlap: exposed %v, want %v", e.ExposedS, want)
	}
	// fp16 halves the bandwidth term, not the latency term.
	e16, _ := Project(testWorkload, link, Variant{FP16: true}, 8)
	if want := buckets*2*7*50e-6 + 2*7.0/8*50e6*beta; math.Abs(e16.CommS-want) > 1e-12 {
		t.Fatalf("fp16: comm %v, want %v", e16.CommS, want)
	}
}

func TestProjectMonotone(t *testing.T) {
	// More ranks never help, faster links and fp16 and overlap never hurt.
	for _, v := range ProjectionVariants {
		prev := 1.0
		for _, n := range ProjectionRanks {
			slow, _ := Project(testWorkload, Link{Gbps: 10, Alpha: 20e-6}, v, n)
			fast, _ := Project(testWorkload, Link{Gbps: 100, Alpha: 20e-6}, v, n)
			if slow.Efficiency > prev+1e-12 || fast.Efficiency < slow.Efficiency {
				t.Fatalf("%v N=%d: slow %v (prev %v) fast %v", v, n, slow.Efficiency, prev, fast.Efficiency)
			}
			prev = slow.Efficiency
			if !v.FP16 {
				h, _ := Project(testWorkload, Link{Gbps: 10, Alpha: 20e-6}, Variant{FP16: true, Overlap: v.Overlap}, n)
				if h.Efficiency < slow.Efficiency {
					t.Fatalf("fp16 worse at N=%d", n)
				}
			}
			if !v.Overlap {
				o, _ := Project(testWorkload, Link{Gbps: 10, Alpha: 20e-6}, Variant{FP16: v.FP16, Overlap: true}, n)
				if o.Efficiency < slow.Efficiency {
					t.Fatalf("overlap worse at N=%d", n)
				}
			}
		}
	}
}

func TestProjectRejectsBadInput(t *testing.T) {
	good := Link{Gbps: 10, Alpha: 1e-5}
	for _, c := range []struct {
		w    Workload
		link Link
		n    int
	}{
		{Workload{StepSeconds: 0, GradBytes: 1}, good, 8},
		{Workload{StepSeconds: 1, GradBytes: 0}, good, 8},
		{Workload{StepSeconds: 1, ComputeSeconds: 2, GradBytes: 1}, good, 8},
		{Workload{StepSeconds: 1, GradBytes: 1, BackwardShare: 1.5}, good, 8},
		{testWorkload, Link{Gbps: 0, Alpha: 1e-5}, 8},
		{testWorkload, Link{Gbps: 10, Alpha: -1}, 8},
		{testWorkload, good, 0},
	} {
		if _, err := Project(c.w, c.link, Variant{}, c.n); err == nil {
			t.Errorf("Project(%+v, %+v, %d) accepted", c.w, c.link, c.n)
		}
	}
}
