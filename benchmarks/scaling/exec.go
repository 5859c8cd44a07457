package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/benchmarks/scaling/internal/ranklines"
)

// binaries are the executables a session runs.
type binaries struct {
	gorun, trainer, allreduce string
}

// buildBinaries builds whatever was not given prebuilt, once, into dir: gorun then runs
// the executables as its TARGET, so no run pays (or times) a compilation.
func buildBinaries(ctx context.Context, c *config, dir string, log io.Writer) (binaries, error) {
	b := binaries{gorun: c.gorun, trainer: c.trainer, allreduce: c.allreduce}
	for _, t := range []struct {
		dst  *string
		pkg  string
		name string
		need bool
	}{
		{&b.gorun, "./cmd/gorun", "gorun", true},
		{&b.trainer, "./examples/fashion", "fashion-train", true},
		{&b.allreduce, "./benchmarks/allreduce", "allreduce-bench", c.sweep},
	} {
		if !t.need {
			continue
		}
		if *t.dst != "" {
			p, err := filepath.Abs(*t.dst)
			if err != nil {
				return b, err
			}
			if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
				return b, fmt.Errorf("--%s %s: not an executable file", strings.TrimSuffix(strings.TrimSuffix(t.name, "-train"), "-bench"), p)
			}
			*t.dst = p
			continue
		}
		out := filepath.Join(dir, t.name)
		fmt.Fprintf(log, "scaling: building %s\n", t.pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, t.pkg)
		cmd.Dir = c.repo
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return b, fmt.Errorf("building %s: %v\n%s", t.pkg, err, strings.TrimSpace(stderr.String()))
		}
		*t.dst = out
	}
	return b, nil
}

// runResult is what one gorun job printed.
type runResult struct {
	lines   []ranklines.Line // JSON objects, in order
	tail    []string         // the last lines that were not JSON (stderr and stdout)
	elapsed time.Duration
}

// tailKeep is how many non-JSON lines a failed job shows.
const tailKeep = 12

// runGorun runs gorun with args under ctx and timeout and collects the JSON lines the
// ranks print. On timeout gorun gets SIGTERM (it stops its ranks) and, 10 s later, SIGKILL.
func runGorun(ctx context.Context, gorun string, args []string, timeout time.Duration, dir string) (*runResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gorun, args...)
	cmd.Dir = dir
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr tailBuffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", gorun, err)
	}
	res := &runResult{}
	var other []string
	lines, rerr := ranklines.ReadAll(stdout, func(rank int, text []byte) {
		s := string(text)
		if rank >= 0 {
			s = fmt.Sprintf("[%d] %s", rank, s)
		}
		other = append(other, s)
		if len(other) > tailKeep {
			other = other[1:]
		}
	})
	werr := cmd.Wait()
	res.elapsed = time.Since(start)
	res.lines = lines
	res.tail = append(other, stderr.lines()...)
	if len(res.tail) > tailKeep {
		res.tail = res.tail[len(res.tail)-tailKeep:]
	}
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return res, fmt.Errorf("timed out after %v (--run-timeout)", timeout)
	case werr != nil:
		return res, fmt.Errorf("gorun: %v", werr)
	case rerr != nil:
		return res, rerr
	}
	return res, nil
}

// tailBuffer keeps the last lines written to it (a job's stderr can be long).
type tailBuffer struct {
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 64<<10 {
		t.buf = append([]byte(nil), t.buf[len(t.buf)-32<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lines() []string {
	s := strings.TrimRight(string(t.buf), "\n")
	if s == "" {
		return nil
	}
	ls := strings.Split(s, "\n")
	if len(ls) > tailKeep {
		ls = ls[len(ls)-tailKeep:]
	}
	return ls
}
