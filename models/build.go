package models

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ImageShape returns the per-sample input shape of every ready model (see
// Build): one grey 28×28 image, [1 28 28], as package data produces. Each call
// returns a fresh slice. Generic code (ddp, pipeline) takes the input shape
// from its caller instead.
func ImageShape() []int { return []int{1, 28, 28} }

// NumClasses is the number of output classes of every ready model.
const NumClasses = 10

// ErrUnknownModel is matched (errors.Is) by Build's error for an unknown name.
var ErrUnknownModel = errors.New("unknown model")

// builders maps model names to constructors of their (uninitialised) layers.
var builders = map[string]func() ([]Layer, error){
	"mlp":      func() ([]Layer, error) { return mlpLayers(512, 512) },
	"mlp-wide": func() ([]Layer, error) { return mlpLayers(4096, 4096) },
	"cnn":      cnnLayers,
}

// ModelNames lists the names Build accepts, sorted.
func ModelNames() []string {
	names := make([]string, 0, len(builders))
	for n := range builders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Build returns a ready model, initialised from seed (same seed, bit-identical
// parameters). Every model takes ImageShape() inputs ([1 28 28] images) and
// returns NumClasses (10) logits:
//
//	mlp       flatten → 784-512 → relu → 512-512 → relu → 512-10          (669,706 params)
//	mlp-wide  flatten → 784-4096 → relu → 4096-4096 → relu → 4096-10   (20,037,642 params)
//	cnn       LeNet-5: conv5×5 6 (pad 2) → relu → maxpool2 → conv5×5 16 → relu → maxpool2 →
//	          flatten → 400-120 → relu → 120-84 → relu → 84-10                (61,706 params)
func Build(name string, seed int64) (*Sequential, error) {
	b, ok := builders[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (valid: %s)", ErrUnknownModel, name, strings.Join(ModelNames(), ", "))
	}
	layers, err := b()
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", name, err)
	}
	m, err := NewSequential(layers...)
	if err != nil {
		return nil, fmt.Errorf("building %s: %w", name, err)
	}
	m.Init(seed)
	return m, nil
}

// mlpLayers is flatten → 784-h1 → relu → h1-h2 → relu → h2-10.
func mlpLayers(h1, h2 int) ([]Layer, error) {
	fc1, err := NewLinear("fc1", 784, h1, InitHe)
	if err != nil {
		return nil, err
	}
	fc2, err := NewLinear("fc2", h1, h2, InitHe)
	if err != nil {
		return nil, err
	}
	fc3, err := NewLinear("fc3", h2, NumClasses, InitGlorot)
	if err != nil {
		return nil, err
	}
	return []Layer{NewFlatten("flatten"), fc1, NewReLU("relu1"), fc2, NewReLU("relu2"), fc3}, nil
}

// cnnLayers is LeNet-5 on 28×28: the first convolution pads by 2 so that
// the classic 5×5×16 feature map (400 features) reaches the dense layers.
func cnnLayers() ([]Layer, error) {
	conv1, err := NewConv2D("conv1", 1, 6, 5, 1, 2, InitHe)
	if err != nil {
		return nil, err
	}
	pool1, err := NewMaxPool2D("pool1", 2, 2)
	if err != nil {
		return nil, err
	}
	conv2, err := NewConv2D("conv2", 6, 16, 5, 1, 0, InitHe)
	if err != nil {
		return nil, err
	}
	pool2, err := NewMaxPool2D("pool2", 2, 2)
	if err != nil {
		return nil, err
	}
	fc1, err := NewLinear("fc1", 16*5*5, 120, InitHe)
	if err != nil {
		return nil, err
	}
	fc2, err := NewLinear("fc2", 120, 84, InitHe)
	if err != nil {
		return nil, err
	}
	fc3, err := NewLinear("fc3", 84, NumClasses, InitGlorot)
	if err != nil {
		return nil, err
	}
	return []Layer{conv1, NewReLU("relu1"), pool1, conv2, NewReLU("relu2"), pool2,
		NewFlatten("flatten"), fc1, NewReLU("relu3"), fc2, NewReLU("relu4"), fc3}, nil
}
