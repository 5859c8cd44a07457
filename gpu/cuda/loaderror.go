package cuda

import (
	"errors"
	"strings"
)

// errNoSuchFile records a search directory without the wanted file: shorter
// in reports than dlerror's "cannot open shared object file: ...".
var errNoSuchFile = errors.New("no such file")

// Attempt is one path tried while searching for a library, and why it
// failed (Err nil: it was the one loaded).
type Attempt struct {
	Path string
	Err  error
}

// LoadError says why Load (or OpenLibrary) failed: the library was not
// found anywhere (Path empty; Tried lists every path tried), it lacks a
// required symbol (Symbol), or it was opened but did not initialise (Err,
// e.g. cuInit's *Error where the driver sees no device).
type LoadError struct {
	Library string    // what was wanted, e.g. "libcuda.so.1" or "libcublas.so.13/.12/.11"
	Tried   []Attempt // every path tried, in order
	Path    string    // the file opened, when the failure came after opening it
	Symbol  string    // a required symbol missing from Path
	Err     error     // the failure after opening, if any
	Hint    string    // what the user can do, without a leading dash
}

// NotFound reports whether the library itself was not found (as opposed to
// found but unusable).
func (e *LoadError) NotFound() bool { return e.Path == "" }

func (e *LoadError) Unwrap() error { return e.Err }

func (e *LoadError) Error() string {
	var b strings.Builder
	b.WriteString("cuda: ")
	switch {
	case e.Symbol != "":
		b.WriteString(e.Path + " lacks required symbol " + e.Symbol)
	case e.Err != nil:
		b.WriteString(e.Path + ": " + e.Err.Error())
	default:
		b.WriteString(e.Library + " not found (tried: " + formatAttempts(e.Tried) + ")")
	}
	if e.Hint != "" {
		b.WriteString(" — " + e.Hint)
	}
	return b.String()
}

// formatAttempts lists attempts compactly: consecutive paths that failed
// for the same reason share it ("a, b: no such file; c: <dlerror>"), and a
// dlerror that repeats the path does not repeat it here.
func formatAttempts(tried []Attempt) string {
	if len(tried) == 0 {
		return "nothing"
	}
	var groups []string
	var paths []string
	reason := func(a Attempt) string {
		if a.Err == nil {
			return "loaded"
		}
		return strings.TrimPrefix(a.Err.Error(), a.Path+": ")
	}
	for i, a := range tried {
		paths = append(paths, a.Path)
		if i+1 < len(tried) && reason(tried[i+1]) == reason(a) {
			continue
		}
		groups = append(groups, strings.Join(paths, ", ")+": "+reason(a))
		paths = paths[:0]
	}
	return strings.Join(groups, "; ")
}
