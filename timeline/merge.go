package timeline

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
)

// Merge writes to out one trace holding the events of every file in inputs (files written
// by Recorder, one per rank): one process row per rank (pid = rank, as each file has it).
//
// Clock: each rank's timestamps count from its own start, whose wall-clock time its file
// records (otherData.start_unix_ns); Merge shifts every rank by its start's distance from the
// earliest start, so that the ranks line up on wall-clock time. Ranks on one host read one
// clock, so their events line up as they happened (to the microsecond). Across hosts the
// alignment is as good as the hosts' clock synchronisation (NTP: typically well under a
// millisecond on a LAN, sometimes a few ms); Merge does not correct skew, and the merged file
// lists each rank's host in otherData so that a reader knows which rows may be offset.
//
// Two inputs with the same rank are refused (a stale file of an earlier job, say). A file
// without start_unix_ns (a trace not written by Recorder) is taken as it is, unshifted.
func Merge(out string, inputs []string) error {
	if len(inputs) == 0 {
		return errors.New("timeline: merge: no input files")
	}
	type input struct {
		path  string
		t     *Trace
		rank  int
		start int64
		has   bool
	}
	ins := make([]input, 0, len(inputs))
	seen := map[int]string{}
	minStart := int64(math.MaxInt64)
	for _, p := range inputs {
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("timeline: merge: %w", err)
		}
		t, err := Parse(bufio.NewReader(f))
		f.Close()
		if err != nil {
			return fmt.Errorf("timeline: merge: %s: %w", p, err)
		}
		in := input{path: p, t: t, rank: -1}
		if r, ok := numberOf(t.OtherData["rank"]); ok {
			in.rank = int(r)
		} else if len(t.TraceEvents) > 0 && t.TraceEvents[0].Pid != nil {
			in.rank = *t.TraceEvents[0].Pid
		}
		if prev, dup := seen[in.rank]; dup && in.rank >= 0 {
			return fmt.Errorf("timeline: merge: %s and %s are both rank %d", prev, p, in.rank)
		}
		seen[in.rank] = p
		if s, ok := t.OtherData["start_unix_ns"].(json.Number); ok {
			if v, err := s.Int64(); err == nil {
				in.start, in.has = v, true
				minStart = min(minStart, v)
			}
		}
		ins = append(ins, in)
	}
	sort.SliceStable(ins, func(a, b int) bool { return ins[a].rank < ins[b].rank })

	var merged Trace
	merged.DisplayTimeUnit = "ms"
	ranks := []map[string]any{}
	for _, in := range ins {
		shift := 0.0
		if in.has {
			shift = float64(in.start-minStart) / 1e3
		}
		for _, e := range in.t.TraceEvents {
			if e.Ts != nil && shift != 0 {
				ts := math.Round((*e.Ts+shift)*1e3) / 1e3
				e.Ts = &ts
			}
			merged.TraceEvents = append(merged.TraceEvents, e)
		}
		ranks = append(ranks, map[string]any{
			"file": filepath.Base(in.path), "rank": in.rank, "host": in.t.OtherData["host"],
			"shift_us": shift, "dropped_events": in.t.OtherData["dropped_events"],
		})
	}
	merged.OtherData = map[string]any{
		"format": "ringtrain timeline 1 (merged)",
		"ranks":  ranks,
		"clock": "each rank's events shifted by its start on the wall clock relative to the earliest rank's " +
			"(start_unix_ns " + strconv.FormatInt(minStart, 10) + "); exact on one host, within the hosts' clock skew across hosts",
	}
	if minStart == math.MaxInt64 {
		merged.OtherData["clock"] = "inputs without start times: timestamps taken as they are"
	}
	return writeJSON(out, &merged)
}

func numberOf(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	}
	return 0, false
}

// writeJSON writes t to path through a temporary file, one event per line.
func writeJSON(path string, t *Trace) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("timeline: writing %s: %w", path, err)
	}
	f.Chmod(0o644) // CreateTemp makes it private; a trace is an ordinary output file
	w := bufio.NewWriter(f)
	werr := func() error {
		if _, err := w.WriteString(`{"traceEvents":[`); err != nil {
			return err
		}
		for i := range t.TraceEvents {
			b, err := json.Marshal(&t.TraceEvents[i])
			if err != nil {
				return err
			}
			if i > 0 {
				w.WriteByte(',')
			}
			w.WriteByte('\n')
			w.Write(b)
		}
		rest, err := json.Marshal(struct {
			DisplayTimeUnit string         `json:"displayTimeUnit"`
			OtherData       map[string]any `json:"otherData"`
		}{t.DisplayTimeUnit, t.OtherData})
		if err != nil {
			return err
		}
		w.WriteString("\n],")
		w.Write(rest[1:]) // the object's fields after its "{"
		w.WriteByte('\n')
		return w.Flush()
	}()
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("timeline: writing %s: %w", path, werr)
	}
	return nil
}
