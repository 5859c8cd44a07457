// Package nvrtc is a minimal binding of NVIDIA's run-time compiler (NVRTC),
// loaded with purego so that neither cgo nor a CUDA toolkit is needed at
// build time. It serves two callers: the generator that writes
// gpu/kernels/kernels.ptx, and the test that checks the committed PTX is what
// kernels.cu compiles to. Both go through Build, so the options and the
// normalisation of the output cannot drift apart.
//
// NVRTC compiles CUDA C to PTX on any machine: no GPU and no driver are
// involved.
package nvrtc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/ebitengine/purego"
)

// EnvPath names an environment variable holding the path of a libnvrtc
// shared object; when set it is the only candidate tried.
const EnvPath = "RINGTRAIN_NVRTC"

// searchDirs are tried, in order, for each soname in sonames before the bare
// sonames are handed to the dynamic loader's own search.
var searchDirs = []string{"/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64"}

// sonames are the libnvrtc major versions we accept, newest first. Debian's
// package for 11.x is named after the 11.2 ABI (libnvrtc.so.11.2) even though
// it ships 11.8.
var sonames = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2"}

// Lib is a loaded libnvrtc.
type Lib struct {
	path string // what was opened (a path or a bare soname)

	version           func(major, minor *int32) int32
	getErrorString    func(r int32) string
	createProgram     func(prog *uintptr, src, name *byte, numHeaders int32, headers, includeNames uintptr) int32
	compileProgram    func(prog uintptr, numOptions int32, options **byte) int32
	getProgramLogSize func(prog uintptr, size *uintptr) int32
	getProgramLog     func(prog uintptr, log *byte) int32
	getPTXSize        func(prog uintptr, size *uintptr) int32
	getPTX            func(prog uintptr, ptx *byte) int32
	destroyProgram    func(prog *uintptr) int32
	mu                sync.Mutex // serialises compilations; NVRTC's thread safety varies by version
}

var (
	loadOnce sync.Once
	loaded   *Lib
	loadErr  error
)

// Load opens libnvrtc once per process and returns it, or an error listing
// every candidate tried. Search order: $RINGTRAIN_NVRTC (a file path) alone
// if set; otherwise libnvrtc.so.13, .12 and .11.2 in each of
// /usr/lib/x86_64-linux-gnu and /usr/local/cuda/lib64; then the bare
// sonames through the loader's search path.
func Load() (*Lib, error) {
	loadOnce.Do(func() { loaded, loadErr = load() })
	return loaded, loadErr
}

func load() (*Lib, error) {
	var candidates []string
	if p := os.Getenv(EnvPath); p != "" {
		candidates = []string{p}
	} else {
		for _, so := range sonames {
			for _, d := range searchDirs {
				candidates = append(candidates, filepath.Join(d, so))
			}
		}
		candidates = append(candidates, sonames...)
	}
	var errs []error
	for _, c := range candidates {
		if strings.ContainsRune(c, '/') {
			if _, err := os.Stat(c); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c, err))
				continue
			}
		}
		l, err := open(c)
		if err == nil {
			return l, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c, err))
	}
	return nil, fmt.Errorf("nvrtc: libnvrtc not loadable (set %s to its path): %w", EnvPath, errors.Join(errs...))
}

// preloadBuiltins opens libnvrtc-builtins RTLD_GLOBAL from the folder that
// holds lib. libnvrtc dlopens its builtins by bare soname when it first
// compiles, and a library outside the loader's search path (CUDA's lib64, a
// Python wheel) would not be found that way; once it is loaded globally the
// loader reuses it. Failures are ignored: the builtins may still be on the
// search path, and if not, compilation reports it.
func preloadBuiltins(lib string) {
	dir := filepath.Dir(lib)
	if !strings.ContainsRune(lib, '/') {
		return
	}
	resolved, err := filepath.EvalSymlinks(lib)
	if err == nil {
		dir = filepath.Dir(resolved)
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "libnvrtc-builtins.so.*"))
	// Prefer the shortest name (the soname link) over the fully versioned file.
	var best string
	for _, m := range matches {
		if best == "" || len(m) < len(best) {
			best = m
		}
	}
	if best != "" {
		_, _ = purego.Dlopen(best, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	}
}

func open(path string) (*Lib, error) {
	preloadBuiltins(path)
	h, err := purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, err
	}
	l := &Lib{path: path}
	// Look every symbol up first: RegisterLibFunc panics on a missing one.
	syms := []struct {
		name string
		fptr any
	}{
		{"nvrtcVersion", &l.version},
		{"nvrtcGetErrorString", &l.getErrorString},
		{"nvrtcCreateProgram", &l.createProgram},
		{"nvrtcCompileProgram", &l.compileProgram},
		{"nvrtcGetProgramLogSize", &l.getProgramLogSize},
		{"nvrtcGetProgramLog", &l.getProgramLog},
		{"nvrtcGetPTXSize", &l.getPTXSize},
		{"nvrtcGetPTX", &l.getPTX},
		{"nvrtcDestroyProgram", &l.destroyProgram},
	}
	for _, s := range syms {
		if _, err := purego.Dlsym(h, s.name); err != nil {
			return nil, fmt.Errorf("missing symbol %s: %w", s.name, err)
		}
	}
	for _, s := range syms {
		purego.RegisterLibFunc(s.fptr, h, s.name)
	}
	return l, nil
}

// Path is the file or soname that was opened.
func (l *Lib) Path() string { return l.path }

// Version is NVRTC's (major, minor) version.
func (l *Lib) Version() (major, minor int, err error) {
	var ma, mi int32
	if r := l.version(&ma, &mi); r != 0 {
		return 0, 0, l.err("nvrtcVersion", r)
	}
	return int(ma), int(mi), nil
}

func (l *Lib) err(what string, r int32) error {
	return fmt.Errorf("nvrtc: %s: %s (%d)", what, l.getErrorString(r), r)
}

// cstr is a NUL-terminated copy of s in Go memory.
func cstr(s string) []byte { return append([]byte(s), 0) }

// CompileError is a failed nvrtcCompileProgram with the compiler's log.
type CompileError struct {
	Err error
	Log string
}

func (e *CompileError) Error() string { return fmt.Sprintf("%v\n%s", e.Err, e.Log) }
func (e *CompileError) Unwrap() error { return e.Err }

// Compile compiles CUDA C source (name is what diagnostics call it) with the
// given options and returns the PTX without its trailing NUL, and the
// compiler log (warnings; empty when clean). A failed compilation returns a
// *CompileError carrying the log.
func (l *Lib) Compile(src []byte, name string, options []string) (ptx []byte, log string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()

	// The program reads src and name during nvrtcCreateProgram only, and the
	// options during nvrtcCompileProgram only; the Pinner keeps the Go buffers
	// (and the array of pointers to them that C reads) in place meanwhile.
	var pin runtime.Pinner
	defer pin.Unpin()
	csrc, cname := cstr(string(src)), cstr(name)
	pin.Pin(&csrc[0])
	pin.Pin(&cname[0])
	var prog uintptr
	if r := l.createProgram(&prog, &csrc[0], &cname[0], 0, 0, 0); r != 0 {
		return nil, "", l.err("nvrtcCreateProgram", r)
	}
	defer l.destroyProgram(&prog)

	opts := make([]*byte, len(options)+1) // +1 so &opts[0] exists when there are none
	for i, o := range options {
		b := cstr(o)
		pin.Pin(&b[0])
		opts[i] = &b[0]
	}
	pin.Pin(&opts[0])
	rc := l.compileProgram(prog, int32(len(options)), &opts[0])

	var n uintptr
	if r := l.getProgramLogSize(prog, &n); r != 0 {
		return nil, "", l.err("nvrtcGetProgramLogSize", r)
	}
	if n > 1 {
		buf := make([]byte, n)
		if r := l.getProgramLog(prog, &buf[0]); r != 0 {
			return nil, "", l.err("nvrtcGetProgramLog", r)
		}
		log = strings.TrimRight(string(buf[:n-1]), "\x00\n")
	}
	if rc != 0 {
		return nil, log, &CompileError{Err: l.err("nvrtcCompileProgram", rc), Log: log}
	}

	if r := l.getPTXSize(prog, &n); r != 0 {
		return nil, log, l.err("nvrtcGetPTXSize", r)
	}
	if n == 0 {
		return nil, log, errors.New("nvrtc: empty PTX")
	}
	buf := make([]byte, n)
	if r := l.getPTX(prog, &buf[0]); r != 0 {
		return nil, log, l.err("nvrtcGetPTX", r)
	}
	// The size includes the terminating NUL.
	if i := strings.IndexByte(string(buf), 0); i >= 0 {
		buf = buf[:i]
	}
	return buf, log, nil
}
