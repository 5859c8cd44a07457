package main

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/benchmarks/report"
	"github.com/ringtrain/ringtrain/benchmarks/scaling/internal/ranklines"
)

// epochLine is the part of the trainer's --json epoch object the report uses.
type epochLine struct {
	Epoch         *int     `json:"epoch"`
	SamplesPerS   *float64 `json:"samples_per_s"`
	StepMS        *float64 `json:"step_ms"`
	ComputeMS     *float64 `json:"compute_ms"`
	CommMS        *float64 `json:"comm_ms"`
	ExposedCommMS *float64 `json:"exposed_comm_ms"`
	WorldSize     *int     `json:"world_size"`
	Buckets       int      `json:"buckets"`
}

// trainRun turns the JSON lines of one training job into a Run, from the objects of
// epoch `epoch` (the earlier epochs warm up: graph compilation, connection set-up,
// first-touch allocation). The trainer prints on rank 0 only; should several ranks print,
// the throughput is rank 0's (the trainer reports the global rate: every rank steps in
// lock step) and each time of the breakdown is the slowest rank's, since the step waits
// for it.
func trainRun(j job, lines []ranklines.Line, epoch int) (report.Run, error) {
	last := map[int]epochLine{}
	printed := false
	for _, l := range lines {
		var e epochLine
		if err := l.Decode(&e); err != nil || e.Epoch == nil || e.SamplesPerS == nil {
			continue // some other object (a summary, a config echo)
		}
		printed = true
		if *e.Epoch == epoch {
			last[l.Rank] = e
		}
	}
	if !printed {
		return report.Run{}, fmt.Errorf("the trainer printed no epoch JSON line (with epoch and samples_per_s)")
	}
	if len(last) == 0 {
		return report.Run{}, fmt.Errorf("the trainer printed no JSON line for epoch %d (the measured one)", epoch)
	}
	first, ok := last[0]
	if !ok {
		first, ok = last[-1] // run without gorun's prefixes
	}
	if !ok {
		for _, e := range last {
			first = e
			break
		}
	}
	r := report.Run{Model: j.model, Mode: joinModes(j.modes), Compress: j.compress, Ranks: j.ranks, Rep: j.rep,
		BatchPerRank: j.batch, GlobalBatch: j.batch * j.ranks, SamplesPerS: *first.SamplesPerS}
	if !(r.SamplesPerS > 0) || math.IsInf(r.SamplesPerS, 0) {
		return r, fmt.Errorf("the trainer reported samples_per_s %v", r.SamplesPerS)
	}
	maxOf := func(get func(epochLine) *float64) float64 {
		m := 0.0
		for _, e := range last {
			if v := get(e); v != nil && *v > m && !math.IsInf(*v, 0) {
				m = *v
			}
		}
		return m
	}
	r.Buckets = first.Buckets
	r.StepMS = maxOf(func(e epochLine) *float64 { return e.StepMS })
	r.ComputeMS = maxOf(func(e epochLine) *float64 { return e.ComputeMS })
	r.CommMS = maxOf(func(e epochLine) *float64 { return e.CommMS })
	r.ExposedCommMS = maxOf(func(e epochLine) *float64 { return e.ExposedCommMS })
	if r.StepMS == 0 {
		// No step time printed: the global batch over the global rate is the step.
		r.StepMS = float64(r.GlobalBatch) / r.SamplesPerS * 1e3
	}
	return r, nil
}

func joinModes(ms []string) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += "+"
		}
		s += m
	}
	return s
}

// sweepLine is one line of benchmarks/allreduce --json.
type sweepLine struct {
	Op        string   `json:"op"`
	Ranks     int      `json:"ranks"`
	Bytes     int64    `json:"bytes"`
	Dtype     string   `json:"dtype"`
	TimeUS    *float64 `json:"time_us"`
	AlgBW     float64  `json:"algbw_gbs"`
	BusBW     float64  `json:"busbw_gbs"`
	LinkGBs   float64  `json:"link_gbs"`
	MaxRelErr float64  `json:"max_rel_err"`
	Transport string   `json:"transport"`
}

// sweepRows picks the sweep's rows out of a job's JSON lines. Every rank may print the
// same table; rank 0's copy is kept (or the unprefixed one).
func sweepRows(j job, lines []ranklines.Line) ([]report.SweepRow, error) {
	var rows []report.SweepRow
	ranksSeen := map[int]bool{}
	for _, l := range lines {
		ranksSeen[l.Rank] = true
	}
	want := -1
	if ranksSeen[0] {
		want = 0
	}
	for _, l := range lines {
		if l.Rank != want {
			continue
		}
		var s sweepLine
		if err := l.Decode(&s); err != nil || s.Op == "" {
			continue
		}
		row := report.SweepRow{Op: s.Op, Ranks: s.Ranks, Bytes: s.Bytes, Dtype: s.Dtype, AlgBWGBs: s.AlgBW,
			BusBWGBs: s.BusBW, LinkGBs: s.LinkGBs, MaxRelErr: s.MaxRelErr, Transport: s.Transport}
		if row.Ranks == 0 {
			row.Ranks = j.ranks
		}
		if row.Dtype == "" {
			row.Dtype = j.dtype
		}
		if s.TimeUS != nil {
			row.TimeUS = *s.TimeUS
		}
		if row.Op != report.OpRingExchange && !(row.TimeUS > 0) {
			return rows, fmt.Errorf("sweep row %s %d bytes on %d ranks has time_us %v", row.Op, row.Bytes, row.Ranks, row.TimeUS)
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("the AllReduce benchmark printed no JSON row with an op")
	}
	return rows, nil
}
