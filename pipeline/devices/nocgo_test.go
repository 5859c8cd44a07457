//go:build !cgo

package devices

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/gpu/cuda"
)

// Without cgo, Discover loads NVML through purego. On a machine without
// the NVIDIA driver it falls back to the CPU worded as the cgo build's
// ERROR_LIBRARY_NOT_FOUND case; with a driver it lists the GPUs.
func TestDiscoverWithoutCgo(t *testing.T) {
	inv, err := Discover(context.Background(), Options{LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, lerr := cuda.OpenLibrary(nvmlSoname); lerr == nil {
		if len(inv.GPUs) == 0 && !errors.Is(inv.Err, ErrNoGPU) && !errors.Is(inv.Err, ErrNoDriver) {
			t.Fatalf("NVML present but no GPUs: %+v", inv)
		}
		t.Skipf("NVML present: %d GPU(s), reason %q", len(inv.GPUs), inv.Reason)
	}
	if len(inv.GPUs) != 0 || !errors.Is(inv.Err, ErrNoDriver) || errors.Is(inv.Err, ErrNoCgo) {
		t.Fatalf("got %+v", inv)
	}
	if want := "NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded (ERROR_LIBRARY_NOT_FOUND)"; inv.Reason != want {
		t.Fatalf("reason %q, want %q", inv.Reason, want)
	}
	var b strings.Builder
	inv.WriteTable(&b)
	if !strings.HasPrefix(b.String(), "no GPUs: NVIDIA driver not found") {
		t.Fatalf("table:\n%s", b.String())
	}
}
