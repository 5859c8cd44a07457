package devices

import (
	"errors"
	"strings"
	"testing"
)

// FuzzResolveVisible feeds arbitrary CUDA_VISIBLE_DEVICES values: the result
// must name each GPU at most once, only real ones, and an error must point at
// the entry right after the ones kept.
func FuzzResolveVisible(f *testing.F) {
	for _, s := range []string{"", "0", "1,0", "-1", "none", "0,,1", "GPU-8d5f", "gpu-0c3e,3", "MIG-x", "7", "0,0", " 2 ,GPU-fe21"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		sel, err := ResolveVisible(value, fourUUIDs)
		if sel == nil {
			t.Fatal("nil selection")
		}
		seen := map[int]bool{}
		for _, i := range sel {
			if i < 0 || i >= len(fourUUIDs) || seen[i] {
				t.Fatalf("%q: bad selection %v", value, sel)
			}
			seen[i] = true
		}
		var ve *VisibleDevicesError
		if err != nil {
			if !errors.As(err, &ve) || ve.Pos != len(sel) || ve.Value != value {
				t.Fatalf("%q: selection %v, error %#v", value, sel, err)
			}
			if entries := strings.Split(value, ","); ve.Pos >= len(entries) || strings.TrimSpace(entries[ve.Pos]) != ve.Entry {
				t.Fatalf("%q: error names entry %d %q", value, ve.Pos, ve.Entry)
			}
		}
	})
}
