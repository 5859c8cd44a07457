package cuda

import (
	"errors"
	"testing"
)

// fakeSyms makes dlsym find only the given names (at dummy addresses:
// nothing is called).
func fakeSyms(t *testing.T, names ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	old := dlsym
	dlsym = func(_ uintptr, name string) (uintptr, error) {
		if have[name] {
			return 0x1000, nil
		}
		return 0, errors.New("undefined symbol: " + name)
	}
	t.Cleanup(func() { dlsym = old })
}

func allDriverSymbols() []string {
	var a driverAPI
	var names []string
	for _, s := range a.symbols() {
		names = append(names, s.names[len(s.names)-1]) // the fallback names only
	}
	return names
}

func TestBindFallbacksAndOptional(t *testing.T) {
	// Only the oldest names: the _v2-less fallbacks must be taken, and
	// the optional symbols may be absent.
	var names []string
	for _, n := range allDriverSymbols() {
		if n != "cuGetErrorName" && n != "cuModuleUnload" {
			names = append(names, n)
		}
	}
	fakeSyms(t, names...)
	var a driverAPI
	if err := bind(1, "/x/libcuda.so.1", a.symbols()); err != nil {
		t.Fatal(err)
	}
	if a.releaseName != "cuDevicePrimaryCtxRelease" || a.elapsedName != "cuEventElapsedTime" || a.eventDestroyName != "cuEventDestroy" {
		t.Fatalf("fallbacks bound: %q %q %q", a.releaseName, a.elapsedName, a.eventDestroyName)
	}
	if a.cuGetErrorName != nil || a.cuModuleUnload != nil {
		t.Fatal("missing optional symbols were bound")
	}
	if a.cuMemAlloc == nil || a.cuLaunchKernel == nil {
		t.Fatal("required symbols not bound")
	}
}

func TestBindPrefersV2(t *testing.T) {
	fakeSyms(t, append(allDriverSymbols(), "cuDevicePrimaryCtxRelease_v2", "cuEventElapsedTime_v2", "cuEventDestroy_v2")...)
	var a driverAPI
	if err := bind(1, "/x/libcuda.so.1", a.symbols()); err != nil {
		t.Fatal(err)
	}
	if a.releaseName != "cuDevicePrimaryCtxRelease_v2" || a.elapsedName != "cuEventElapsedTime_v2" || a.eventDestroyName != "cuEventDestroy_v2" {
		t.Fatalf("bound %q %q %q, want the _v2 names", a.releaseName, a.elapsedName, a.eventDestroyName)
	}
}

func TestBindMissingRequired(t *testing.T) {
	fakeSyms(t, "cublasCreate_v2", "cublasDestroy_v2", "cublasGetVersion_v2", "cublasSetMathMode", "cublasSgemm_v2")
	var b cublasAPI
	err := bind(1, "/x/libcublas.so.11", b.symbols())
	var le *LoadError
	if !errors.As(err, &le) || le.Symbol != "cublasSgemmStridedBatched" || le.Path != "/x/libcublas.so.11" {
		t.Fatalf("err %v, want a *LoadError naming cublasSgemmStridedBatched", err)
	}
}
