package main

import (
	"fmt"

	"github.com/ringtrain/ringtrain/benchmarks/report"
)

// jobKind tells a training run from an AllReduce sweep.
type jobKind int

const (
	jobSweep jobKind = iota
	jobTrain
)

// job is one gorun invocation of the session.
type job struct {
	kind  jobKind
	ranks int
	// training runs
	model    string
	modes    []string // the scaling modes this run serves (weak and strong share runs)
	compress string
	batch    int // per rank
	rep      int // 0-based
	// sweeps
	dtype string
}

// label names the job on the terminal and in notes.
func (j job) label(reps int) string {
	if j.kind == jobSweep {
		return fmt.Sprintf("allreduce sweep %s, %d ranks", j.dtype, j.ranks)
	}
	modes := ""
	for i, m := range j.modes {
		if i > 0 {
			modes += "+"
		}
		modes += m
	}
	comp := j.compress
	if j.ranks == 1 {
		comp = "baseline"
	} else if comp == "none" {
		comp = "fp32"
	}
	return fmt.Sprintf("train %s %s %s, %d rank(s) × batch %d, rep %d/%d", j.model, modes, comp, j.ranks, j.batch, j.rep+1, reps)
}

// costKey groups jobs expected to take about as long, for the ETA.
func (j job) costKey() string {
	if j.kind == jobSweep {
		return fmt.Sprintf("sweep/%s/%d", j.dtype, j.ranks)
	}
	return fmt.Sprintf("train/%s/%d/%d/%s", j.model, j.ranks, j.batch, j.compress)
}

// plan lists the session's jobs: the sweeps first (they are short and feed the fit), then
// the training runs, repetition by repetition so that slow drifts of the machine spread
// over every configuration rather than biasing the last one measured. Runs that two modes
// would repeat identically (the single-rank baseline; a strong-scaling run whose per-rank
// batch equals the weak one) run once and serve both.
func plan(c *config) ([]job, error) {
	var jobs []job
	if c.sweep {
		for _, n := range c.nproc {
			if n < 2 {
				continue
			}
			for _, dt := range []string{"fp32", "fp16"} {
				jobs = append(jobs, job{kind: jobSweep, ranks: n, dtype: dt})
			}
		}
	}
	maxReps := 0
	for _, m := range c.models {
		maxReps = max(maxReps, c.reps.of(m))
	}
	for rep := 0; rep < maxReps; rep++ {
		for _, model := range c.models {
			if rep >= c.reps.of(model) {
				continue
			}
			for _, n := range c.nproc {
				comps := c.compress
				if n == 1 {
					comps = []string{"none"} // one rank exchanges nothing
				}
				for _, comp := range comps {
					index := map[int]int{} // per-rank batch -> job index
					for _, mode := range c.modes {
						b, err := report.BatchFor(mode, n, c.batch.of(model), c.globalBatch.of(model))
						if err != nil {
							return nil, err
						}
						if i, ok := index[b]; ok {
							jobs[i].modes = append(jobs[i].modes, mode)
							continue
						}
						index[b] = len(jobs)
						jobs = append(jobs, job{kind: jobTrain, ranks: n, model: model, modes: []string{mode},
							compress: comp, batch: b, rep: rep})
					}
				}
			}
		}
	}
	return jobs, nil
}
