package kernels

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/gpu/kernels/internal/nvrtc"
)

// loadNVRTC returns libnvrtc or skips the test: PTX generation needs it,
// the rest of the package does not.
func loadNVRTC(t *testing.T) *nvrtc.Lib {
	t.Helper()
	lib, err := nvrtc.Load()
	if err != nil {
		t.Skipf("NVRTC not available, PTX not recompiled (install libnvrtc, e.g. Debian non-free libnvrtc11.2 + libnvrtc-builtins11.8, or set %s): %v", nvrtc.EnvPath, err)
	}
	return lib
}

func buildPTX(t *testing.T, lib *nvrtc.Lib) []byte {
	t.Helper()
	src, err := os.ReadFile("kernels.cu")
	if err != nil {
		t.Fatal(err)
	}
	file, log, err := lib.Build(src)
	if err != nil {
		var ce *nvrtc.CompileError
		if errors.As(err, &ce) {
			t.Fatalf("kernels.cu does not compile: %v\n%s", ce.Err, ce.Log)
		}
		t.Fatal(err)
	}
	if log != "" {
		t.Logf("NVRTC log:\n%s", log)
	}
	return file
}

// TestPTXUpToDate recompiles kernels.cu and requires the committed
// kernels.ptx to be byte for byte the result. Another NVRTC version
// legitimately produces other PTX: then the test skips, saying so.
func TestPTXUpToDate(t *testing.T) {
	lib := loadNVRTC(t)
	major, minor, err := lib.Version()
	if err != nil {
		t.Fatal(err)
	}
	fmaj, fmin, ok := nvrtc.ParseHeaderVersion(PTX)
	if !ok {
		t.Fatalf("kernels.ptx has no %q header line; regenerate it with go generate ./gpu/kernels", nvrtc.HeaderVersion(0, 0))
	}
	if fmaj != major || fmin != minor {
		t.Skipf("kernels.ptx was made by NVRTC %d.%d, this machine has %d.%d (%s): outputs differ across versions, not compared",
			fmaj, fmin, major, minor, lib.Path())
	}
	got := buildPTX(t, lib)
	if bytes.Equal(got, PTX) {
		return
	}
	gl, wl := strings.Split(string(got), "\n"), strings.Split(string(PTX), "\n")
	for i := 0; i < max(len(gl), len(wl)); i++ {
		var g, w string
		if i < len(gl) {
			g = gl[i]
		}
		if i < len(wl) {
			w = wl[i]
		}
		if g != w {
			t.Fatalf("kernels.ptx is stale: run go generate ./gpu/kernels and commit it.\nfirst difference at line %d:\ncompiled:  %q\ncommitted: %q", i+1, g, w)
		}
	}
	t.Fatal("kernels.ptx is stale (line endings?): run go generate ./gpu/kernels")
}

// TestPTXReproducible compiles twice in one process; with the comparison
// against the committed file this shows generation is a pure function of
// source, options and NVRTC version.
func TestPTXReproducible(t *testing.T) {
	lib := loadNVRTC(t)
	a, b := buildPTX(t, lib), buildPTX(t, lib)
	if !bytes.Equal(a, b) {
		t.Fatal("two compilations of kernels.cu differ")
	}
	if bytes.Contains(a, []byte("Build ID")) || bytes.Contains(a, []byte("/work/")) {
		t.Fatal("generated PTX carries build or path information")
	}
}

func TestPTXHeader(t *testing.T) {
	first, _, _ := strings.Cut(string(PTX), "\n")
	if !strings.HasPrefix(first, "// Code generated ") || !strings.HasSuffix(first, "DO NOT EDIT.") || !strings.Contains(first, "go generate ./gpu/kernels") {
		t.Fatalf("first line %q does not say the file is generated and how", first)
	}
}

var entryRE = regexp.MustCompile(`(?m)^\.visible \.entry ([A-Za-z_][A-Za-z0-9_]*)\(([^)]*)\)`)

// entries maps each .entry of the PTX to its parameter types (u64 for a
// pointer, u32 for an int, f32 for a float).
func entries(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, m := range entryRE.FindAllStringSubmatch(string(PTX), -1) {
		if _, dup := out[m[1]]; dup {
			t.Fatalf("entry %s twice", m[1])
		}
		var types []string
		for _, p := range strings.Split(m[2], ",") {
			if f := strings.Fields(p); len(f) == 3 && f[0] == ".param" {
				types = append(types, strings.TrimPrefix(f[1], "."))
			}
		}
		out[m[1]] = types
	}
	return out
}

func TestEntriesMatchNames(t *testing.T) {
	ents := entries(t)
	for _, n := range Names {
		if !strings.Contains(string(PTX), ".entry "+n+"(") {
			t.Errorf("kernel %s has no .entry in kernels.ptx", n)
		}
	}
	for n := range ents {
		if !slices.Contains(Names, n) {
			t.Errorf(".entry %s is not in Names", n)
		}
	}
	if len(ents) != len(Names) {
		t.Errorf("%d entries, %d names", len(ents), len(Names))
	}
	if c := slices.Clone(Names); len(slices.Compact(slices.Sorted(slices.Values(c)))) != len(Names) {
		t.Error("Names has duplicates")
	}
}

// TestEntrySignatures pins the parameter lists the gpu package launches
// with: p = pointer (.u64), i = int (.u32), f = float (.f32).
func TestEntrySignatures(t *testing.T) {
	want := map[string]string{
		"relu_fwd":      "ppi",
		"relu_bwd":      "pppi",
		"mul":           "pppi",
		"add_inplace":   "ppi",
		"add_bias_rows": "ppii",
		"col_sum":       "ppiii",
		"row_sum":       "ppiii",
		"conv_out":      "pppiii",
		"conv_grad_in":  "ppiii",
		"im2col":        "ppiiiiiiiii",
		"col2im":        "ppiiiiiiiii",
		"maxpool_fwd":   "pppiiiiiiii",
		"maxpool_bwd":   "pppiiiiiiii",
		"softmax_xent":  "ppppiif",
		"sgd_step":      "pppifffi",
		"adam_step":     "ppppifffffff",
		"f32_to_f16":    "ppif",
		"f16_to_f32":    "ppif",
	}
	code := map[string]byte{"u64": 'p', "u32": 'i', "f32": 'f'}
	ents := entries(t)
	for _, n := range Names {
		var sig []byte
		for _, ty := range ents[n] {
			c, ok := code[ty]
			if !ok {
				c = '?'
			}
			sig = append(sig, c)
		}
		if string(sig) != want[n] {
			t.Errorf("%s: parameters %q (%v), want %q", n, sig, ents[n], want[n])
		}
	}
}

// TestNoAtomics: determinism forbids atomics (and so their PTX).
func TestNoAtomics(t *testing.T) {
	// Instructions are tab-indented, optionally predicated: match the opcode.
	for _, op := range []string{"atom", "red", "fma.rn.f32", "ex2.approx", "rsqrt.approx", "div.approx", "div.full"} {
		re := regexp.MustCompile(`(?m)^\s*(@!?%p\d+\s+)?` + regexp.QuoteMeta(op) + `[.\s]`)
		if loc := re.FindIndex(PTX); loc != nil {
			t.Errorf("kernels.ptx contains %q: %q", op, PTX[loc[0]:loc[1]])
		}
	}
}

func TestPTXForLoad(t *testing.T) {
	b := PTXForLoad()
	if len(b) != len(PTX)+1 || b[len(b)-1] != 0 || bytes.IndexByte(b, 0) != len(PTX) {
		t.Fatalf("PTXForLoad: want PTX plus one trailing NUL, got %d bytes for %d", len(b), len(PTX))
	}
	if !bytes.HasSuffix(PTX, []byte("\n")) {
		t.Error("PTX does not end in a newline")
	}
}
