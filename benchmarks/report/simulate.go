package report

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/collective"
)

// Simulate checks the tuner's closed-form model (collective.Model) by running the schedule
// of one AllReduce message by message: a small discrete-event simulation.
//
// Every rank runs its program in order: sends, and receives each followed by the reduction
// of what came (γ per byte, the table's reduce_gbps). A send does not hold the rank; it
// occupies the directed link (src, dst) for bytes·β, queued behind earlier sends on that
// link, and arrives α later than it leaves (α and β of the intra-host link when both ranks
// share a host, of the inter-host link otherwise: one link per rank pair, as with a NIC per
// rank). A receive waits for its message. The AllReduce takes as long as its slowest rank.
//
// The schedules are the collective's, with their real segment arithmetic (count·j/n, so
// uneven segments and non-powers of two are what they are): the ring (reduce-scatter then
// all-gather, 2(n−1) steps), recursive doubling and Rabenseifner's halving/doubling with
// the fold for non-powers of two, and the hierarchical algorithm (ring reduce-scatter on
// each host, the inner algorithm the tuner picks across hosts per local rank, ring
// all-gather on the host). What it leaves out, as the closed form does: the ring's chunk
// pipelining inside a step, header bytes, CPU contention between ranks, congestion.
//
// Where the closed form and the simulation differ, the closed form's simplifications show:
// it charges every ring step the largest link's cost and equal segments.

// simOp is one step of a rank's program.
type simOp struct {
	send  bool
	peer  int     // global rank
	bytes float64 // on the wire
	red   float64 // receive: bytes reduced after it arrives
}

type simulator struct {
	m          collective.Model
	progs      [][]simOp
	alphaIntra float64
	betaIntra  float64
	alphaInter float64
	betaInter  float64
	gamma      float64
}

// Simulate returns the simulated time in seconds of an AllReduce of bytes (float32) with
// algo ("ring", "rd", "rhd", "hier", "oneshot", "rdoneshot", or "auto": the tuner's choice) on the shape m, and the
// algorithm it ran (for hier, "hier/" and the inner algorithm).
func Simulate(m collective.Model, algo string, bytes int) (float64, string, error) {
	if m.Ranks < 1 || m.RanksPerHost < 1 {
		return 0, "", fmt.Errorf("simulate: %d ranks, %d per host", m.Ranks, m.RanksPerHost)
	}
	if m.Table == nil {
		m.Table = collective.DefaultTunerTable()
	}
	if algo == "auto" {
		a, _, err := m.Choose(bytes)
		if err != nil {
			return 0, "", err
		}
		algo = a
	}
	if algo == "oneshot" || algo == "rdoneshot" {
		if p, err := m.Predict(algo, bytes); err != nil || math.IsInf(p, 1) {
			return math.Inf(1), "", err // too large for it, or the wrong shape: the tuner never picks it
		}
	}
	s := &simulator{m: m, progs: make([][]simOp, m.Ranks)}
	s.alphaIntra, s.betaIntra = linkCost(m.Table, m.Intra)
	s.alphaInter, s.betaInter = linkCost(m.Table, m.Inter)
	if g := m.Table.ReduceGBps; g > 0 {
		s.gamma = 1 / (g * 1e9)
	}
	count := bytes / 4
	world := seq(m.Ranks)
	ran := algo
	switch algo {
	case "ring":
		s.ring(world, 0, count)
	case "rd", "rhd":
		s.recursive(world, 0, count, algo == "rhd")
	case "oneshot":
		s.oneShot(world, 0, count)
	case "rdoneshot":
		L, H := m.RanksPerHost, m.Ranks/m.RanksPerHost
		if H < 2 || L < 2 || m.Ranks%L != 0 || L&(L-1) != 0 {
			return math.Inf(1), "", nil // the collective runs the ring there; not this schedule
		}
		for h := range H {
			s.recursive(world[h*L:(h+1)*L], 0, count, false)
		}
		for l := range L {
			cross := make([]int, H)
			for h := range H {
				cross[h] = h*L + l
			}
			s.oneShot(cross, 0, count)
		}
	case "hier":
		L, H := m.RanksPerHost, m.Ranks/m.RanksPerHost
		if H < 2 || L < 2 || m.Ranks%L != 0 {
			return math.Inf(1), "", nil // the collective runs the ring there; not this schedule
		}
		inner := collective.Model{Table: m.Table, Ranks: H, RanksPerHost: 1, Intra: m.Intra, Inter: m.Inter}
		segBytes := 4 * int(math.Ceil(float64(count)/float64(L)))
		ia, _, err := inner.Choose(segBytes)
		if err != nil {
			return 0, "", err
		}
		ran = "hier/" + ia
		for h := range H {
			s.ringReduceScatter(world[h*L:(h+1)*L], 0, count)
		}
		for l := range L {
			lo, hi := count*l/L, count*(l+1)/L
			cross := make([]int, H)
			for h := range H {
				cross[h] = h*L + l
			}
			switch ia {
			case "ring":
				s.ring(cross, lo, hi)
			case "oneshot":
				s.oneShot(cross, lo, hi)
			default:
				s.recursive(cross, lo, hi, ia == "rhd")
			}
		}
		for h := range H {
			s.ringAllGather(world[h*L:(h+1)*L], 0, count)
		}
	default:
		return 0, "", fmt.Errorf("simulate: unknown algorithm %q", algo)
	}
	t, err := s.run()
	// The fixed software cost of each collective op (the table's op_us), as the closed form
	// charges it: hier runs four (its own, and three internal ones).
	ops := 1.0
	if algo == "hier" {
		ops = 4
	}
	return t + ops*m.Table.OpUS*1e-6, ran, err
}

func linkCost(t *collective.TunerTable, kind string) (alpha, beta float64) {
	c, ok := t.Links[kind]
	if !ok {
		c = t.Links["quic"]
	}
	return c.AlphaUS * 1e-6, 1 / (c.GBps * 1e9)
}

func seq(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

func (s *simulator) send(from, to int, elems int) {
	s.progs[from] = append(s.progs[from], simOp{send: true, peer: to, bytes: 4 * float64(elems)})
}

func (s *simulator) recv(at, from int, elems int, reduce bool) {
	op := simOp{peer: from, bytes: 4 * float64(elems)}
	if reduce {
		op.red = op.bytes
	}
	s.progs[at] = append(s.progs[at], op)
}

// exchange: a and b send each other their values of the given sizes at once.
func (s *simulator) exchange(a, b, aSends, bSends int, reduce bool) {
	s.send(a, b, aSends)
	s.send(b, a, bSends)
	s.recv(a, b, bSends, reduce)
	s.recv(b, a, aSends, reduce)
}

// seg is the size of segment j of [lo, hi) cut into n.
func seg(lo, hi, n, j int) int {
	j = ((j % n) + n) % n
	c := hi - lo
	return c*(j+1)/n - c*j/n
}

func (s *simulator) ring(g []int, lo, hi int) {
	s.ringReduceScatter(g, lo, hi)
	s.ringAllGather(g, lo, hi)
}

// ringReduceScatter: in step k member i sends segment i−1−k to i+1 and reduces segment
// i−2−k from i−1, so that it ends holding segment i.
func (s *simulator) ringReduceScatter(g []int, lo, hi int) {
	n := len(g)
	for k := 0; k < n-1; k++ {
		for i := range n {
			s.send(g[i], g[(i+1)%n], seg(lo, hi, n, i-1-k))
		}
		for i := range n {
			s.recv(g[i], g[(i+n-1)%n], seg(lo, hi, n, i-2-k), true)
		}
	}
}

// ringAllGather: in step k member i sends segment i−k and receives segment i−1−k.
func (s *simulator) ringAllGather(g []int, lo, hi int) {
	n := len(g)
	for k := 0; k < n-1; k++ {
		for i := range n {
			s.send(g[i], g[(i+1)%n], seg(lo, hi, n, i-k))
		}
		for i := range n {
			s.recv(g[i], g[(i+n-1)%n], seg(lo, hi, n, i-1-k), false)
		}
	}
}

// oneShot: every member of g sends its values of [lo, hi) to every other (to i+1 first,
// then i+2, ...) and reduces what comes in (see collective/oneshot.go).
func (s *simulator) oneShot(g []int, lo, hi int) {
	k := len(g)
	for i := range k {
		for d := 1; d < k; d++ {
			s.send(g[i], g[(i+d)%k], hi-lo)
		}
	}
	for i := range k {
		for d := 1; d < k; d++ {
			s.recv(g[i], g[(i-d+k)%k], hi-lo, true)
		}
	}
}

// recursive is rd (whole buffer every step) or rhd (halving, then doubling) among g on
// [lo, hi), with the fold of the ranks beyond the largest power of two (see rdouble.go).
func (s *simulator) recursive(g []int, lo, hi int, halving bool) {
	n := len(g)
	count := hi - lo
	p := 1
	for p*2 <= n {
		p *= 2
	}
	rem := n - p
	rank := func(q int) int {
		if q < rem {
			return g[2*q+1]
		}
		return g[q+rem]
	}
	for r := 0; r < 2*rem; r += 2 {
		s.send(g[r], g[r+1], count)
		s.recv(g[r+1], g[r], count, true)
	}
	if !halving {
		for d := 1; d < p; d *= 2 {
			for q := range p {
				if q < q^d {
					s.exchange(rank(q), rank(q^d), count, count, true)
				}
			}
		}
	} else {
		// Windows of segments [wlo, whi) of p, per participant.
		wlo, whi := make([]int, p), make([]int, p)
		for q := range p {
			wlo[q], whi[q] = 0, p
		}
		span := func(a, b int) int { return count*b/p - count*a/p }
		for d := p / 2; d >= 1; d /= 2 {
			for q := range p {
				if q&d != 0 {
					continue
				}
				o := q ^ d
				mid := (wlo[q] + whi[q]) / 2
				// q keeps the lower half and gives the upper; o the reverse.
				s.exchange(rank(q), rank(o), span(mid, whi[q]), span(wlo[q], mid), true)
				whi[q], wlo[o] = mid, mid
			}
		}
		for d := 1; d < p; d *= 2 {
			for q := range p {
				if q&d != 0 {
					continue
				}
				o := q ^ d
				s.exchange(rank(q), rank(o), span(wlo[q], whi[q]), span(wlo[o], whi[o]), false)
				a, b := min(wlo[q], wlo[o]), max(whi[q], whi[o])
				wlo[q], whi[q], wlo[o], whi[o] = a, b, a, b
			}
		}
	}
	for r := 0; r < 2*rem; r += 2 {
		s.send(g[r+1], g[r], count)
		s.recv(g[r], g[r+1], count, false)
	}
}

// run executes the programs and returns when the last rank finishes.
func (s *simulator) run() (float64, error) {
	type key struct{ from, to int }
	// A sender puts its messages on the wire one after another: its inter-host link (one
	// per rank) and its copies into shared memory each carry one message at a time. (Only
	// the one-shot sends to several peers without waiting in between.)
	type port struct {
		from  int
		inter bool
	}
	n := len(s.progs)
	clock := make([]float64, n)
	pc := make([]int, n)
	free := map[port]float64{}
	mail := map[key][]float64{}
	L := s.m.RanksPerHost
	left := 0
	for _, p := range s.progs {
		left += len(p)
	}
	for left > 0 {
		progress := false
		for r := range n {
			for pc[r] < len(s.progs[r]) {
				op := s.progs[r][pc[r]]
				if op.send {
					alpha, beta := s.alphaInter, s.betaInter
					inter := r/L != op.peer/L
					if !inter {
						alpha, beta = s.alphaIntra, s.betaIntra
					}
					k, pt := key{r, op.peer}, port{r, inter}
					start := max(clock[r], free[pt])
					free[pt] = start + op.bytes*beta
					mail[k] = append(mail[k], start+alpha+op.bytes*beta)
				} else {
					k := key{op.peer, r}
					q := mail[k]
					if len(q) == 0 {
						break // waits for the peer
					}
					clock[r] = max(clock[r], q[0]) + op.red*s.gamma
					mail[k] = q[1:]
				}
				pc[r]++
				left--
				progress = true
			}
		}
		if !progress {
			return 0, fmt.Errorf("simulate: the schedule deadlocks (%d steps left)", left)
		}
	}
	end := 0.0
	for _, c := range clock {
		end = max(end, c)
	}
	return end, nil
}
