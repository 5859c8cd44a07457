package devices

import (
	"fmt"
	"strconv"
	"strings"
)

// VisibleDevicesError says which CUDA_VISIBLE_DEVICES entry names no GPU.
// Like CUDA, ResolveVisible keeps the GPUs listed before it and ignores it
// and everything after.
type VisibleDevicesError struct {
	Value   string // the whole variable
	Pos     int    // 0-based position of the bad entry in the list
	Entry   string // the bad entry
	Problem string // what is wrong with it
}

func (e *VisibleDevicesError) Error() string {
	return fmt.Sprintf("CUDA_VISIBLE_DEVICES=%q: entry %d %q %s; it and the entries after it are ignored, as CUDA does",
		e.Value, e.Pos, e.Entry, e.Problem)
}

// ResolveVisible interprets a CUDA_VISIBLE_DEVICES value for a machine whose
// GPUs, in NVML index order, have the given UUIDs ("" where unknown), and
// returns the NVML indices of the visible GPUs in the order listed (see the
// package doc for the syntax). An empty or all-blank value, "-1" or "none"
// gives none, with no error. At the first entry that names no GPU it stops
// and returns the indices before it with a *VisibleDevicesError.
func ResolveVisible(value string, uuids []string) ([]int, error) {
	sel := []int{}
	if strings.TrimSpace(value) == "" {
		return sel, nil
	}
	taken := make(map[int]bool)
	for pos, raw := range strings.Split(value, ",") {
		e := strings.TrimSpace(raw)
		bad := func(format string, args ...any) ([]int, error) {
			return sel, &VisibleDevicesError{Value: value, Pos: pos, Entry: e, Problem: fmt.Sprintf(format, args...)}
		}
		var idx int
		switch {
		case e == "-1" || strings.EqualFold(e, "none"):
			// The usual ways to hide GPUs; CUDA sees an invalid entry and
			// stops, which is what the user asked for, so no warning.
			return sel, nil
		case e == "":
			return bad("is empty")
		case isDigits(e):
			n, err := strconv.Atoi(e)
			if err != nil || n >= len(uuids) {
				return bad("is not a GPU index (%s)", countGPUs(len(uuids)))
			}
			idx = n
		case hasPrefixFold(e, "MIG-"):
			return bad("is a MIG instance, which is not supported")
		default:
			want := strings.ToLower(e)
			if !strings.HasPrefix(want, "gpu-") {
				want = "gpu-" + want
			}
			var hits []int
			for i, u := range uuids {
				if u != "" && strings.HasPrefix(strings.ToLower(u), want) {
					hits = append(hits, i)
				}
			}
			switch len(hits) {
			case 0:
				return bad("matches no GPU's UUID (%s)", countGPUs(len(uuids)))
			case 1:
				idx = hits[0]
			default:
				return bad("is ambiguous: it starts the UUIDs of GPUs %s", joinInts(hits))
			}
		}
		if taken[idx] {
			return bad("names GPU %d a second time", idx)
		}
		taken[idx] = true
		sel = append(sel, idx)
	}
	return sel, nil
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func countGPUs(n int) string {
	switch n {
	case 0:
		return "this machine has no GPU"
	case 1:
		return "this machine has 1 GPU: 0"
	}
	return fmt.Sprintf("this machine has %d GPUs: 0..%d", n, n-1)
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}
