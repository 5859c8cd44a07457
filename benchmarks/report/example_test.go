package report_test

import (
	"fmt"

	"github.com/ringtrain/ringtrain/benchmarks/report"
)

func ExampleEfficiency() {
	// 4 ranks reach 3000 samples/s where one rank alone does 1000.
	e, _ := report.Efficiency(3000, 1000, 4)
	fmt.Printf("%.0f%%\n", 100*e)
	// Output: 75%
}

func ExampleFitAlphaBeta() {
	// Timings of an ideal ring with α = 50 µs and 1 GB/s links, on 2 and 4 ranks.
	truth := report.AlphaBeta{Alpha: 50e-6, Beta: 1e-9}
	var ts []report.Timing
	for _, n := range []int{2, 4} {
		for b := 1 << 12; b <= 1<<24; b *= 16 {
			ts = append(ts, report.Timing{Ranks: n, Bytes: float64(b), Seconds: truth.Predict(n, float64(b))})
		}
	}
	m, _ := report.FitAlphaBeta(ts)
	fmt.Printf("α = %s, 1/β = %.2f GB/s, R² = %.3f\n", report.HumanSeconds(m.Alpha), m.BandwidthGBs(), m.R2)
	// Output: α = 50 µs, 1/β = 1.00 GB/s, R² = 1.000
}

func ExampleProject() {
	// A 100 ms step with 100 MB of gradients on 128 ranks over 25 Gbit/s, α = 10 µs.
	w := report.Workload{Name: "big", StepSeconds: 0.1, ComputeSeconds: 0.09, GradBytes: 100e6}
	link := report.Link{Gbps: 25, Alpha: 10e-6}
	for _, v := range report.ProjectionVariants {
		e, _ := report.Project(w, link, v, 128)
		fmt.Printf("%-20s %.0f%%\n", v, 100*e.Efficiency)
	}
	// Output:
	// fp32, no overlap     58%
	// fp32 + overlap       88%
	// fp16, no overlap     70%
	// fp16 + overlap       100%
}
