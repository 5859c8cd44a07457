package models

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
	"gorgonia.org/vecf32"

	"github.com/ringtrain/ringtrain/internal/sgemm"
)

// Every float32 matrix product gorgonia computes (Linear's forward and both
// backward products, and whatever else a graph multiplies) goes through
// gonum's BLAS interface; sgemm.Implementation answers Sgemm with the packed,
// register-blocked GEMM of internal/sgemm (AVX2+FMA assembly where the CPU
// has it) and leaves every other routine to gonum. It runs on the calling
// goroutine: one thread per rank. RINGTRAIN_GEMM=gonum keeps gonum's own
// Sgemm (parallel over GOMAXPROCS), for side-by-side comparisons.
func init() {
	if os.Getenv("RINGTRAIN_GEMM") != "gonum" {
		G.Use(sgemm.Implementation{})
	}
}

// This file turns a layer's forward expression into compiled gorgonia programs.
//
// For every input batch shape a layer sees, one expression graph is built
// (input node x, parameter nodes, optional extra per-call inputs such as a
// dropout mask, output y) and gorgonia.Backpropagate adds the backward
// expression for an upstream-gradient input node dy. Three tape machines are
// compiled from sub-programs of that one graph with CompileFunction:
//
//	fwd:  (x, params, extras)     -> y
//	bwd:  (x, params, extras, dy) -> dx, dparams
//	bwdP: (x, params, extras, dy) -> dparams          (first layer: no dx)
//
// CompileFunction keeps only the nodes the outputs depend on, so a backward
// program does not recompute the forward unless the derivative needs it (a
// Linear backward is exactly two matmuls and a column sum). Programs are built
// once per batch shape and cached (a few shapes: full batch, micro-batch, the
// last short batch of an epoch), so steady-state training never rebuilds a graph.
//
// Values are bound with gorgonia.Let before every run, as fresh tensor headers
// over the caller's slices: parameter nodes read Param.Value itself (no copy),
// and an op that reshapes its input in place cannot leave a stale header
// behind for the next run. Outputs are copied out of the machine, because the
// machine's registers are recycled by the next run while the caller (and the
// next micro-batch's Saved) still holds the result.

// maxCachedShapes bounds the programs a layer keeps (the oldest is dropped).
const maxCachedShapes = 8

// graphDef describes a layer's forward computation for graph building.
type graphDef struct {
	layer  string
	params []*Param
	// extraShapes gives the shapes of extra per-call inputs for a batch input
	// shape (nil when there are none).
	extraShapes func(xShape []int) [][]int
	// build adds the forward expression to g and returns its output node.
	build func(g *G.ExprGraph, x *G.Node, params, extras []*G.Node) (*G.Node, error)
}

// program is one compiled forward/backward for one input batch shape.
type program struct {
	xShape, yShape []int
	x, y, dy       *G.Node
	params, extras []*G.Node
	dx             *G.Node
	dparams        []*G.Node
	fwd, bwd, bwdP G.VM
}

// graphCache builds and runs a layer's programs, serialised by mu.
type graphCache struct {
	def   graphDef
	mu    sync.Mutex
	progs map[string]*program
	order []string
}

func newGraphCache(def graphDef) *graphCache {
	return &graphCache{def: def, progs: make(map[string]*program)}
}

func shapeKey(s []int) string {
	var b strings.Builder
	for i, d := range s {
		if i > 0 {
			b.WriteByte('x')
		}
		b.WriteString(strconv.Itoa(d))
	}
	return b.String()
}

// get returns the program for an input batch shape, building it on first use.
// The caller holds c.mu.
func (c *graphCache) get(xShape []int) (*program, error) {
	key := shapeKey(xShape)
	if p, ok := c.progs[key]; ok {
		return p, nil
	}
	p, err := c.build(xShape)
	if err != nil {
		return nil, fmt.Errorf("layer %q: building gorgonia graph for input %v: %w", c.def.layer, xShape, err)
	}
	if len(c.order) >= maxCachedShapes {
		delete(c.progs, c.order[0])
		c.order = c.order[1:]
	}
	c.progs[key] = p
	c.order = append(c.order, key)
	return p, nil
}

func newInput(g *G.ExprGraph, name string, shape []int) *G.Node {
	return G.NewTensor(g, tensor.Float32, len(shape), G.WithShape(shape...), G.WithName(name))
}

func (c *graphCache) build(xShape []int) (p *program, err error) {
	// gorgonia reports some construction failures by panicking (Must-style
	// helpers deep inside ops); turn them into errors.
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("gorgonia panicked: %v", r)
		}
	}()
	g := G.NewGraph()
	p = &program{xShape: append([]int(nil), xShape...)}
	p.x = newInput(g, "x", xShape)
	for _, prm := range c.def.params {
		p.params = append(p.params, newInput(g, prm.Name, prm.Shape))
	}
	if c.def.extraShapes != nil {
		for i, s := range c.def.extraShapes(xShape) {
			p.extras = append(p.extras, newInput(g, "extra"+strconv.Itoa(i), s))
		}
	}
	if p.y, err = c.def.build(g, p.x, p.params, p.extras); err != nil {
		return nil, err
	}
	p.yShape = append([]int(nil), p.y.Shape()...)
	p.dy = newInput(g, "dy", p.yShape)
	wrt := append(G.Nodes{p.x}, p.params...)
	grads, err := G.Backpropagate(G.Nodes{p.y}, G.Nodes{p.dy}, wrt)
	if err != nil {
		return nil, fmt.Errorf("backpropagate: %w", err)
	}
	p.dx, p.dparams = grads[0], grads[1:]
	if p.fwd, err = compile(g, G.Nodes{p.y}); err != nil {
		return nil, fmt.Errorf("compiling forward: %w", err)
	}
	if p.bwd, err = compile(g, grads); err != nil {
		return nil, fmt.Errorf("compiling backward: %w", err)
	}
	if len(p.dparams) > 0 {
		if p.bwdP, err = compile(g, p.dparams); err != nil {
			return nil, fmt.Errorf("compiling parameter backward: %w", err)
		}
	}
	return p, nil
}

// compile builds a tape machine computing outputs from whatever inputs they
// depend on.
func compile(g *G.ExprGraph, outputs G.Nodes) (G.VM, error) {
	inputs := g.ExactSubgraphRoots(outputs...).Inputs()
	prog, locMap, err := G.CompileFunction(g, inputs, outputs)
	if err != nil {
		return nil, err
	}
	return G.NewTapeMachine(g, G.WithPrecompiled(prog, locMap)), nil
}

func bind(n *G.Node, shape []int, data []float32) error {
	return G.Let(n, tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data)))
}

// bindInputs binds x, the parameters and the extras of a program.
func (c *graphCache) bindInputs(p *program, x []float32, extras [][]float32) error {
	if err := bind(p.x, p.xShape, x); err != nil {
		return err
	}
	for i, prm := range c.def.params {
		if err := bind(p.params[i], prm.Shape, prm.Value); err != nil {
			return err
		}
	}
	for i, e := range p.extras {
		if err := bind(e, e.Shape(), extras[i]); err != nil {
			return err
		}
	}
	return nil
}

// run executes a program from the start. gorgonia ops panic on some
// internal failures; those become errors.
func run(m G.VM) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("gorgonia panicked: %v", r)
		}
	}()
	m.Reset()
	return m.RunAll()
}

// copyOut copies a node's computed value into a fresh slice.
func copyOut(n *G.Node) ([]float32, error) {
	v := n.Value()
	if v == nil {
		return nil, fmt.Errorf("node %v has no value after run", n.Name())
	}
	d, ok := v.Data().([]float32)
	if !ok {
		return nil, fmt.Errorf("node %v holds %T, want []float32", n.Name(), v.Data())
	}
	return append([]float32(nil), d...), nil
}

// forward runs the forward program on x (batch shape x.Shape).
func (c *graphCache) forward(x Tensor, extras [][]float32) (Tensor, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.get(x.Shape)
	if err != nil {
		return Tensor{}, err
	}
	if err := c.bindInputs(p, x.Data, extras); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: binding inputs: %w", c.def.layer, err)
	}
	if err := run(p.fwd); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: forward: %w", c.def.layer, err)
	}
	y, err := copyOut(p.y)
	if err != nil {
		return Tensor{}, fmt.Errorf("layer %q: forward: %w", c.def.layer, err)
	}
	return Tensor{Shape: append([]int(nil), p.yShape...), Data: y}, nil
}

// outShape is the batch output shape for a batch input shape (building the
// program if needed).
func (c *graphCache) outShape(xShape []int) ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.get(xShape)
	if err != nil {
		return nil, err
	}
	return p.yShape, nil
}

// backward runs a backward program: adds dparams into Param.Grad and, when
// wantDX, returns dx.
func (c *graphCache) backward(x Tensor, extras [][]float32, dy Tensor, wantDX bool) (Tensor, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, err := c.get(x.Shape)
	if err != nil {
		return Tensor{}, err
	}
	if err := dy.Validate(); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: upstream gradient: %w", c.def.layer, err)
	}
	if !sameShape(dy.Shape, p.yShape) {
		return Tensor{}, &ShapeError{Layer: c.def.layer, What: "upstream gradient", Got: dy.Shape, Want: fmt.Sprint(p.yShape)}
	}
	if err := c.bindInputs(p, x.Data, extras); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: binding inputs: %w", c.def.layer, err)
	}
	if err := bind(p.dy, p.yShape, dy.Data); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: binding upstream gradient: %w", c.def.layer, err)
	}
	m := p.bwd
	if !wantDX {
		m = p.bwdP
	}
	if m == nil { // no parameters and no dx wanted: nothing to do
		return Tensor{}, nil
	}
	if err := run(m); err != nil {
		return Tensor{}, fmt.Errorf("layer %q: backward: %w", c.def.layer, err)
	}
	for i, prm := range c.def.params {
		v := p.dparams[i].Value()
		if v == nil {
			return Tensor{}, fmt.Errorf("layer %q: gradient of %s missing after backward", c.def.layer, prm.Name)
		}
		d, ok := v.Data().([]float32)
		if !ok || len(d) != len(prm.Grad) {
			return Tensor{}, fmt.Errorf("layer %q: gradient of %s has %d values, want %d", c.def.layer, prm.Name, len(d), len(prm.Grad))
		}
		vecf32.Add(prm.Grad, d)
	}
	if !wantDX {
		return Tensor{}, nil
	}
	dx, err := copyOut(p.dx)
	if err != nil {
		return Tensor{}, fmt.Errorf("layer %q: backward: %w", c.def.layer, err)
	}
	return Tensor{Shape: append([]int(nil), p.xShape...), Data: dx}, nil
}
