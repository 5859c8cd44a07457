package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/ringtrain/ringtrain/collective"
)

// The plan is the op sequence every rank draws from the same seed: a pure function of
// (seed, world size, settings), so that each rank knows what every other rank does and
// with which data, and can compute every result on its own.

// kind is the call an op makes.
type kind uint8

const (
	kAllReduce kind = iota
	kReduceScatter
	kAllGather
	kBroadcast
	kBarrier
	kSendRecv
	kBroadcastBytes
	kAllGatherBytes
	kAgree
	numKinds
)

var kindNames = [numKinds]string{"allreduce", "reducescatter", "allgather", "broadcast", "barrier", "sendrecv",
	"broadcastbytes", "allgatherbytes", "agree"}

func (k kind) String() string { return kindNames[k] }

// op is one entry of the plan.
type op struct {
	index int
	kind  kind
	group int  // index into plan.groups; 0 is the world
	count int  // elements of each member's buffer (for ReduceScatter/AllGather, a multiple of the group size)
	fp16  bool // AllReduce/ReduceScatter with collective.FP16
	red   collective.Op
	async bool   // issued with the *Async call and waited later
	root  int    // Broadcast root (group rank)
	src   int    // SendRecv sender (group rank)
	dst   int    // SendRecv receiver (group rank)
	tag   int    // SendRecv tag
	mag   int    // inputs of reduce ops are integers in [-2^mag, 2^mag)
	fails uint64 // Agree: bit m set = group rank m contributes an error
	// waits lists the indices of earlier async ops (and p2p ops) that every rank waits for
	// right after issuing this one, in this order (out of issue order on purpose).
	waits []int
}

// label is the per-kind counter name: the kind plus the wire dtype for reductions.
func (o *op) label() string {
	switch o.kind {
	case kAllReduce, kReduceScatter:
		if o.fp16 {
			return o.kind.String() + "_fp16"
		}
		return o.kind.String() + "_fp32"
	}
	return o.kind.String()
}

func (o *op) String() string {
	s := fmt.Sprintf("op #%d %s group=%d count=%d", o.index, o.label(), o.group, o.count)
	switch o.kind {
	case kAllReduce, kReduceScatter:
		s += fmt.Sprintf(" %v mag=2^%d", o.red, o.mag)
	case kBroadcast:
		s += fmt.Sprintf(" root=%d", o.root)
	case kSendRecv:
		s += fmt.Sprintf(" %d->%d tag=%d", o.src, o.dst, o.tag)
	}
	if o.async {
		s += " async"
	}
	return s
}

// settings are the knobs of a plan; all ranks must use the same.
type settings struct {
	seed        uint64
	world       int
	ops         int
	maxBytes    int // largest buffer, bytes
	maxInflight int // async collectives outstanding at most (per rank)
	tags        int // distinct Send/Recv tags
}

// plan is the groups of a sequence and the generator of its ops.
type plan struct {
	settings
	groups [][]int // world ranks of each group, in ring order; groups[0] is the world

	rng      *rand.Rand
	next     int   // index of the next op
	pending  []int // async ops and p2p ops not yet waited for
	maxElems int
}

// newPlan starts the sequence. It is deterministic in s; ops are drawn one at a time by
// nextOp, so that a sequence of any length costs no memory.
func newPlan(s settings) *plan {
	rng := rand.New(rand.NewPCG(s.seed, 0x50a4_50a4))
	p := &plan{settings: s, rng: rng, maxElems: max(s.maxBytes/4, 1)}
	world := make([]int, s.world)
	for i := range world {
		world[i] = i
	}
	p.groups = append(p.groups, world)
	p.groups = append(p.groups, subgroups(rng, s.world)...)
	return p
}

// makePlan draws the whole sequence at once (for tests and small runs).
func makePlan(s settings) (*plan, []op) {
	p := newPlan(s)
	ops := make([]op, 0, s.ops)
	for {
		o, ok := p.nextOp()
		if !ok {
			return p, ops
		}
		ops = append(ops, o)
	}
}

// nextOp draws the next op; false after s.ops ops. The last op waits for everything still
// outstanding.
func (p *plan) nextOp() (op, bool) {
	if p.next >= p.ops {
		return op{}, false
	}
	rng, s := p.rng, &p.settings
	i := p.next
	p.next++
	o := op{index: i}
	switch r := rng.IntN(100); {
	case r < 30:
		o.kind = kAllReduce
	case r < 43:
		o.kind = kReduceScatter
	case r < 56:
		o.kind = kAllGather
	case r < 70:
		o.kind = kBroadcast
	case r < 74:
		o.kind = kBarrier
	case r < 92:
		o.kind = kSendRecv
	case r < 95:
		o.kind = kBroadcastBytes
	case r < 98:
		o.kind = kAllGatherBytes
	default:
		o.kind = kAgree
	}
	if len(p.groups) > 1 && rng.IntN(100) < 35 {
		o.group = 1 + rng.IntN(len(p.groups)-1)
	}
	n := len(p.groups[o.group])
	if o.kind == kSendRecv && n < 2 {
		o.group = 0
		n = s.world
	}
	if o.kind == kSendRecv && n < 2 {
		o.kind = kBarrier // a world of one has no one to talk to
	}
	o.count = logUniform(rng, p.maxElems)
	switch o.kind {
	case kReduceScatter, kAllGather:
		o.count -= o.count % n
	case kBarrier:
		o.count = 0
	case kAllGatherBytes, kAgree:
		o.count = min(o.count, 64<<10/4) // messages go whole around the ring: keep them small
	}
	o.red = collective.Op(1 + rng.IntN(4))
	// Integers whose sum over the group stays below 2^24 are summed exactly by float32 in
	// any order. fp16 ops draw from wider ranges so that quantization really rounds.
	maxMag := 23 - bitsFor(n)
	if o.kind == kAllReduce || o.kind == kReduceScatter {
		o.fp16 = rng.IntN(100) < 40
		if o.fp16 {
			o.mag = 4 + rng.IntN(maxMag-3)
		} else {
			o.mag = rng.IntN(maxMag + 1)
		}
	}
	o.root = rng.IntN(n)
	if o.kind == kSendRecv {
		o.src = rng.IntN(n)
		o.dst = (o.src + 1 + rng.IntN(n-1)) % n
		o.tag = rng.IntN(max(s.tags, 1))
	}
	if o.kind == kAgree && rng.IntN(2) == 0 {
		o.fails = rng.Uint64() & (1<<n - 1)
	}
	switch o.kind {
	case kAllReduce, kReduceScatter, kAllGather, kBroadcast:
		o.async = rng.IntN(100) < 50
	case kSendRecv:
		o.async = true // always: Send may block until the peer posts its Recv
	}
	if o.async {
		p.pending = append(p.pending, i)
	}
	// Wait for some outstanding ops, in a shuffled order: always when too many are in
	// flight, sometimes anyway, and all of them after the last op.
	shuffle := func() {
		rng.Shuffle(len(p.pending), func(a, b int) { p.pending[a], p.pending[b] = p.pending[b], p.pending[a] })
	}
	if len(p.pending) > s.maxInflight || (len(p.pending) > 0 && rng.IntN(100) < 25) {
		k := 1 + rng.IntN(len(p.pending))
		if len(p.pending) > s.maxInflight {
			k = max(k, len(p.pending)-s.maxInflight)
		}
		shuffle()
		o.waits = slices.Clone(p.pending[:k])
		p.pending = slices.Delete(p.pending, 0, k)
	}
	if p.next == p.ops && len(p.pending) > 0 {
		shuffle()
		o.waits = append(o.waits, p.pending...)
		p.pending = nil
	}
	return o, true
}

// subgroups draws the subgroups of a world: the two halves, the world in reverse ring order,
// a shuffled subset, and one member alone. Each appears in the same order on every rank,
// which is the order in which the members create them.
func subgroups(rng *rand.Rand, world int) [][]int {
	if world < 2 {
		return nil
	}
	var gs [][]int
	half := world / 2
	lo, hi := make([]int, 0, half), make([]int, 0, world-half)
	for r := range world {
		if r < half {
			lo = append(lo, r)
		} else {
			hi = append(hi, r)
		}
	}
	gs = append(gs, lo, hi)
	rev := make([]int, world)
	for i := range rev {
		rev[i] = world - 1 - i
	}
	gs = append(gs, rev)
	perm := rng.Perm(world)
	gs = append(gs, perm[:2+rng.IntN(world-1)])
	gs = append(gs, []int{rng.IntN(world)})
	return gs
}

// logUniform draws an element count whose byte size is log-uniform in [4, 4·maxElems], with
// 1 in 20 draws being an empty buffer.
func logUniform(rng *rand.Rand, maxElems int) int {
	if rng.IntN(20) == 0 {
		return 0
	}
	x := math.Exp(rng.Float64() * math.Log(float64(maxElems)+1))
	return min(max(int(x), 1), maxElems)
}

// bitsFor is the number of bits needed for n, e.g. 2 for 3 and 4, 3 for 5..8.
func bitsFor(n int) int {
	b := 0
	for (1 << b) < n {
		b++
	}
	return b
}

// members reports the group rank of world rank r in group g, or -1.
func (p *plan) member(g, r int) int {
	return slices.Index(p.groups[g], r)
}

// involves reports whether world rank r takes part in o.
func (p *plan) involves(o *op, r int) bool {
	gr := p.member(o.group, r)
	if gr < 0 {
		return false
	}
	if o.kind == kSendRecv {
		return gr == o.src || gr == o.dst
	}
	return true
}
