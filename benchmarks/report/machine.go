package report

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the numbers were measured: the head of every report.
type Machine struct {
	CPUModel string `json:"cpu_model"`
	// Cores is the number of logical CPUs this process may use (runtime.NumCPU).
	Cores       int    `json:"cores"`
	MemoryBytes int64  `json:"memory_bytes"`
	GoVersion   string `json:"go_version"`
	OS          string `json:"os"`
	Arch        string `json:"arch"`
	// GOMAXPROCSPerRank is the GOMAXPROCS every rank ran with (gorun --threads-per-rank).
	GOMAXPROCSPerRank int `json:"gomaxprocs_per_rank"`
	// Commit is the git commit measured, with "-dirty" when the tree had changes.
	Commit string `json:"commit"`
	Date   string `json:"date"`
}

// DetectMachine fills a Machine from /proc, the runtime and git (run in repoDir). Anything
// it cannot find is left as "unknown" or 0 rather than failing: a report without the
// memory size is still a report.
func DetectMachine(ctx context.Context, repoDir string, threadsPerRank int) Machine {
	m := Machine{
		CPUModel:          "unknown",
		Cores:             runtime.NumCPU(),
		GoVersion:         runtime.Version(),
		OS:                runtime.GOOS,
		Arch:              runtime.GOARCH,
		GOMAXPROCSPerRank: threadsPerRank,
		Commit:            "unknown",
		Date:              time.Now().UTC().Format(time.RFC3339),
	}
	if v, ok := procField("/proc/cpuinfo", "model name"); ok {
		m.CPUModel = v
	}
	if v, ok := procField("/proc/meminfo", "MemTotal"); ok {
		// "23456789 kB"
		f := strings.Fields(v)
		if len(f) >= 1 {
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				m.MemoryBytes = kb << 10
			}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		// "go version go1.26.8 linux/amd64": the toolchain that built the ranks.
		if f := strings.Fields(string(out)); len(f) >= 3 {
			m.GoVersion = f[2]
		}
	}
	git := func(args ...string) (string, bool) {
		c := exec.CommandContext(ctx, "git", args...)
		c.Dir = repoDir
		out, err := c.Output()
		return strings.TrimSpace(string(out)), err == nil
	}
	if h, ok := git("rev-parse", "--short=12", "HEAD"); ok && h != "" {
		m.Commit = h
		if st, ok := git("status", "--porcelain", "--untracked-files=no"); ok && st != "" {
			m.Commit += "-dirty"
		}
	}
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) (string, bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
