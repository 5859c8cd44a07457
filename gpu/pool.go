package gpu

// pool is a caching allocator: freed blocks are kept by size and handed out
// again, so a training loop, whose step allocates the same sizes every
// time, reaches a steady state with no device allocation at all (a
// cuMemAlloc/cuMemFree pair costs far more than the small kernels of a
// step). Sizes are rounded up to 256 bytes (CUDA's allocation alignment).
// Not safe for concurrent use: each Model owns one.
type pool struct {
	dev    Device
	free   map[int][]Mem
	inUse  int64 // bytes handed out and not yet returned
	cached int64 // bytes held in free lists
	peak   int64 // largest inUse seen
}

func newPool(dev Device) *pool { return &pool{dev: dev, free: make(map[int][]Mem)} }

func roundUp(bytes int) int { return (bytes + 255) &^ 255 }

// get returns a block of at least bytes bytes, contents undefined.
func (p *pool) get(bytes int) (Mem, error) {
	size := roundUp(bytes)
	if l := p.free[size]; len(l) > 0 {
		m := l[len(l)-1]
		p.free[size] = l[:len(l)-1]
		p.cached -= int64(size)
		p.inUse += int64(size)
		p.peak = max(p.peak, p.inUse)
		return m, nil
	}
	m, err := p.dev.Alloc(size)
	if err != nil {
		// Out of memory with blocks cached for other sizes: give them back and retry.
		if p.cached == 0 {
			return Mem{}, err
		}
		p.trim()
		if m, err = p.dev.Alloc(size); err != nil {
			return Mem{}, err
		}
	}
	p.inUse += int64(size)
	p.peak = max(p.peak, p.inUse)
	return m, nil
}

// put returns a block got from get.
func (p *pool) put(m Mem) {
	if m.IsZero() {
		return
	}
	p.free[m.bytes] = append(p.free[m.bytes], m)
	p.inUse -= int64(m.bytes)
	p.cached += int64(m.bytes)
}

// trim frees every cached block.
func (p *pool) trim() {
	for size, l := range p.free {
		for _, m := range l {
			p.dev.Free(m)
		}
		delete(p.free, size)
	}
	p.cached = 0
}

// arena records the blocks taken for one forward or backward pass, so that
// they go back to the pool together.
type arena struct {
	p     *pool
	mems  []Mem
	bytes int64
}

func (a *arena) floats(n int) (Mem, error) { return a.bytesOf(4 * n) }

func (a *arena) bytesOf(n int) (Mem, error) {
	m, err := a.p.get(n)
	if err != nil {
		return Mem{}, err
	}
	a.mems = append(a.mems, m)
	a.bytes += int64(m.bytes)
	return m, nil
}

// release returns every block of the arena to the pool.
func (a *arena) release() {
	for _, m := range a.mems {
		a.p.put(m)
	}
	a.mems, a.bytes = a.mems[:0], 0
}
