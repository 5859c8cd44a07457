package timeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// Trace is a parsed Chrome trace-event file, as Recorder and Merge write it.
type Trace struct {
	TraceEvents     []Event        `json:"traceEvents"`
	DisplayTimeUnit string         `json:"displayTimeUnit,omitempty"`
	OtherData       map[string]any `json:"otherData,omitempty"`
}

// Event is one trace event. Pointers tell absent fields from zero ones, which Check needs.
type Event struct {
	Name  string          `json:"name,omitempty"`
	Cat   string          `json:"cat,omitempty"`
	Ph    string          `json:"ph"`
	Ts    *float64        `json:"ts,omitempty"`
	Dur   *float64        `json:"dur,omitempty"`
	Pid   *int            `json:"pid,omitempty"`
	Tid   *int            `json:"tid,omitempty"`
	Scope string          `json:"s,omitempty"`
	Args  json.RawMessage `json:"args,omitempty"`
}

// Start is the event's ts (0 when absent); End is ts+dur for "X" events, ts otherwise.
func (e *Event) Start() float64 {
	if e.Ts == nil {
		return 0
	}
	return *e.Ts
}

// End is when the event ends: ts+dur for a complete ("X") event, ts otherwise.
func (e *Event) End() float64 {
	if e.Dur == nil {
		return e.Start()
	}
	return e.Start() + *e.Dur
}

// Arg decodes the event's argument key into v; false if absent or of another type.
func (e *Event) Arg(key string, v any) bool {
	if len(e.Args) == 0 {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(e.Args, &m) != nil {
		return false
	}
	raw, ok := m[key]
	return ok && json.Unmarshal(raw, v) == nil
}

// Parse reads a trace file (the JSON object form; the bare array form is accepted too).
func Parse(r io.Reader) (*Trace, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var t Trace
	// Numbers in otherData stay exact (start_unix_ns needs 61 bits; a float64 keeps 53).
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if len(b) > 0 && firstNonSpace(b) == '[' {
		err = dec.Decode(&t.TraceEvents)
	} else {
		err = dec.Decode(&t)
	}
	if err != nil {
		return nil, fmt.Errorf("timeline: not a trace-event JSON file: %w", err)
	}
	return &t, nil
}

func firstNonSpace(b []byte) byte {
	for _, c := range b {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c
	}
	return 0
}

// Check validates t against the trace-event format as chrome://tracing and Perfetto read
// it: every event has a known ph, a pid and a tid; every event but metadata has a ts;
// "X" events a non-negative dur; "i" events a scope of g, p or t (or none); "B" and "E"
// events of one thread pair up and nest ("E" closes the innermost open "B"; none is left
// open), and "X" events of one thread do not partly overlap each other (they nest or are
// disjoint, as a call stack). It returns every problem found, joined. Times are compared to
// within a nanosecond (the files' resolution), since ts+dur in float64 may round past the
// next event's ts.
func Check(t *Trace) error {
	const eps = 0.0005 // µs
	var errs []error
	bad := func(i int, e *Event, format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf("event %d (ph %q, name %q): %s", i, e.Ph, e.Name, fmt.Sprintf(format, args...)))
		}
	}
	type key struct{ pid, tid int }
	type idx struct {
		i int
		e *Event
	}
	byThread := map[key][]idx{}
	for i := range t.TraceEvents {
		e := &t.TraceEvents[i]
		switch e.Ph {
		case "X", "B", "E", "i", "I", "M", "C":
		default:
			bad(i, e, "unknown phase")
			continue
		}
		if e.Pid == nil {
			bad(i, e, "no pid")
			continue
		}
		if e.Tid == nil && e.Ph != "M" && e.Ph != "C" {
			bad(i, e, "no tid")
			continue
		}
		if e.Ph != "E" && e.Name == "" {
			bad(i, e, "no name")
		}
		if e.Ph == "M" {
			continue
		}
		if e.Ts == nil {
			bad(i, e, "no ts")
			continue
		}
		switch e.Ph {
		case "X":
			if e.Dur == nil || *e.Dur < 0 {
				bad(i, e, "complete event without a non-negative dur")
				continue
			}
		case "i", "I":
			switch e.Scope {
			case "", "g", "p", "t":
			default:
				bad(i, e, "instant scope %q is not g, p or t", e.Scope)
			}
			continue
		case "C":
			continue
		}
		byThread[key{*e.Pid, *e.Tid}] = append(byThread[key{*e.Pid, *e.Tid}], idx{i, e})
	}
	keys := make([]key, 0, len(byThread))
	for k := range byThread {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool {
		if keys[a].pid != keys[b].pid {
			return keys[a].pid < keys[b].pid
		}
		return keys[a].tid < keys[b].tid
	})
	for _, k := range keys {
		evs := byThread[k]
		// Viewers order a thread's events by ts; at equal ts an E closes before a B opens,
		// and a longer X encloses a shorter one. The sort is stable: equal events keep
		// file order, which is the order of a B/E pair of zero length.
		sort.SliceStable(evs, func(a, b int) bool {
			ea, eb := evs[a].e, evs[b].e
			if *ea.Ts != *eb.Ts {
				return *ea.Ts < *eb.Ts
			}
			if (ea.Ph == "E") != (eb.Ph == "E") {
				return ea.Ph == "E"
			}
			return ea.End() > eb.End()
		})
		var stack []idx // open B and X events
		for _, x := range evs {
			e := x.e
			// Close the X events that ended before this one starts.
			for len(stack) > 0 && stack[len(stack)-1].e.Ph == "X" && stack[len(stack)-1].e.End() <= *e.Ts+eps {
				stack = stack[:len(stack)-1]
			}
			switch e.Ph {
			case "B":
				stack = append(stack, x)
			case "E":
				if len(stack) == 0 || stack[len(stack)-1].e.Ph != "B" {
					what := "no open B"
					if len(stack) > 0 {
						what = fmt.Sprintf("the innermost open slice is X %q (event %d), which ends after this E", stack[len(stack)-1].e.Name, stack[len(stack)-1].i)
					}
					bad(x.i, e, "E on pid %d tid %d at ts %v: %s", k.pid, k.tid, *e.Ts, what)
					continue
				}
				stack = stack[:len(stack)-1]
			case "X":
				if len(stack) > 0 {
					top := stack[len(stack)-1]
					if top.e.Ph == "X" && e.End() > top.e.End()+eps {
						bad(x.i, e, "[%v, %v] overlaps X %q (event %d) [%v, %v] on pid %d tid %d without nesting in it",
							*e.Ts, e.End(), top.e.Name, top.i, *top.e.Ts, top.e.End(), k.pid, k.tid)
						continue
					}
				}
				stack = append(stack, x)
			}
		}
		for _, x := range stack {
			if x.e.Ph == "B" {
				bad(x.i, x.e, "B on pid %d tid %d never ended", k.pid, k.tid)
			}
		}
	}
	return errors.Join(errs...)
}

// Slices returns t's intervals: its complete ("X") events, and each pair of "B" and "E"
// events of one thread as one complete event (the B's name, category and args, its ts, and
// the distance to its E as dur). Unpaired B and E events are left out.
func (t *Trace) Slices() []Event {
	type key struct{ pid, tid int }
	open := map[key][]Event{}
	var out []Event
	for _, e := range t.TraceEvents {
		if e.Pid == nil || e.Tid == nil || e.Ts == nil {
			continue
		}
		k := key{*e.Pid, *e.Tid}
		switch e.Ph {
		case "X":
			out = append(out, e)
		case "B":
			open[k] = append(open[k], e)
		case "E":
			st := open[k]
			if len(st) == 0 {
				continue
			}
			b := st[len(st)-1]
			open[k] = st[:len(st)-1]
			d := *e.Ts - *b.Ts
			b.Ph, b.Dur = "X", &d
			out = append(out, b)
		}
	}
	return out
}

// Checked returns the trace r holds now, as a file written at this moment would hold it, after
// checking it against the trace-event format (Check): for tests and tools that inspect a live
// recorder.
func Checked(r *Recorder) (*Trace, error) {
	var buf bytes.Buffer
	if _, err := r.WriteTo(&buf); err != nil {
		return nil, err
	}
	t, err := Parse(&buf)
	if err != nil {
		return nil, err
	}
	return t, Check(t)
}
