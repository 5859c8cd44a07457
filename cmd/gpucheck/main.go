// Command gpucheck is the project's device check: one binary, built here
// (CGO_ENABLED=0) and carried to a GPU machine, that checks the CUDA backend
// against the CPU path and measures it, writing one JSON object per line.
//
// Usage:
//
//	gpucheck [--out FILE] SUBCOMMAND [flags]
//
// Subcommands: devices (NVML and CUDA agree on the device; --device auto
// picks it), gemm (cuBLAS through gpu.Device against a float64 reference),
// kernels (every kernel on the device against its Go twin), steps (training
// steps on the device against the CPU path), bench (samples/s on the device
// and on the CPU path, with a breakdown), plus the multi-process checks
// ddp-worker/pipe-worker and their comparisons. scripts/gpu-check.sh runs
// them all; every line it writes carries "check" and "ok".
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// commands maps subcommand names to their implementations; each file
// registers its own in an init function.
var commands = map[string]func(ctx context.Context, args []string, out *Reporter) error{}

// Reporter writes JSON lines to stdout and, with --out, appends them to a file.
type Reporter struct {
	mu     sync.Mutex
	w      []io.Writer
	failed bool
}

// Report writes one JSON object. A record whose "ok" is false marks the run failed.
func (r *Reporter) Report(rec map[string]any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok, has := rec["ok"].(bool); has && !ok {
		r.failed = true
	}
	b, err := json.Marshal(rec)
	if err != nil {
		b, _ = json.Marshal(map[string]any{"check": rec["check"], "ok": false, "error": "unencodable record: " + err.Error()})
		r.failed = true
	}
	b = append(b, '\n')
	for _, w := range r.w {
		w.Write(b)
	}
}

// Failed reports whether any record had ok=false.
func (r *Reporter) Failed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failed
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func usage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(w, "usage: gpucheck [--out FILE] SUBCOMMAND [flags]\nsubcommands: %s\n", strings.Join(names, " "))
}

func run(args []string) int {
	fs := flag.NewFlagSet("gpucheck", flag.ContinueOnError)
	outPath := fs.String("out", "", "also append the JSON lines to this file")
	fs.Usage = func() { usage(os.Stderr) }
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		usage(os.Stderr)
		return 2
	}
	cmd, ok := commands[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(os.Stderr, "gpucheck: unknown subcommand %q\n", fs.Arg(0))
		usage(os.Stderr)
		return 2
	}
	rep := &Reporter{w: []io.Writer{os.Stdout}}
	if *outPath != "" {
		f, err := os.OpenFile(*outPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gpucheck: --out: %v\n", err)
			return 2
		}
		defer f.Close()
		rep.w = append(rep.w, f)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd(ctx, fs.Args()[1:], rep); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			rep.Report(map[string]any{"check": fs.Arg(0), "ok": false, "error": err.Error()})
			fmt.Fprintf(os.Stderr, "gpucheck %s: %v\n", fs.Arg(0), err)
		}
		return 1
	}
	if rep.Failed() {
		return 1
	}
	return 0
}
