package cuda

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ebitengine/purego"
)

func TestSearchDirsEnvFirst(t *testing.T) {
	glob := func(pattern string) ([]string, error) {
		if strings.Contains(pattern, "site-packages/nvidia/cu13") {
			return []string{"/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib"}, nil
		}
		return nil, nil
	}
	got := searchDirs("/a/lib: /b/lib/ ::/usr/local/cuda/lib64", glob)
	want := []string{
		"/a/lib", "/b/lib", "/usr/local/cuda/lib64", // env first, in its order; cleaned
		"/usr/local/nvidia/lib64", "/usr/lib/x86_64-linux-gnu", // fixed, without the repeat
		"/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib", // globs last
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("searchDirs =\n%q\nwant\n%q", got, want)
	}
	if got := searchDirs("", glob); got[0] != "/usr/local/nvidia/lib64" {
		t.Fatalf("without env the search starts at %q", got[0])
	}
}

// fakeOpener opens only the paths in ok, recording what was asked.
func fakeOpener(ok map[string]uintptr, asked *[]string) opener {
	return func(dir, soname string) (uintptr, error) {
		p := soname
		if dir != "" {
			p = filepath.Join(dir, soname)
		}
		*asked = append(*asked, p)
		if h, found := ok[p]; found {
			return h, nil
		}
		if dir != "" {
			return 0, errNoSuchFile
		}
		return 0, fmt.Errorf("%s: cannot open shared object file: No such file or directory", soname)
	}
}

func TestSearchOrderEachSonameInEachDirThenBare(t *testing.T) {
	var asked []string
	dirs := []string{"/env", "/usr/local/nvidia/lib64"}
	h, path, tried := search(dirs, cublasSonames, fakeOpener(nil, &asked))
	if h != 0 || path != "" {
		t.Fatalf("found %q with nothing openable", path)
	}
	want := []string{
		"/env/libcublas.so.13", "/env/libcublas.so.12", "/env/libcublas.so.11",
		"/usr/local/nvidia/lib64/libcublas.so.13", "/usr/local/nvidia/lib64/libcublas.so.12", "/usr/local/nvidia/lib64/libcublas.so.11",
		"libcublas.so.13", "libcublas.so.12", "libcublas.so.11",
	}
	if !reflect.DeepEqual(asked, want) {
		t.Fatalf("tried\n%q\nwant\n%q", asked, want)
	}
	if len(tried) != len(want) {
		t.Fatalf("%d attempts recorded, want %d", len(tried), len(want))
	}
	for i, a := range tried {
		if a.Path != want[i] || a.Err == nil {
			t.Errorf("attempt %d = %+v", i, a)
		}
	}
}

func TestSearchStopsAtFirstOpened(t *testing.T) {
	var asked []string
	ok := map[string]uintptr{"/b/libcublas.so.12": 7, "/c/libcublas.so.13": 8}
	h, path, tried := search([]string{"/a", "/b", "/c"}, cublasSonames, fakeOpener(ok, &asked))
	if h != 7 || path != "/b/libcublas.so.12" {
		t.Fatalf("got %d %q, want the .12 in /b (earlier dir beats newer soname)", h, path)
	}
	if last := tried[len(tried)-1]; last.Path != path || last.Err != nil {
		t.Fatalf("last attempt %+v, want the success", last)
	}
	if len(asked) != 5 {
		t.Fatalf("asked %q after success", asked)
	}
}

func TestSearchBareSoname(t *testing.T) {
	var asked []string
	h, path, _ := search([]string{"/a"}, []string{"libcuda.so.1"}, fakeOpener(map[string]uintptr{"libcuda.so.1": 3}, &asked))
	if h != 3 || path != "libcuda.so.1" {
		t.Fatalf("got %d %q", h, path)
	}
}

// fakeDL records dlopen calls; paths in fail fail.
type fakeDL struct {
	calls []string
	modes []int
	fail  map[string]bool
}

func (f *fakeDL) open(path string, mode int) (uintptr, error) {
	f.calls = append(f.calls, path)
	f.modes = append(f.modes, mode)
	if f.fail[path] {
		return 0, errors.New(path + ": invalid ELF header")
	}
	return uintptr(len(f.calls)), nil
}

func TestCublasOpenerPreloadsLtFromSameDir(t *testing.T) {
	files := map[string]bool{
		"/cu13/libcublas.so.13": true, "/cu13/libcublasLt.so.13": true,
		"/old/libcublas.so.12": true, // no Lt beside it
	}
	exists := func(p string) bool { return files[p] }
	dl := &fakeDL{}
	open := cublasOpener(dl.open, exists)

	if _, err := open("/cu13", "libcublas.so.13"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/cu13/libcublasLt.so.13", "/cu13/libcublas.so.13"}; !reflect.DeepEqual(dl.calls, want) {
		t.Fatalf("dlopen calls %q, want %q", dl.calls, want)
	}
	if dl.modes[0] != purego.RTLD_NOW|purego.RTLD_GLOBAL {
		t.Fatalf("cuBLASLt opened with mode %#x, want RTLD_NOW|RTLD_GLOBAL", dl.modes[0])
	}

	dl.calls = nil
	if _, err := open("/old", "libcublas.so.12"); err != nil {
		t.Fatal(err)
	}
	if want := []string{"/old/libcublas.so.12"}; !reflect.DeepEqual(dl.calls, want) {
		t.Fatalf("dlopen calls %q, want %q (no Lt there)", dl.calls, want)
	}

	dl.calls = nil
	if _, err := open("/cu13", "libcublas.so.12"); !errors.Is(err, errNoSuchFile) {
		t.Fatalf("missing file: err %v, want errNoSuchFile", err)
	}
	if len(dl.calls) != 0 {
		t.Fatalf("dlopen called for a missing file: %q", dl.calls)
	}

	// A failing Lt is reported with cuBLAS's own failure.
	dl = &fakeDL{fail: map[string]bool{"/cu13/libcublasLt.so.13": true, "/cu13/libcublas.so.13": true}}
	open = cublasOpener(dl.open, exists)
	_, err := open("/cu13", "libcublas.so.13")
	if err == nil || !strings.Contains(err.Error(), "libcublasLt.so.13") {
		t.Fatalf("err %v, want it to mention the cuBLASLt failure", err)
	}
}

func TestLoadErrorMessage(t *testing.T) {
	e := &LoadError{
		Library: "libcuda.so.1",
		Tried: []Attempt{
			{"/env/libcuda.so.1", errNoSuchFile},
			{"/usr/local/nvidia/lib64/libcuda.so.1", errNoSuchFile},
			{"/bad/libcuda.so.1", errors.New("/bad/libcuda.so.1: file too short")},
			{"libcuda.so.1", errors.New("libcuda.so.1: cannot open shared object file: No such file or directory")},
		},
		Hint: "no NVIDIA driver on this machine?",
	}
	want := "cuda: libcuda.so.1 not found (tried: /env/libcuda.so.1, /usr/local/nvidia/lib64/libcuda.so.1: no such file; " +
		"/bad/libcuda.so.1: file too short; libcuda.so.1: cannot open shared object file: No such file or directory) — no NVIDIA driver on this machine?"
	if got := e.Error(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if !e.NotFound() {
		t.Fatal("NotFound false for a library never opened")
	}
	sym := &LoadError{Library: "/x/libcuda.so.1", Path: "/x/libcuda.so.1", Symbol: "cuMemAlloc_v2"}
	if got := sym.Error(); got != "cuda: /x/libcuda.so.1 lacks required symbol cuMemAlloc_v2" || sym.NotFound() {
		t.Fatalf("symbol error %q (NotFound %v)", got, sym.NotFound())
	}
	initErr := &Error{Call: "cuInit", Code: 100, Name: "CUDA_ERROR_NO_DEVICE"}
	ie := &LoadError{Library: "libcuda.so.1", Path: "/x/libcuda.so.1", Err: initErr}
	if !errors.Is(ie, initErr) || !strings.Contains(ie.Error(), "cuInit: CUDA_ERROR_NO_DEVICE (100)") {
		t.Fatalf("init error %q does not wrap cuInit's", ie)
	}
}

func TestOpenLibraryNotFound(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvLibs, dir)
	_, _, err := OpenLibrary("libringtrain-no-such.so.1")
	var le *LoadError
	if !errors.As(err, &le) || !le.NotFound() {
		t.Fatalf("err %v, want a not-found *LoadError", err)
	}
	if le.Tried[0].Path != filepath.Join(dir, "libringtrain-no-such.so.1") {
		t.Fatalf("first attempt %q, want the %s folder", le.Tried[0].Path, EnvLibs)
	}
	if last := le.Tried[len(le.Tried)-1].Path; last != "libringtrain-no-such.so.1" {
		t.Fatalf("last attempt %q, want the bare soname", last)
	}
}

func TestOpenLibraryFindsInEnvDir(t *testing.T) {
	libm := "/lib/x86_64-linux-gnu/libm.so.6"
	if !fileExists(libm) {
		t.Skip("no " + libm + " to stand in for a library")
	}
	dir := t.TempDir()
	mustSymlink(t, libm, filepath.Join(dir, "libstandin.so.1"))
	t.Setenv(EnvLibs, dir)
	h, path, err := OpenLibrary("libstandin.so.1")
	if err != nil || h == 0 || path != filepath.Join(dir, "libstandin.so.1") {
		t.Fatalf("OpenLibrary = %d %q %v", h, path, err)
	}
	if _, err := purego.Dlsym(h, "cos"); err != nil {
		t.Fatalf("opened library lacks cos: %v", err)
	}
}
