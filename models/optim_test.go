package models

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func testParams(rng *rand.Rand) []*Param {
	a := newParam("a.weight", 3, 4)
	b := newParam("a.bias", 4)
	for _, p := range []*Param{a, b} {
		for i := range p.Value {
			p.Value[i] = float32(rng.Float64() - 0.5)
		}
	}
	return []*Param{a, b}
}

func fillGrads(rng *rand.Rand, ps []*Param) {
	for _, p := range ps {
		for i := range p.Grad {
			p.Grad[i] = float32(rng.Float64() - 0.5)
		}
	}
}

// TestSGDAndAdamMatchReference runs each optimizer against a float64
// re-implementation of its documented formula.
func TestSGDAndAdamMatchReference(t *testing.T) {
	type ref func(w, g, s1, s2 []float64, t int)
	const lr, mu, wd = 0.1, 0.9, 0.01
	cases := []struct {
		name string
		mk   func([]*Param) (Optimizer, error)
		ref  ref
	}{
		{"sgd-momentum", func(p []*Param) (Optimizer, error) {
			return NewSGD(p, SGDConfig{LR: lr, Momentum: mu, WeightDecay: wd})
		}, func(w, g, v, _ []float64, _ int) {
			for j := range w {
				gj := g[j] + wd*w[j]
				v[j] = mu*v[j] + gj
				w[j] -= lr * v[j]
			}
		}},
		{"sgd-nesterov", func(p []*Param) (Optimizer, error) {
			return NewSGD(p, SGDConfig{LR: lr, Momentum: mu, Nesterov: true})
		}, func(w, g, v, _ []float64, _ int) {
			for j := range w {
				v[j] = mu*v[j] + g[j]
				w[j] -= lr * (g[j] + mu*v[j])
			}
		}},
		{"sgd-plain", func(p []*Param) (Optimizer, error) {
			return NewSGD(p, SGDConfig{LR: lr})
		}, func(w, g, _, _ []float64, _ int) {
			for j := range w {
				w[j] -= lr * g[j]
			}
		}},
		{"adam", func(p []*Param) (Optimizer, error) {
			return NewAdam(p, AdamConfig{LR: 0.01, WeightDecay: wd})
		}, func(w, g, m, v []float64, t int) {
			for j := range w {
				gj := g[j] + wd*w[j]
				m[j] = 0.9*m[j] + 0.1*gj
				v[j] = 0.999*v[j] + 0.001*gj*gj
				mh := m[j] / (1 - math.Pow(0.9, float64(t)))
				vh := v[j] / (1 - math.Pow(0.999, float64(t)))
				w[j] -= 0.01 * mh / (math.Sqrt(vh) + 1e-8)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			ps := testParams(rng)
			o, err := c.mk(ps)
			if err != nil {
				t.Fatal(err)
			}
			w := make([][]float64, len(ps))
			s1 := make([][]float64, len(ps))
			s2 := make([][]float64, len(ps))
			for i, p := range ps {
				for _, v := range p.Value {
					w[i] = append(w[i], float64(v))
				}
				s1[i] = make([]float64, len(p.Value))
				s2[i] = make([]float64, len(p.Value))
			}
			for step := 1; step <= 5; step++ {
				fillGrads(rng, ps)
				for i, p := range ps {
					g := make([]float64, len(p.Grad))
					for j, v := range p.Grad {
						g[j] = float64(v)
					}
					c.ref(w[i], g, s1[i], s2[i], step)
				}
				if err := o.Step(); err != nil {
					t.Fatal(err)
				}
			}
			if o.Steps() != 5 {
				t.Fatalf("steps %d, want 5", o.Steps())
			}
			for i, p := range ps {
				for j, v := range p.Value {
					if math.Abs(float64(v)-w[i][j]) > 1e-5 {
						t.Fatalf("%s[%d] = %g, reference %g", p.Name, j, v, w[i][j])
					}
				}
			}
		})
	}
}

// TestOptimizerStateRoundTrip: train, checkpoint (through the binary form),
// restore into fresh parameters and optimizer, continue both: bit-identical.
func TestOptimizerStateRoundTrip(t *testing.T) {
	for _, kind := range []string{"sgd", "adam"} {
		t.Run(kind, func(t *testing.T) {
			mk := func(ps []*Param) Optimizer {
				var o Optimizer
				var err error
				if kind == "sgd" {
					o, err = NewSGD(ps, SGDConfig{LR: 0.05, Momentum: 0.9})
				} else {
					o, err = NewAdam(ps, AdamConfig{})
				}
				if err != nil {
					t.Fatal(err)
				}
				return o
			}
			rng := rand.New(rand.NewPCG(3, 4))
			a := testParams(rng)
			oa := mk(a)
			for range 3 {
				fillGrads(rng, a)
				oa.Step()
			}
			sb, err := oa.State().MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			pb, _ := ParamSnapshot(a, 3).MarshalBinary()

			b := testParams(rand.New(rand.NewPCG(99, 99))) // different values
			ob := mk(b)
			var st, pst Snapshot
			if err := st.UnmarshalBinary(sb); err != nil {
				t.Fatal(err)
			}
			if err := pst.UnmarshalBinary(pb); err != nil {
				t.Fatal(err)
			}
			if err := pst.LoadParams(b); err != nil {
				t.Fatal(err)
			}
			if err := ob.LoadState(st); err != nil {
				t.Fatal(err)
			}
			if ob.Steps() != 3 {
				t.Fatalf("restored step %d, want 3", ob.Steps())
			}
			for range 3 {
				fillGrads(rng, a)
				for i := range a {
					copy(b[i].Grad, a[i].Grad)
				}
				oa.Step()
				ob.Step()
			}
			for i := range a {
				if !slices.Equal(a[i].Value, b[i].Value) {
					t.Fatalf("%s differs after resume", a[i].Name)
				}
			}
			// Wrong kind and wrong shapes are refused.
			other := mk([]*Param{newParam("x", 2)})
			if err := other.LoadState(st); !errors.Is(err, ErrSnapshot) {
				t.Fatalf("mismatched state accepted: %v", err)
			}
		})
	}
	sgd, _ := NewSGD(nil, SGDConfig{LR: 1})
	adam, _ := NewAdam(nil, AdamConfig{})
	if err := sgd.LoadState(adam.State()); !errors.Is(err, ErrSnapshot) {
		t.Fatalf("adam state loaded into sgd: %v", err)
	}
}

func TestOptimizerConfigErrors(t *testing.T) {
	for _, c := range []SGDConfig{{}, {LR: -1}, {LR: 1, Momentum: 1}, {LR: 1, Nesterov: true}, {LR: 1, WeightDecay: -1}} {
		if _, err := NewSGD(nil, c); err == nil {
			t.Errorf("NewSGD(%+v) accepted", c)
		}
	}
	for _, c := range []AdamConfig{{LR: -1}, {Beta1: 1}, {Beta2: 2}, {Eps: -1}} {
		if _, err := NewAdam(nil, c); err == nil {
			t.Errorf("NewAdam(%+v) accepted", c)
		}
	}
}

func TestSnapshotDecodeErrors(t *testing.T) {
	good, _ := ParamSnapshot([]*Param{newParam("w", 2, 3)}, 7).MarshalBinary()
	var s Snapshot
	if err := s.UnmarshalBinary(good); err != nil || s.Step != 7 || len(s.Slices) != 1 || !slices.Equal(s.Slices[0].Shape, []int{2, 3}) {
		t.Fatalf("round trip: %v %+v", err, s)
	}
	bad := slices.Clone(good)
	bad[len(bad)/2] ^= 1
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-5],
		"flipped":   bad,
		"magic":     append([]byte("XXXX"), good[4:]...),
		"empty":     nil,
	} {
		if err := s.UnmarshalBinary(b); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: got %v, want ErrSnapshot", name, err)
		}
	}
}

func FuzzSnapshotUnmarshal(f *testing.F) {
	good, _ := ParamSnapshot([]*Param{newParam("w", 2, 3), newParam("b", 3)}, 7).MarshalBinary()
	adam, _ := NewAdam([]*Param{newParam("w", 4)}, AdamConfig{})
	as, _ := adam.State().MarshalBinary()
	f.Add(good)
	f.Add(as)
	f.Add([]byte("RTSN"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Snapshot
		if err := s.UnmarshalBinary(b); err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("error not ErrSnapshot: %v", err)
			}
			return
		}
		// Whatever decodes must re-encode to the same bytes.
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded snapshot does not re-encode: %v", err)
		}
		if !slices.Equal(again, b) {
			t.Fatalf("re-encoding differs")
		}
	})
}
