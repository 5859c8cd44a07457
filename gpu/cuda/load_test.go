package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// TestLoadWithoutDriver runs where there is no NVIDIA driver (CI, this
// project's build machine): Load must return a *LoadError that says what
// was tried, not panic or exit.
func TestLoadWithoutDriver(t *testing.T) {
	envDir := t.TempDir()
	t.Setenv(EnvLibs, envDir)
	d, err := load(SearchDirs(), systemDlopen, fileExists)
	if err == nil {
		t.Skipf("a CUDA driver is present here (%v): nothing to test", d.Libraries())
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err %T %v, want *LoadError", err, err)
	}
	if !le.NotFound() {
		t.Skipf("a driver was found but did not load (%v): not the no-driver case", err)
	}
	msg := err.Error()
	for _, want := range []string{"libcuda.so.1", envDir, "/usr/local/nvidia/lib64", "/usr/local/cuda/lib64", EnvLibs} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	if le.Tried[0].Path != filepath.Join(envDir, "libcuda.so.1") {
		t.Errorf("first path tried %q, want the %s folder first", le.Tried[0].Path, EnvLibs)
	}
	if last := le.Tried[len(le.Tried)-1]; last.Path != "libcuda.so.1" || last.Err == nil {
		t.Errorf("last attempt %+v, want the bare soname, failed", last)
	}
	t.Logf("message: %s", msg)
}

// TestLoadOnce checks that Load caches its result, whatever it is.
func TestLoadOnce(t *testing.T) {
	d1, err1 := Load()
	d2, err2 := Load()
	if d1 != d2 || err1 != err2 {
		t.Fatalf("second Load differs: %p/%v vs %p/%v", d1, err1, d2, err2)
	}
	if err1 != nil {
		var le *LoadError
		if !errors.As(err1, &le) {
			t.Fatalf("Load error %T, want *LoadError", err1)
		}
	}
}

// TestLoadUnusableFile: a file by the right name that is not a library is
// recorded with dlopen's reason and the search goes on.
func TestLoadUnusableFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "libcuda.so.1"), []byte("not ELF"), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := load([]string{dir}, systemDlopen, fileExists)
	if err == nil {
		// A machine with a driver: the search went past the bad file and
		// found the real one by its bare soname.
		for _, lib := range d.Libraries() {
			if strings.HasPrefix(lib, dir) {
				t.Fatalf("loaded the unusable file %s", lib)
			}
		}
		return
	}
	var le *LoadError
	if !errors.As(err, &le) {
		t.Fatalf("err %v, want *LoadError", err)
	}
	if le.Tried[0].Err == nil || errors.Is(le.Tried[0].Err, errNoSuchFile) {
		t.Fatalf("first attempt %+v, want dlopen's failure", le.Tried[0])
	}
	if len(le.Tried) < 2 {
		t.Fatalf("search stopped at the bad file: %+v", le.Tried)
	}
}

// TestLoadMissingSymbol: a real library that is not libcuda fails on the
// first required symbol, named in the error.
func TestLoadMissingSymbol(t *testing.T) {
	libm := "/lib/x86_64-linux-gnu/libm.so.6"
	if !fileExists(libm) {
		t.Skip("no " + libm + " to stand in for libcuda")
	}
	dir := t.TempDir()
	mustSymlink(t, libm, filepath.Join(dir, "libcuda.so.1"))
	_, err := load([]string{dir}, systemDlopen, fileExists)
	var le *LoadError
	if !errors.As(err, &le) || le.Symbol != "cuInit" {
		t.Fatalf("err %v, want a *LoadError naming cuInit", err)
	}
	if !strings.Contains(err.Error(), "lacks required symbol cuInit") {
		t.Fatalf("message %q", err)
	}
}
