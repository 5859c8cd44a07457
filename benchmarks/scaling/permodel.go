package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// perModel is an integer setting with optional per-model overrides, written on the
// command line as "32" or "32,mlp-wide=8": the bare number applies to every model not
// named. Heavy models (mlp-wide's 20 M parameters) need smaller batches or fewer
// repetitions to fit a time budget that suits the small ones.
type perModel struct {
	def int
	by  map[string]int
}

// Set implements flag.Value.
func (p *perModel) Set(s string) error {
	p.by = nil
	defSet := false
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, val, named := strings.Cut(f, "=")
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if !named {
			n, err = strconv.Atoi(f)
		}
		if err != nil {
			return fmt.Errorf("%q is not a number or MODEL=number", f)
		}
		if !named {
			if defSet {
				return fmt.Errorf("two default values in %q", s)
			}
			p.def, defSet = n, true
			continue
		}
		name = strings.TrimSpace(name)
		if name == "" {
			return fmt.Errorf("%q names no model", f)
		}
		if p.by == nil {
			p.by = map[string]int{}
		}
		if _, dup := p.by[name]; dup {
			return fmt.Errorf("model %s given twice in %q", name, s)
		}
		p.by[name] = n
	}
	if !defSet && p.by == nil {
		return fmt.Errorf("empty value")
	}
	return nil
}

// String implements flag.Value.
func (p *perModel) String() string {
	if p == nil {
		return ""
	}
	parts := []string{strconv.Itoa(p.def)}
	var names []string
	for n := range p.by {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		parts = append(parts, n+"="+strconv.Itoa(p.by[n]))
	}
	return strings.Join(parts, ",")
}

// of returns the value for model.
func (p perModel) of(model string) int {
	if v, ok := p.by[model]; ok {
		return v
	}
	return p.def
}

// overrides returns the per-model values that differ from the default, for the models
// measured (nil when none).
func (p perModel) overrides(models []string) map[string]int {
	var m map[string]int
	for _, name := range models {
		if v, ok := p.by[name]; ok && v != p.def {
			if m == nil {
				m = map[string]int{}
			}
			m[name] = v
		}
	}
	return m
}
