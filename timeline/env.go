package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/ringtrain/ringtrain/jobenv"
)

// RankPath is the file rank writes when the job's timeline is file: the rank inserted
// before the extension ("trace.json" → "trace.rank3.json"; "trace" → "trace.rank3").
func RankPath(file string, rank int) string {
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + ".rank" + strconv.Itoa(rank) + ext
}

// RankGlob is the pattern matching every RankPath of file (for filepath.Glob).
func RankGlob(file string) string {
	ext := filepath.Ext(file)
	return strings.TrimSuffix(file, ext) + ".rank[0-9]*" + ext
}

var process struct {
	once sync.Once
	r    *Recorder
	err  error
}

// FromEnv returns this process's recorder for the job's timeline: GORUN_TIMELINE names the
// merged file (gorun --timeline sets it), and this rank (RANK, 0 when unset) records into
// RankPath of it. It returns nil, nil when GORUN_TIMELINE is unset or empty: no timeline.
// Every call returns the same recorder (it is made once per process), so that package
// collective, ddp and pipeline all record into one file. It checks that the file can be
// written at once, so that a bad path fails the job's start, not its end.
func FromEnv() (*Recorder, error) {
	process.once.Do(func() { process.r, process.err = fromEnv(os.Getenv) })
	return process.r, process.err
}

// fromEnv is FromEnv without the once: a new recorder for the environment getenv reads.
func fromEnv(getenv func(string) string) (*Recorder, error) {
	file := strings.TrimSpace(getenv(jobenv.Timeline))
	if file == "" {
		return nil, nil
	}
	rank := 0
	if s := strings.TrimSpace(getenv(jobenv.Rank)); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("timeline: %s=%q is not a rank", jobenv.Rank, s)
		}
		rank = n
	}
	path := RankPath(file, rank)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("timeline: %s=%s: rank %d cannot write its file: %w", jobenv.Timeline, file, rank, err)
	}
	f.Close()
	r := New(Config{Path: path, Rank: rank})
	// Until the first Flush the file holds an empty but valid trace.
	if err := r.Flush(); err != nil {
		return nil, err
	}
	return r, nil
}
