// Command timeline works with the Chrome traces that gorun --timeline writes (package
// timeline):
//
//	timeline merge -o all.json trace.rank0.json trace.rank1.json ...   one file, one row per rank
//	timeline check trace.json ...                                      validate against the format
//	timeline plot -o trace.png [-last-steps N | -window FROM:TO] trace.json   a Gantt chart per rank/thread
//
// gorun merges the rank files of one node by itself; merge is for files from several hosts
// (their clocks are lined up by wall-clock time; see timeline.Merge). The traces themselves
// open in https://ui.perfetto.dev or chrome://tracing; plot draws a PNG for documents.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/timeline"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  timeline merge -o OUT FILE...          merge rank traces into one (one process row per rank)
  timeline check FILE...                 check traces against the trace-event format
  timeline plot -o OUT.png [flags] FILE  draw a trace as a Gantt chart (one row per rank and thread)
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintln(stderr, "timeline:", err)
		return 1
	}
	fs := flag.NewFlagSet("timeline "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	switch args[0] {
	case "merge":
		out := fs.String("o", "", "the merged file to write (required)")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *out == "" || fs.NArg() == 0 {
			fmt.Fprint(stderr, "timeline merge: need -o OUT and at least one input file\n", usage)
			return 2
		}
		if err := timeline.Merge(*out, fs.Args()); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "merged %d file(s) into %s\n", fs.NArg(), *out)
	case "check":
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			fmt.Fprint(stderr, "timeline check: no files\n", usage)
			return 2
		}
		bad := 0
		for _, p := range fs.Args() {
			t, err := load(p)
			if err == nil {
				err = timeline.Check(t)
			}
			if err != nil {
				fmt.Fprintf(stderr, "%s: %v\n", p, err)
				bad++
				continue
			}
			fmt.Fprintf(stdout, "%s: %d events, valid\n", p, len(t.TraceEvents))
		}
		if bad > 0 {
			return 1
		}
	case "plot":
		out := fs.String("o", "", "the PNG (or .svg) to write (required)")
		steps := fs.Int("last-steps", 0, "draw only the last N DDP steps of rank 0 (0: the whole trace)")
		width := fs.Float64("width", 30, "width in cm")
		win := fs.String("window", "", "FROM:TO: draw only these milliseconds from the trace's first event")
		if err := fs.Parse(args[1:]); err != nil {
			return 2
		}
		if *out == "" || fs.NArg() != 1 {
			fmt.Fprint(stderr, "timeline plot: need -o OUT and one trace file\n", usage)
			return 2
		}
		if *steps < 0 {
			fmt.Fprintln(stderr, "timeline plot: -last-steps must not be negative")
			return 2
		}
		var window [2]float64
		if *win != "" {
			a, b, ok := strings.Cut(*win, ":")
			var err1, err2 error
			window[0], err1 = strconv.ParseFloat(a, 64)
			window[1], err2 = strconv.ParseFloat(b, 64)
			if !ok || err1 != nil || err2 != nil || window[1] <= window[0] || window[0] < 0 {
				fmt.Fprintf(stderr, "timeline plot: -window %q: want FROM:TO in milliseconds, 0 <= FROM < TO\n", *win)
				return 2
			}
		}
		if *width <= 0 {
			fmt.Fprintln(stderr, "timeline plot: -width must be positive")
			return 2
		}
		t, err := load(fs.Arg(0))
		if err != nil {
			return fail(err)
		}
		if err := timeline.Check(t); err != nil {
			return fail(fmt.Errorf("%s: %w", fs.Arg(0), err))
		}
		if err := plotTrace(t, *out, *steps, window, *width); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "wrote %s\n", *out)
	default:
		fmt.Fprintf(stderr, "timeline: unknown command %q\n%s", args[0], usage)
		return 2
	}
	return 0
}

func load(path string) (*timeline.Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	t, err := timeline.Parse(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}
