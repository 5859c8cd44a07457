package report

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/collective"
)

// ProjectionRanksPerHost is the hosts' size the algorithm projection assumes (issue 15).
const ProjectionRanksPerHost = 8

// ProjectionAlgos are the AllReduce algorithms the report projects beside each other:
// the flat ring, the hierarchical algorithm, and the tuner's per-bucket choice.
var ProjectionAlgos = []string{"ring", "hier", "auto"}

// ProjectAlgo is Project with the AllReduce time taken from the collective tuner's α-β
// model (collective.Model) of algo ("ring", "hier", "rd", "rhd" or "auto": the tuner's
// choice per bucket) instead of the flat ring's closed form: ranks sit perHost to a host;
// across hosts every message costs link.Alpha + bytes·8/(link.Gbps·1e9); on a host the
// links cost intra (the committed table's shm by default); reductions cost the table's γ.
// Buckets are GradBytes / NumBuckets each. fp16 halves the bytes of every message and
// nothing else. Assumptions as Project's: no congestion, no stragglers, no tail.
func ProjectAlgo(w Workload, link Link, v Variant, n, perHost int, intra *collective.LinkCost, algo string) (Estimate, string, error) {
	e, err := Project(w, link, v, n)
	if err != nil || n == 1 {
		return e, "ring", err
	}
	table := collective.DefaultTunerTable()
	t := &collective.TunerTable{Links: map[string]collective.LinkCost{}, ReduceGBps: table.ReduceGBps}
	in := table.Links["shm"]
	if intra != nil {
		in = *intra
	}
	t.Links["intra"] = in
	t.Links["inter"] = collective.LinkCost{AlphaUS: link.Alpha * 1e6, GBps: link.Gbps / 8}
	if math.IsInf(link.Gbps, 1) {
		t.Links["inter"] = collective.LinkCost{AlphaUS: link.Alpha * 1e6, GBps: 1e9}
	}
	m := collective.Model{Table: t, Ranks: n, RanksPerHost: min(perHost, n), Intra: "intra", Inter: "inter"}
	if algo != "auto" {
		m.Algorithm = algo
	}
	bucket := e.WireBytes / float64(e.Buckets)
	// The model counts float32 bytes; fp16 is modelled as a buffer of half the size.
	chosen, per, err := m.Choose(int(bucket) &^ 3)
	if err != nil {
		return e, "", fmt.Errorf("project %q with %s: %w", w.Name, algo, err)
	}
	e.CommS = float64(e.Buckets) * per
	e.ExposedS = e.CommS
	if v.Overlap {
		e.ExposedS = math.Max(0, e.CommS-e.HiddenMaxS)
	}
	e.StepS = w.StepSeconds + e.ExposedS
	e.Efficiency = w.StepSeconds / e.StepS
	return e, chosen, nil
}

// AlgoPoint is one projected point of an algorithm curve.
type AlgoPoint struct {
	Estimate
	Algo string `json:"algo"` // what ran (the tuner's choice for "auto")
}

// AlgoCurve is one workload's projection with one algorithm.
type AlgoCurve struct {
	Workload string      `json:"workload"`
	Algo     string      `json:"algo"`
	LinkGbps float64     `json:"link_gbps"`
	Variant  Variant     `json:"variant"`
	Points   []AlgoPoint `json:"points"`
}

// BuildAlgoProjection projects every workload with every algorithm of ProjectionAlgos, at
// gbps with overlap in fp32 (the scenario), ProjectionRanksPerHost ranks per host.
func BuildAlgoProjection(ws []Workload, alpha, gbps float64) ([]AlgoCurve, error) {
	var out []AlgoCurve
	v := Variant{Overlap: true}
	for _, w := range ws {
		for _, a := range ProjectionAlgos {
			c := AlgoCurve{Workload: w.Name, Algo: a, LinkGbps: gbps, Variant: v}
			for _, n := range ProjectionRanks {
				e, chosen, err := ProjectAlgo(w, Link{Gbps: gbps, Alpha: alpha}, v, n, ProjectionRanksPerHost, nil, a)
				if err != nil {
					return nil, err
				}
				c.Points = append(c.Points, AlgoPoint{Estimate: e, Algo: chosen})
			}
			out = append(out, c)
		}
	}
	return out, nil
}
