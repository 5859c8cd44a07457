package models

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/ringtrain/ringtrain/internal/directconv"
	"github.com/ringtrain/ringtrain/internal/sgemm"
)

// Conv2D is a 2-D convolution over per-sample [C, H, W] inputs (NCHW
// batches) with square kernels, equal stride and zero padding on both axes:
// output [Out, (H+2·pad−k)/stride+1, (W+2·pad−k)/stride+1]. Weight
// ("<name>.weight") is [Out, C, k, k], bias ("<name>.bias") is [Out].
//
// Thin stride-1 convolutions (output rows up to 32 wide, at most 1024 taps:
// LeNet's) run on the direct row kernels of internal/directconv in all
// three directions (conv_direct.go; dx where pad ≤ k−1 and the input is at
// most 32 wide). The others compute with im2col and the GEMM of
// internal/sgemm, one GEMM per direction for the whole batch (see
// conv_kernels.go): im2col writes every image's columns side by side into
// col[C·k·k × N·OH·OW], the forward
// is yt = W[Out × C·k·k] · col, copied into the NCHW output with the bias;
// the backward reuses the col of the latest training Forward when it is
// that Forward's (the layer keeps one; otherwise it recomputes col from
// the saved input), gathers dy into the same
// [Out × N·OH·OW] layout and multiplies dW += dyt·colᵀ and dcol = Wᵀ·dyt,
// then scatters dcol back (col2im). The buffers are reused per layer:
// steady-state training allocates only the returned tensors.
type Conv2D struct {
	name                    string
	in, out, k, stride, pad int
	init                    Init
	weight, bias            *Param
	scratch                 scratchPool

	// cache is the scratch of the latest training Forward, whose col the
	// matching Backward uses instead of running im2col again (cacheGen
	// names that Forward; gen counts them). A Backward of any other Forward
	// (pipeline micro-batches, a Backward run twice) recomputes col.
	cacheMu       sync.Mutex
	cache         *convScratch
	cacheGen, gen uint64
}

// convSaved is a Conv2D's saved input and the number of its Forward.
type convSaved struct {
	owner *Conv2D
	x     Tensor
	gen   uint64
}

func (s *convSaved) Bytes() int64 { return int64(len(s.x.Data)) * 4 }

func (c *Conv2D) saved(saved Saved) (*convSaved, error) {
	s, ok := saved.(*convSaved)
	if !ok || s == nil || s.owner != c {
		return nil, fmt.Errorf("layer %q: %w", c.name, ErrSaved)
	}
	return s, nil
}

// takeCache returns the cached scratch if it holds the col of Forward gen
// (and removes it from the cache), else nil.
func (c *Conv2D) takeCache(gen uint64) *convScratch {
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	if c.cache == nil || c.cacheGen != gen {
		return nil
	}
	sc := c.cache
	c.cache = nil
	return sc
}

var _ ParamGradLayer = (*Conv2D)(nil)

// NewConv2D returns a Conv2D layer with zero parameters (call InitParams or
// Sequential.Init).
func NewConv2D(name string, inChannels, outChannels, kernel, stride, pad int, init Init) (*Conv2D, error) {
	if inChannels <= 0 || outChannels <= 0 || kernel <= 0 || stride <= 0 || pad < 0 {
		return nil, fmt.Errorf("conv2d %q: need positive channels, kernel and stride and non-negative padding, got in=%d out=%d k=%d stride=%d pad=%d",
			name, inChannels, outChannels, kernel, stride, pad)
	}
	c := &Conv2D{name: name, in: inChannels, out: outChannels, k: kernel, stride: stride, pad: pad, init: init,
		weight: newParam(name+".weight", outChannels, inChannels, kernel, kernel),
		bias:   newParam(name+".bias", outChannels)}
	return c, nil
}

// Name implements Layer.
func (c *Conv2D) Name() string { return c.name }

// Params implements Layer: weight then bias.
func (c *Conv2D) Params() []*Param { return []*Param{c.weight, c.bias} }

// ConvGeometry is a Conv2D's channels, square kernel size, stride and zero
// padding (equal on both spatial axes).
type ConvGeometry struct{ In, Out, Kernel, Stride, Pad int }

// Geometry returns the convolution's channels, kernel, stride and padding.
func (c *Conv2D) Geometry() ConvGeometry {
	return ConvGeometry{In: c.in, Out: c.out, Kernel: c.k, Stride: c.stride, Pad: c.pad}
}

// OutShape implements Layer.
func (c *Conv2D) OutShape(in []int) ([]int, error) {
	if len(in) != 3 || in[0] != c.in {
		return nil, &ShapeError{Layer: c.name, What: "input", Got: in, Want: fmt.Sprintf("[%d H W]", c.in)}
	}
	h := (in[1]+2*c.pad-c.k)/c.stride + 1
	w := (in[2]+2*c.pad-c.k)/c.stride + 1
	if in[1]+2*c.pad < c.k || in[2]+2*c.pad < c.k || h <= 0 || w <= 0 {
		return nil, &ShapeError{Layer: c.name, What: "input", Got: in, Want: fmt.Sprintf("spatial size ≥ %d with padding %d", c.k, c.pad)}
	}
	return []int{c.out, h, w}, nil
}

// Cost implements Layer.
func (c *Conv2D) Cost(in []int) LayerCost {
	out, err := c.OutShape(in)
	params := int64(c.out*c.in*c.k*c.k + c.out)
	if err != nil {
		return LayerCost{Params: params}
	}
	pos := int64(out[1] * out[2])
	return LayerCost{Params: params, FLOPs: pos * int64(c.out) * int64(2*c.in*c.k*c.k+1), Out: pos * int64(c.out)}
}

// InitParams implements Initializer (fan-in C·k·k, fan-out Out·k·k).
func (c *Conv2D) InitParams(rng *rand.Rand) {
	uniformInit(c.weight.Value, c.init, c.in*c.k*c.k, c.out*c.k*c.k, rng)
	clear(c.bias.Value)
}

// Forward implements Layer.
func (c *Conv2D) Forward(x Tensor, train bool) (Tensor, Saved, error) {
	if err := checkInput(c, x); err != nil {
		return Tensor{}, nil, err
	}
	g := c.geom(x.Shape)
	n := x.Shape[0]
	ld := n * g.ohw // columns of the batch-wide col and of yt
	y := NewTensor(n, c.out, g.oh, g.ow)
	sc := c.scratch.get(g.ckk*ld, c.out*ld)
	if c.direct(&g) {
		c.forwardDirect(&g, y.Data, x.Data, n, sc)
		sc.colValid = false
	} else {
		for i := range n {
			g.im2col(sc.col[i*g.ohw:], ld, x.Data[i*g.inSize:][:g.inSize])
		}
		sc.colValid = true
		// yt[Out × N·OH·OW] = W[Out × C·k·k] · col[C·k·k × N·OH·OW]: one GEMM for
		// the batch (per-image GEMMs are thin: 6×784 or 16×100 outputs, and the
		// 100-wide one wastes most of its last column strip).
		sgemm.Gemm(false, false, c.out, ld, g.ckk, 1, c.weight.Value, g.ckk, sc.col, ld, 0, sc.yt, ld)
		for i := range n {
			yn := y.Data[i*g.outSize:][:g.outSize]
			for o, b := range c.bias.Value {
				addBias(yn[o*g.ohw:][:g.ohw], sc.yt[o*ld+i*g.ohw:][:g.ohw], b)
			}
		}
	}
	if !train {
		c.scratch.put(sc)
		return y, &convSaved{owner: c, x: x}, nil
	}
	c.cacheMu.Lock()
	c.gen++
	gen, old := c.gen, c.cache
	c.cache, c.cacheGen = sc, gen
	c.cacheMu.Unlock()
	if old != nil {
		c.scratch.put(old)
	}
	return y, &convSaved{owner: c, x: x, gen: gen}, nil
}

// Backward implements Layer.
func (c *Conv2D) Backward(saved Saved, dy Tensor) (Tensor, error) {
	s, err := c.saved(saved)
	if err != nil {
		return Tensor{}, err
	}
	return c.backward(s, dy, true)
}

// BackwardParams implements ParamGradLayer.
func (c *Conv2D) BackwardParams(saved Saved, dy Tensor) error {
	s, err := c.saved(saved)
	if err != nil {
		return err
	}
	_, err = c.backward(s, dy, false)
	return err
}

func (c *Conv2D) backward(s *convSaved, dy Tensor, wantDX bool) (Tensor, error) {
	x := s.x
	g := c.geom(x.Shape)
	if err := checkGrad(c, dy, []int{x.Shape[0], c.out, g.oh, g.ow}); err != nil {
		return Tensor{}, err
	}
	n := x.Shape[0]
	ld := n * g.ohw
	var dx Tensor
	if wantDX {
		dx = NewTensor(x.Shape...)
	}
	var sc *convScratch
	if s.gen != 0 {
		sc = c.takeCache(s.gen)
	}
	haveCol := sc != nil && sc.colValid
	if sc == nil {
		sc = c.scratch.get(g.ckk*ld, c.out*ld)
	}
	defer c.scratch.put(sc)
	if c.direct(&g) && (!wantDX || g.directDX()) {
		var dxd []float32
		if wantDX {
			dxd = dx.Data
		}
		c.backwardDirect(&g, dxd, dy.Data, x.Data, n, sc)
		return dx, nil
	}
	// dyt[Out × N·OH·OW]: dy with the batch moved inside each channel's row,
	// the layout of the forward's yt; db is its row sums.
	db := c.bias.Grad
	for i := range n {
		dyn := dy.Data[i*g.outSize:][:g.outSize]
		for o := range db {
			src := dyn[o*g.ohw:][:g.ohw]
			copy(sc.yt[o*ld+i*g.ohw:][:g.ohw], src)
		}
	}
	for o := range db {
		db[o] += sum32(sc.yt[o*ld:][:ld])
	}
	if !haveCol {
		for i := range n {
			g.im2col(sc.col[i*g.ohw:], ld, x.Data[i*g.inSize:][:g.inSize])
		}
	}
	// dW[Out × C·k·k] += dyt[Out × N·OH·OW] · col[C·k·k × N·OH·OW]ᵀ
	sgemm.Gemm(false, true, c.out, g.ckk, ld, 1, sc.yt, ld, sc.col, ld, 1, c.weight.Grad, g.ckk)
	if wantDX {
		// dcol[C·k·k × N·OH·OW] = Wᵀ · dyt (into col, no longer needed),
		// scattered back into dx image by image.
		sgemm.Gemm(true, false, g.ckk, ld, c.out, 1, c.weight.Value, g.ckk, sc.yt, ld, 0, sc.col, ld)
		for i := range n {
			g.col2im(dx.Data[i*g.inSize:][:g.inSize], sc.col[i*g.ohw:], ld)
		}
	}
	return dx, nil
}

// geom is the per-image geometry for a batch input shape [N C H W] (already
// validated by OutShape).
func (c *Conv2D) geom(xShape []int) convGeom {
	h, w := xShape[2], xShape[3]
	g := convGeom{c: c.in, h: h, w: w, k: c.k, s: c.stride, pad: c.pad,
		oh: (h+2*c.pad-c.k)/c.stride + 1, ow: (w+2*c.pad-c.k)/c.stride + 1}
	g.ohw = g.oh * g.ow
	g.ckk = c.in * c.k * c.k
	g.inSize = c.in * h * w
	g.outSize = c.out * g.ohw
	return g
}

// MaxPool2D takes the maximum over k×k windows moved by stride, per channel,
// without padding: [C, H, W] -> [C, (H−k)/stride+1, (W−k)/stride+1]. The
// gradient flows to the first maximum of each window in row-major order (as
// gorgonia's MaxPool2D), added up where windows overlap. Both directions are
// loops over the planes (conv_kernels.go; 2×2 windows with stride 2 in
// internal/vecmath, AVX-512 where the CPU has it); the backward finds each
// window's maximum again in the saved input instead of keeping an argmax.
type MaxPool2D struct {
	name      string
	k, stride int
}

var _ Layer = (*MaxPool2D)(nil)

// NewMaxPool2D returns a max-pooling layer.
func NewMaxPool2D(name string, kernel, stride int) (*MaxPool2D, error) {
	if kernel <= 0 || stride <= 0 {
		return nil, fmt.Errorf("maxpool2d %q: kernel and stride must be positive, got %d, %d", name, kernel, stride)
	}
	return &MaxPool2D{name: name, k: kernel, stride: stride}, nil
}

// Name implements Layer.
func (m *MaxPool2D) Name() string { return m.name }

// Params implements Layer (none).
func (m *MaxPool2D) Params() []*Param { return nil }

// Window returns the pooling window's size and its stride (square, no padding).
func (m *MaxPool2D) Window() (kernel, stride int) { return m.k, m.stride }

// OutShape implements Layer.
func (m *MaxPool2D) OutShape(in []int) ([]int, error) {
	if len(in) != 3 || in[1] < m.k || in[2] < m.k {
		return nil, &ShapeError{Layer: m.name, What: "input", Got: in, Want: fmt.Sprintf("[C H W] with H, W ≥ %d", m.k)}
	}
	return []int{in[0], (in[1]-m.k)/m.stride + 1, (in[2]-m.k)/m.stride + 1}, nil
}

// Cost implements Layer.
func (m *MaxPool2D) Cost(in []int) LayerCost {
	out, err := m.OutShape(in)
	if err != nil {
		return LayerCost{}
	}
	n := int64(numElems(out))
	return LayerCost{FLOPs: n * int64(m.k*m.k), Out: n}
}

// Forward implements Layer.
func (m *MaxPool2D) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(m, x); err != nil {
		return Tensor{}, nil, err
	}
	g := m.geom(x.Shape)
	y := NewTensor(x.Shape[0], x.Shape[1], g.oh, g.ow)
	g.forward(y.Data, x.Data, x.Shape[0]*x.Shape[1])
	return y, &tensorSaved{owner: m, x: x}, nil
}

// Backward implements Layer.
func (m *MaxPool2D) Backward(saved Saved, dy Tensor) (Tensor, error) {
	x, err := savedTensor(m, saved)
	if err != nil {
		return Tensor{}, err
	}
	g := m.geom(x.Shape)
	if err := checkGrad(m, dy, []int{x.Shape[0], x.Shape[1], g.oh, g.ow}); err != nil {
		return Tensor{}, err
	}
	dx := NewTensor(x.Shape...)
	g.backward(dx.Data, dy.Data, x.Data, x.Shape[0]*x.Shape[1])
	return dx, nil
}

func (m *MaxPool2D) geom(xShape []int) poolGeom {
	h, w := xShape[2], xShape[3]
	return poolGeom{h: h, w: w, k: m.k, s: m.stride, oh: (h-m.k)/m.stride + 1, ow: (w-m.k)/m.stride + 1}
}

// scratchPool is a layer's free list of column buffers: one per call in
// flight, kept for the next call (never emptied by the garbage collector).
type scratchPool struct {
	mu   sync.Mutex
	free []*convScratch
}

// convScratch is the batch-wide column matrix and the [Out × N·OH·OW]
// output (or output gradient) of one call.
//
// The direct kernels (conv_direct.go) leave col unwritten (colValid
// false) and use wp, bias and xpad: the packed weights, the bias by
// groups of eight channels, one zero-bordered image.
type convScratch struct {
	col, yt  []float32
	colValid bool // col holds the im2col of the Forward that filled this scratch
	wp, xpad []float32
	bias     [][8]float32
	rows     directconv.Rows
	// the direct backward's: weight-gradient partial sums, flipped
	// weights, one padded image of dy
	acc, wt, dypad []float32
	grad           directconv.GradRows
}

// get returns a scratch whose col holds at least n values and yt m.
func (p *scratchPool) get(n, m int) *convScratch {
	p.mu.Lock()
	var sc *convScratch
	if k := len(p.free); k > 0 {
		sc = p.free[k-1]
		p.free = p.free[:k-1]
	}
	p.mu.Unlock()
	if sc == nil {
		sc = &convScratch{}
	}
	if len(sc.col) < n {
		sc.col = make([]float32, n)
	}
	if len(sc.yt) < m {
		sc.yt = make([]float32, m)
	}
	return sc
}

func (p *scratchPool) put(sc *convScratch) {
	p.mu.Lock()
	p.free = append(p.free, sc)
	p.mu.Unlock()
}
