package main

import (
	"fmt"
	"io"
	"time"
)

// progress prints one line per job to the terminal: which configuration, i of n, the
// elapsed time and an estimate of the time left. The estimate uses the mean duration of
// finished jobs of the same kind (same model, ranks, batch...), else of all finished
// jobs, so a session whose jobs differ a lot in cost (mlp vs mlp-wide) still gets a
// sensible ETA after the first repetition.
type progress struct {
	w     io.Writer
	total int
	start time.Time
	now   func() time.Time

	done    int
	spent   time.Duration
	byKey   map[string]time.Duration
	countBy map[string]int
}

func newProgress(w io.Writer, total int, now func() time.Time) *progress {
	if now == nil {
		now = time.Now
	}
	return &progress{w: w, total: total, start: now(), now: now, byKey: map[string]time.Duration{}, countBy: map[string]int{}}
}

// begin announces job i (0-based) of the plan.
func (p *progress) begin(i int, label string, remaining []job) {
	fmt.Fprintf(p.w, "scaling: [%*d/%d] %s  (elapsed %s%s)\n", len(fmt.Sprint(p.total)), i+1, p.total, label,
		fmtDur(p.now().Sub(p.start)), p.eta(remaining))
}

// end records that a job of costKey took d and prints the outcome.
func (p *progress) end(key string, d time.Duration, outcome string) {
	p.done++
	p.spent += d
	p.byKey[key] += d
	p.countBy[key]++
	fmt.Fprintf(p.w, "scaling:     %s in %s\n", outcome, fmtDur(d))
}

// eta estimates the time left for the jobs not yet finished (remaining includes the one
// starting now).
func (p *progress) eta(remaining []job) string {
	if p.done == 0 {
		return ""
	}
	mean := p.spent / time.Duration(p.done)
	var left time.Duration
	for _, j := range remaining {
		k := j.costKey()
		if n := p.countBy[k]; n > 0 {
			left += p.byKey[k] / time.Duration(n)
		} else {
			left += mean
		}
	}
	return ", ETA " + fmtDur(left)
}

func fmtDur(d time.Duration) string {
	d = d.Round(time.Second)
	if d < time.Minute {
		return fmt.Sprintf("%ds", int(d.Seconds()))
	}
	return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
}
