package cuda

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/ebitengine/purego"
)

// EnvLibs names the environment variable whose colon-separated folders are
// searched first for the CUDA libraries.
const EnvLibs = "RINGTRAIN_CUDA_LIBS"

// fixedDirs are the usual homes of the driver and toolkit libraries: the
// NVIDIA container runtime's mount point (where the lent GPU machines have
// libcuda), the toolkit, and Debian/Ubuntu's multiarch folder.
var fixedDirs = []string{
	"/usr/local/nvidia/lib64",
	"/usr/local/cuda/lib64",
	"/usr/lib/x86_64-linux-gnu",
}

// globDirs find cuBLAS installed by pip wheels (nvidia-cublas-cu12,
// nvidia-cu13 as PyTorch pulls them in), whose folders the dynamic loader
// does not know.
var globDirs = []string{
	"/opt/torch/.venv/lib/python3*/site-packages/nvidia/cu13/lib",
	"/opt/torch/.venv/lib/python3*/site-packages/nvidia/cublas/lib",
	"/usr/local/lib/python3*/dist-packages/nvidia/cu13/lib",
	"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
}

// SearchDirs returns the folders searched for CUDA (and NVML) libraries, in
// order: those in $RINGTRAIN_CUDA_LIBS, the fixed folders, then the
// existing matches of the pip-wheel globs. After these, OpenLibrary also
// tries each bare soname, which lets the dynamic loader search
// LD_LIBRARY_PATH and its cache.
func SearchDirs() []string {
	return searchDirs(os.Getenv(EnvLibs), filepath.Glob)
}

// searchDirs is SearchDirs over a given env value and glob function.
// Empty entries and repeats are dropped (the first occurrence keeps its
// place).
func searchDirs(env string, glob func(string) ([]string, error)) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		d = strings.TrimSpace(d)
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range strings.Split(env, ":") {
		add(d)
	}
	for _, d := range fixedDirs {
		add(d)
	}
	for _, g := range globDirs {
		matches, _ := glob(g) // only ErrBadPattern, impossible for these
		for _, d := range matches {
			add(d)
		}
	}
	return dirs
}

// opener tries to open one library: soname inside dir, or by bare soname
// when dir is "". It returns the dlopen handle.
type opener func(dir, soname string) (uintptr, error)

// search tries every soname in every dir, in order, then every bare soname,
// and stops at the first that opens. It returns the handle and path of that
// one (0, "" when none opened) and every attempt made.
func search(dirs, sonames []string, open opener) (handle uintptr, path string, tried []Attempt) {
	try := func(dir, name string) bool {
		p := name
		if dir != "" {
			p = filepath.Join(dir, name)
		}
		h, err := open(dir, name)
		tried = append(tried, Attempt{Path: p, Err: err})
		if err == nil {
			handle, path = h, p
			return true
		}
		return false
	}
	for _, d := range dirs {
		for _, n := range sonames {
			if try(d, n) {
				return
			}
		}
	}
	for _, n := range sonames {
		if try("", n) {
			return
		}
	}
	return 0, "", tried
}

// dlopenFunc is purego.Dlopen's shape, replaceable in tests.
type dlopenFunc func(path string, mode int) (uintptr, error)

// systemDlopen calls dlopen on a locked OS thread, so that dlerror (thread
// local) describes this dlopen and not one on another thread.
func systemDlopen(path string, mode int) (uintptr, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	return purego.Dlopen(path, mode)
}

// fileExists reports whether path names an existing file; replaceable in
// tests.
var fileExists = func(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// plainOpener opens dir/soname with RTLD_NOW|RTLD_GLOBAL, reporting a
// missing file as errNoSuchFile rather than dlerror's longer text.
func plainOpener(dl dlopenFunc, exists func(string) bool) opener {
	return func(dir, soname string) (uintptr, error) {
		p := soname
		if dir != "" {
			p = filepath.Join(dir, soname)
			if !exists(p) {
				return 0, errNoSuchFile
			}
		}
		return dl(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	}
}

// cublasOpener is plainOpener that first loads libcublasLt.so.<major> from
// the same folder, when it is there: libcublas needs it, and a folder the
// dynamic loader does not search would otherwise leave that DT_NEEDED
// unresolved. A failure to load cuBLASLt is reported with cuBLAS's.
func cublasOpener(dl dlopenFunc, exists func(string) bool) opener {
	plain := plainOpener(dl, exists)
	return func(dir, soname string) (uintptr, error) {
		var ltErr error
		if dir != "" && exists(filepath.Join(dir, soname)) {
			lt := filepath.Join(dir, strings.Replace(soname, "libcublas.", "libcublasLt.", 1))
			if exists(lt) {
				_, ltErr = dl(lt, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			}
		}
		h, err := plain(dir, soname)
		if err != nil && ltErr != nil {
			return 0, &joinedError{err, ltErr}
		}
		return h, err
	}
}

// joinedError keeps a main error and the earlier one that probably caused
// it on one line.
type joinedError struct{ err, cause error }

func (e *joinedError) Error() string {
	return e.err.Error() + " (after " + e.cause.Error() + ")"
}
func (e *joinedError) Unwrap() []error { return []error{e.err, e.cause} }

// OpenLibrary dlopens (RTLD_NOW|RTLD_GLOBAL) the first of sonames found in
// SearchDirs, each soname in each folder in turn, then by bare soname. It
// returns the handle and the path opened, or a *LoadError listing every
// attempt. Other packages use it to find NVIDIA libraries the same way
// (e.g. libnvidia-ml.so.1).
func OpenLibrary(sonames ...string) (handle uintptr, path string, err error) {
	h, p, tried := search(SearchDirs(), sonames, plainOpener(systemDlopen, fileExists))
	if p == "" {
		return 0, "", &LoadError{
			Library: strings.Join(sonames, "/"),
			Tried:   tried,
			Hint:    "set " + EnvLibs + " to the folder holding it",
		}
	}
	return h, p, nil
}
