package models

import (
	"math"
	"math/rand/v2"
)

// Init selects how a layer draws its initial weights. Biases start at zero.
type Init int

const (
	// InitHe draws U(−√(6/fanIn), √(6/fanIn)) (variance 2/fanIn): keeps the
	// activation scale through ReLU layers (He et al. 2015). The zero value.
	InitHe Init = iota
	// InitGlorot draws U(−√(6/(fanIn+fanOut)), +…) (variance 2/(fanIn+fanOut)):
	// for the output layer, which no ReLU follows (Glorot & Bengio 2010).
	InitGlorot
)

func (i Init) String() string {
	switch i {
	case InitHe:
		return "he"
	case InitGlorot:
		return "glorot"
	}
	return "unknown"
}

// Initializer is implemented by layers with parameters to draw.
type Initializer interface {
	// InitParams overwrites the layer's parameters with fresh values drawn
	// from rng. The same rng state gives bit-identical parameters.
	InitParams(rng *rand.Rand)
}

// uniformInit fills w with U(−limit, limit) for the scheme.
func uniformInit(w []float32, scheme Init, fanIn, fanOut int, rng *rand.Rand) {
	var limit float64
	switch scheme {
	case InitGlorot:
		limit = math.Sqrt(6 / float64(fanIn+fanOut))
	default:
		limit = math.Sqrt(6 / float64(fanIn))
	}
	for i := range w {
		w[i] = float32((2*rng.Float64() - 1) * limit)
	}
}

// layerRNG is the generator for layer i of a model seeded with seed: every
// layer gets its own stream, so inserting a parameterless layer or re-seeding
// one layer does not shift the others.
func layerRNG(seed int64, i int) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15^uint64(i)))
}
