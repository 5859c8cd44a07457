package report

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// TestAlgoProjection: the ring through the tuner's model agrees with Project's closed form
// with one rank per host (same α-β; the model adds the reduction term γ) and is faster with
// 8 per host (its steps on a host cost shared memory's), hier and auto are never slower
// than the ring, and the committed results' workloads are projected (logged).
func TestAlgoProjection(t *testing.T) {
	w := Workload{Name: "w", StepSeconds: 0.02, GradBytes: 2.7e6, Buckets: 2}
	link := Link{Gbps: 25, Alpha: 60e-6}
	for _, n := range ProjectionRanks {
		// One rank per host: every ring edge crosses hosts, as Project assumes.
		flat, _, err := ProjectAlgo(w, link, Variant{Overlap: true}, n, 1, nil, "ring")
		if err != nil {
			t.Fatal(err)
		}
		base, _ := Project(w, link, Variant{Overlap: true}, n)
		if math.Abs(flat.CommS-base.CommS) > 0.05*base.CommS+1e-4 {
			t.Errorf("N=%d: ring through the model %.3g s, closed form %.3g s", n, flat.CommS, base.CommS)
		}
		// 8 per host: the ring's steps on a host cost shared memory's α, so it is faster.
		ring, _, err := ProjectAlgo(w, link, Variant{Overlap: true}, n, 8, nil, "ring")
		if err != nil {
			t.Fatal(err)
		}
		if ring.CommS > base.CommS*(1+1e-9) {
			t.Errorf("N=%d: ring with 8 ranks per host %.3g s, slower than all across hosts %.3g s", n, ring.CommS, base.CommS)
		}
		for _, a := range []string{"hier", "auto"} {
			e, _, err := ProjectAlgo(w, link, Variant{Overlap: true}, n, 8, nil, a)
			if err != nil {
				t.Fatal(err)
			}
			if a == "auto" && e.CommS > ring.CommS*(1+1e-9) {
				t.Errorf("N=%d: auto %.3g s slower than ring %.3g s", n, e.CommS, ring.CommS)
			}
		}
	}
	b, err := os.ReadFile("../results/results.json")
	if err != nil {
		t.Skip(err)
	}
	var res struct {
		Projection struct {
			AlphaS    float64    `json:"alpha_s"`
			Workloads []Workload `json:"workloads"`
		} `json:"projection"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	curves, err := BuildAlgoProjection(res.Projection.Workloads, res.Projection.AlphaS, 25)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range curves {
		line := ""
		for _, p := range c.Points {
			line += " " + itoa(p.Ranks) + ":" + pct(p.Efficiency) + "(" + p.Algo + ")"
		}
		t.Logf("%-8s %-5s α=%.0fµs 25Gbit/s fp32+overlap:%s", c.Workload, c.Algo, res.Projection.AlphaS*1e6, line)
	}
}

func itoa(n int) string { return fmtInt(n) }

func pct(x float64) string { return fmtInt(int(math.Round(x*100))) + "%" }

func fmtInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
