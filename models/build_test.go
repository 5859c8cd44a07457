package models

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func cnnAvailable() bool {
	_, err := Build("cnn", 1)
	return err == nil
}

// linParams is the parameter count of a dense layer, computed independently.
func linParams(in, out int) int { return in*out + out }

func TestModelParamCounts(t *testing.T) {
	want := map[string]int{
		"mlp":      linParams(784, 512) + linParams(512, 512) + linParams(512, 10),
		"mlp-wide": linParams(784, 4096) + linParams(4096, 4096) + linParams(4096, 10),
		// conv: out·in·k·k + out
		"cnn": (6*1*25 + 6) + (16*6*25 + 16) + linParams(16*5*5, 120) + linParams(120, 84) + linParams(84, 10),
	}
	for name, n := range want {
		if name == "cnn" && !cnnAvailable() {
			continue
		}
		m, err := Build(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.NumParams(); got != n {
			t.Errorf("%s: %d params, want %d", name, got, n)
		}
		out, err := m.OutShape(ImageShape())
		if err != nil || !slices.Equal(out, []int{NumClasses}) {
			t.Errorf("%s: out shape %v (%v), want [10]", name, out, err)
		}
		costs, err := m.Costs(ImageShape())
		if err != nil {
			t.Fatal(err)
		}
		var cp int64
		for _, c := range costs {
			cp += c.Params
		}
		if cp != int64(n) {
			t.Errorf("%s: costs sum to %d params, want %d", name, cp, n)
		}
	}
}

func TestBuildSeededReproducible(t *testing.T) {
	for _, name := range []string{"mlp", "cnn"} {
		if name == "cnn" && !cnnAvailable() {
			continue
		}
		a, _ := Build(name, 42)
		b, _ := Build(name, 42)
		c, _ := Build(name, 43)
		same, differ := true, false
		for i, p := range a.Params() {
			if !slices.Equal(p.Value, b.Params()[i].Value) {
				same = false
			}
			if !slices.Equal(p.Value, c.Params()[i].Value) {
				differ = true
			}
		}
		if !same {
			t.Errorf("%s: same seed gave different parameters", name)
		}
		if !differ {
			t.Errorf("%s: different seeds gave the same parameters", name)
		}
		// He init: weights non-zero and within the bound, biases zero.
		for _, p := range a.Params() {
			if strings.HasSuffix(p.Name, ".bias") {
				for _, v := range p.Value {
					if v != 0 {
						t.Fatalf("%s: %s not zero-initialised", name, p.Name)
					}
				}
			}
		}
	}
}

func TestBuildUnknown(t *testing.T) {
	_, err := Build("resnet", 1)
	if !errors.Is(err, ErrUnknownModel) {
		t.Fatalf("got %v, want ErrUnknownModel", err)
	}
	for _, n := range []string{"mlp", "mlp-wide", "cnn"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not list %q", err, n)
		}
	}
}
