package data

import (
	"fmt"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/models"
)

// Synthetic is a deterministic random dataset for benchmarks: sample i is
// generated on demand from (Seed, i), so any size costs no memory and every
// rank sees the same sample i. Its label is uniform over Classes and its
// pixels are half a fixed per-class pattern, half noise, all in [0, 1], so
// a model can actually learn it (a sanity check that training works).
type Synthetic struct {
	n       int
	shape   []int
	classes int
	seed    uint64
	protos  [][]float32 // one pattern per class
}

var _ Source = (*Synthetic)(nil)

// NewSynthetic returns n samples of per-sample shape (e.g. [1 28 28]) with
// labels in [0, classes).
func NewSynthetic(n int, shape []int, classes int, seed int64) (*Synthetic, error) {
	if n <= 0 || classes <= 0 || len(shape) == 0 {
		return nil, fmt.Errorf("synthetic: need positive size and classes and a shape, got n=%d classes=%d shape=%v", n, classes, shape)
	}
	per := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("synthetic: bad sample shape %v", shape)
		}
		per *= d
	}
	s := &Synthetic{n: n, shape: append([]int(nil), shape...), classes: classes, seed: uint64(seed)}
	rng := rand.New(rand.NewPCG(s.seed, ^uint64(0)))
	for range classes {
		p := make([]float32, per)
		for i := range p {
			p[i] = rng.Float32()
		}
		s.protos = append(s.protos, p)
	}
	return s, nil
}

// Len implements Source.
func (s *Synthetic) Len() int { return s.n }

// SampleShape implements Source.
func (s *Synthetic) SampleShape() []int { return append([]int(nil), s.shape...) }

// NumClasses implements Source.
func (s *Synthetic) NumClasses() int { return s.classes }

// Gather implements Source.
func (s *Synthetic) Gather(idx []int) (models.Tensor, []int, error) {
	per := len(s.protos[0])
	x := models.NewTensor(append([]int{len(idx)}, s.shape...)...)
	labels := make([]int, len(idx))
	for j, i := range idx {
		if i < 0 || i >= s.n {
			return models.Tensor{}, nil, fmt.Errorf("synthetic: index %d out of range [0, %d)", i, s.n)
		}
		rng := rand.New(rand.NewPCG(s.seed, uint64(i)))
		l := rng.IntN(s.classes)
		labels[j] = l
		row, proto := x.Data[j*per:(j+1)*per], s.protos[l]
		// Noise: 8 pixels per 64-bit draw (8-bit levels, as real images),
		// which keeps a 64-image batch well under a millisecond.
		var bits uint64
		for k := range row {
			if k%8 == 0 {
				bits = rng.Uint64()
			}
			row[k] = 0.5*proto[k] + float32(bits&0xff)*(0.5/255)
			bits >>= 8
		}
	}
	return x, labels, nil
}
