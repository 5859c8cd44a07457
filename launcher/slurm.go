package launcher

import (
	"fmt"
	"strconv"
	"strings"
)

// slurmSettings holds the defaults a Slurm job step provides; empty strings mean "not under
// Slurm" or "not set".
type slurmSettings struct {
	nnodes, nodeID, master string
}

// slurmDefaults reads SLURM_NNODES, SLURM_NODEID and the first host of SLURM_JOB_NODELIST
// (or SLURM_NODELIST). Malformed values are usage errors naming the variable, because silently
// ignoring them would start a job with the wrong shape.
func slurmDefaults(env LookupEnv) (slurmSettings, error) {
	var s slurmSettings
	get := func(k string) string {
		v, _ := env(k)
		return strings.TrimSpace(v)
	}
	for _, kv := range []struct {
		key string
		dst *string
	}{{"SLURM_NNODES", &s.nnodes}, {"SLURM_NODEID", &s.nodeID}} {
		v := get(kv.key)
		if v == "" {
			continue
		}
		if _, err := strconv.Atoi(v); err != nil {
			return s, usagef("environment %s=%q is not an integer", kv.key, v)
		}
		*kv.dst = v
	}
	for _, key := range []string{"SLURM_JOB_NODELIST", "SLURM_NODELIST"} {
		v := get(key)
		if v == "" {
			continue
		}
		host, err := FirstHost(v)
		if err != nil {
			return s, usagef("environment %s: %v", key, err)
		}
		s.master = host
		break
	}
	return s, nil
}

// maxHosts bounds ExpandHostlist so that a hostile or mistyped list such as "n[0-999999999]"
// cannot exhaust memory.
const maxHosts = 1 << 16

// FirstHost returns the first host of a Slurm host list such as "node[01-04,07],gpu3"
// (node01), without expanding the whole list.
func FirstHost(list string) (string, error) {
	items, err := splitHostlist(list)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, part := range items[0] {
		if part.ranges == nil {
			b.WriteString(part.text)
			continue
		}
		b.WriteString(part.ranges[0].format(part.ranges[0].lo))
	}
	return b.String(), nil
}

// ExpandHostlist expands a Slurm host list into host names, in order: "n[1-3],gpu[01,03]" is
// n1 n2 n3 gpu01 gpu03. Several bracket groups in one name multiply ("r[1-2]n[1-2]" is r1n1
// r1n2 r2n1 r2n2). Zero padding follows the lower bound's width, as Slurm does.
func ExpandHostlist(list string) ([]string, error) {
	items, err := splitHostlist(list)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, parts := range items {
		names := []string{""}
		for _, part := range parts {
			if part.ranges == nil {
				for i := range names {
					names[i] += part.text
				}
				continue
			}
			var next []string
			for _, prefix := range names {
				for _, r := range part.ranges {
					for n := r.lo; n <= r.hi; n++ {
						if len(out)+len(next) >= maxHosts {
							return nil, fmt.Errorf("host list %q expands to more than %d hosts", list, maxHosts)
						}
						next = append(next, prefix+r.format(n))
					}
				}
			}
			names = next
		}
		out = append(out, names...)
		if len(out) > maxHosts {
			return nil, fmt.Errorf("host list %q expands to more than %d hosts", list, maxHosts)
		}
	}
	return out, nil
}

// hostRange is one "lo-hi" (or single "n") inside brackets; width is the zero-padded width.
type hostRange struct {
	lo, hi uint64
	width  int
}

func (r hostRange) format(n uint64) string {
	return fmt.Sprintf("%0*d", r.width, n)
}

// hostPart is literal text or, when ranges is not nil, one bracket group.
type hostPart struct {
	text   string
	ranges []hostRange
}

// splitHostlist parses a host list into items (split at commas outside brackets), each a
// sequence of literal and bracket parts.
func splitHostlist(list string) ([][]hostPart, error) {
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, fmt.Errorf("empty host list")
	}
	var items [][]hostPart
	var cur []hostPart
	var lit strings.Builder
	flushLit := func() {
		if lit.Len() > 0 {
			cur = append(cur, hostPart{text: lit.String()})
			lit.Reset()
		}
	}
	endItem := func(pos int) error {
		flushLit()
		if len(cur) == 0 {
			return fmt.Errorf("host list %q has an empty name at byte %d", list, pos)
		}
		items = append(items, cur)
		cur = nil
		return nil
	}
	for i := 0; i < len(list); i++ {
		c := list[i]
		switch {
		case c == ',':
			if err := endItem(i); err != nil {
				return nil, err
			}
		case c == '[':
			end := strings.IndexByte(list[i:], ']')
			if end < 0 {
				return nil, fmt.Errorf("host list %q has an unclosed '[' at byte %d", list, i)
			}
			ranges, err := parseRanges(list[i+1 : i+end])
			if err != nil {
				return nil, fmt.Errorf("host list %q: %v", list, err)
			}
			flushLit()
			cur = append(cur, hostPart{ranges: ranges})
			i += end
		case c == ']':
			return nil, fmt.Errorf("host list %q has an unmatched ']' at byte %d", list, i)
		case c <= ' ' || c == 0x7f:
			return nil, fmt.Errorf("host list %q has a space or control character at byte %d", list, i)
		default:
			lit.WriteByte(c)
		}
	}
	if err := endItem(len(list)); err != nil {
		return nil, err
	}
	return items, nil
}

// parseRanges parses the inside of brackets: "01-04,07".
func parseRanges(s string) ([]hostRange, error) {
	if s == "" {
		return nil, fmt.Errorf("empty brackets")
	}
	var out []hostRange
	for _, f := range strings.Split(s, ",") {
		loS, hiS, isRange := strings.Cut(f, "-")
		if !isRange {
			hiS = loS
		}
		lo, err1 := parseHostNum(loS)
		hi, err2 := parseHostNum(hiS)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("bad range %q in brackets", f)
		}
		if hi < lo {
			return nil, fmt.Errorf("range %q runs backwards", f)
		}
		out = append(out, hostRange{lo: lo, hi: hi, width: len(loS)})
	}
	return out, nil
}

func parseHostNum(s string) (uint64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("bad number")
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number")
		}
	}
	return strconv.ParseUint(s, 10, 64)
}
