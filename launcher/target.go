package launcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// targetKind says how a TARGET becomes an executable.
type targetKind int

const (
	targetGoFile  targetKind = iota // a .go file: go build FILE
	targetGoPkg                     // a directory: go build in it
	targetProgram                   // an executable file or a command in PATH: run as is
)

// target is a resolved TARGET.
type target struct {
	kind targetKind
	path string // absolute path of the file, directory or executable
	name string // short name for messages and the built binary
}

// resolveTarget decides what TARGET is, or returns a *UsageError naming it.
func resolveTarget(t string) (*target, error) {
	fi, err := os.Stat(t)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, usagef("TARGET %s: %v", t, err)
		}
		// A bare name (no path separator, not a .go file) may be a command in PATH.
		if !strings.ContainsRune(t, filepath.Separator) && !strings.HasSuffix(t, ".go") {
			if p, lerr := exec.LookPath(t); lerr == nil {
				return &target{kind: targetProgram, path: p, name: t}, nil
			}
			return nil, usagef("TARGET %s: no such file, directory or command in PATH", t)
		}
		return nil, usagef("TARGET %s: no such file or directory", t)
	}
	abs, err := filepath.Abs(t)
	if err != nil {
		return nil, usagef("TARGET %s: %v", t, err)
	}
	switch {
	case fi.IsDir():
		return &target{kind: targetGoPkg, path: abs, name: filepath.Base(abs)}, nil
	case strings.HasSuffix(t, ".go"):
		return &target{kind: targetGoFile, path: abs, name: strings.TrimSuffix(filepath.Base(abs), ".go")}, nil
	case fi.Mode().IsRegular() && (runtime.GOOS == "windows" || fi.Mode().Perm()&0o111 != 0):
		return &target{kind: targetProgram, path: abs, name: filepath.Base(abs)}, nil
	default:
		return nil, usagef("TARGET %s is neither a .go file, a package directory nor an executable file", t)
	}
}

// goTool finds the go command in PATH.
func goTool() (string, error) {
	p, err := exec.LookPath("go")
	if err != nil {
		return "", errors.New("cannot find the go command in PATH to build TARGET (or give a prebuilt executable)")
	}
	return p, nil
}

// build compiles a Go target into dir and returns the executable's path. The compiler's
// output goes to stderr exactly as it wrote it. Programs are returned unchanged.
func (t *target) build(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	if t.kind == targetProgram {
		return t.path, nil
	}
	goCmd, err := goTool()
	if err != nil {
		return "", jobErrorf("%v", err)
	}
	out := filepath.Join(dir, t.name)
	if runtime.GOOS == "windows" {
		out += ".exe"
	}
	// Build from the target's own directory so that its go.mod (not the caller's current
	// directory's) decides the module, the way a user expects "gorun path/to/train.go" to work.
	var cmd *exec.Cmd
	if t.kind == targetGoFile {
		cmd = exec.CommandContext(ctx, goCmd, "build", "-o", out, filepath.Base(t.path))
		cmd.Dir = filepath.Dir(t.path)
	} else {
		cmd = exec.CommandContext(ctx, goCmd, "build", "-o", out, ".")
		cmd.Dir = t.path
	}
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	// The go command starts compilers and linkers: give the build its own process group, so
	// that an interrupt stops all of it and leaves no compiler running after gorun.
	cmd.SysProcAttr = newSysProcAttr()
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", fmt.Errorf("building %s: %w", t.path, ErrInterrupted)
		}
		return "", jobErrorf("building %s failed (%v); no rank was started", t.path, err)
	}
	return out, nil
}
