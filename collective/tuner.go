package collective

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"

	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/stack"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/jobenv"
)

// The tuner picks the AllReduce algorithm of each call from the bytes, the group's size, its
// hosts and the kinds of link between its members, with an α-β model per link kind: a
// message of b bytes over a link of kind k costs α_k + b/bw_k, and reducing b bytes costs
// b/γ. It predicts, for every algorithm that can run the call, the time of its schedule
// (the step counts and sizes documented in ring.go, rdouble.go, hier.go and oneshot.go)
// and takes the fastest; ties go to the lower algorithm id (ring first).
//
// Every member must pick the same algorithm (the op header carries it, and a rank that
// picked another fails the op with a MismatchError), so every input is agreed: the size and
// the Topology are the same everywhere, and InitFromEnv makes every rank use rank 0's table
// and link kinds (BroadcastBytes at init). Within one process (New over any transport)
// the table is the same anyway.
//
// Table, by precedence: Options.Tuner; GORUN_TUNER_FILE (a JSON file like alphabeta.json);
// the committed alphabeta.json, measured on the development machine by
// `go run ./benchmarks/alphabeta` (which prints a new one). Algorithm: Options.Algorithm, or
// GORUN_ALGO, or auto.

// AlgoEnv and TunerFileEnv name the environment variables the tuner reads (see jobenv).
const (
	AlgoEnv      = jobenv.Algo
	TunerFileEnv = jobenv.TunerFile
)

// LinkCost is the α-β cost of one kind of link.
type LinkCost struct {
	// AlphaUS is the latency of one message, in microseconds (a hop of the ring, small).
	AlphaUS float64 `json:"alpha_us"`
	// GBps is the bandwidth of one link while every rank sends to one peer and receives from
	// another (a ring exchange), in 10^9 bytes per second.
	GBps float64 `json:"gbps"`
}

// TunerTable is the α-β table the tuner models algorithms with.
type TunerTable struct {
	// Source says where the numbers come from (command, machine, date).
	Source string `json:"source,omitempty"`
	// Links maps a link kind ("mem", "shm", "quic", "tcp", "tls") to its cost. A kind
	// missing from the table costs as "quic".
	Links map[string]LinkCost `json:"links"`
	// ReduceGBps is the speed of reducing received float32 data into the buffer, in
	// 10^9 bytes per second (γ); zero means free.
	ReduceGBps float64 `json:"reduce_gbps"`
	// OpUS is the fixed software cost of one collective op, in microseconds: issuing it,
	// the worker's hand-off, its header, beyond the messages' α. Every algorithm pays it
	// once, hier four times (its own op and its three internal ones), which is what tips a
	// close call between them. Zero means free.
	OpUS float64 `json:"op_us,omitempty"`
}

//go:embed alphabeta.json
var defaultTable []byte

// DefaultTunerTable returns the committed table (alphabeta.json).
func DefaultTunerTable() *TunerTable {
	t, err := ParseTunerTable(defaultTable)
	if err != nil {
		panic("collective: alphabeta.json: " + err.Error())
	}
	return t
}

// ParseTunerTable decodes a JSON table and checks it.
func ParseTunerTable(b []byte) (*TunerTable, error) {
	var t TunerTable
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("collective: tuner table: %w", err)
	}
	if len(t.Links) == 0 {
		return nil, errors.New("collective: tuner table: no links")
	}
	for k, c := range t.Links {
		if !(c.AlphaUS >= 0) || !(c.GBps > 0) || math.IsInf(c.AlphaUS, 0) || math.IsInf(c.GBps, 0) {
			return nil, fmt.Errorf("collective: tuner table: link %q: alpha_us must be ≥ 0 and gbps > 0, got %+v", k, c)
		}
	}
	if !(t.ReduceGBps >= 0) || math.IsInf(t.ReduceGBps, 0) {
		return nil, fmt.Errorf("collective: tuner table: reduce_gbps %v", t.ReduceGBps)
	}
	if !(t.OpUS >= 0) || math.IsInf(t.OpUS, 0) {
		return nil, fmt.Errorf("collective: tuner table: op_us %v", t.OpUS)
	}
	return &t, nil
}

// cost returns α (seconds) and β (seconds per byte) of kind.
func (t *TunerTable) cost(kind string) (alpha, beta float64) {
	c, ok := t.Links[kind]
	if !ok {
		c, ok = t.Links["quic"]
	}
	if !ok { // a table without quic: the slowest entry
		keys := make([]string, 0, len(t.Links))
		for k := range t.Links {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if l := t.Links[k]; !ok || l.GBps < c.GBps {
				c, ok = l, true
			}
		}
	}
	return c.AlphaUS * 1e-6, 1 / (c.GBps * 1e9)
}

func (t *TunerTable) gamma() float64 {
	if t.ReduceGBps <= 0 {
		return 0
	}
	return 1 / (t.ReduceGBps * 1e9)
}

// defaultMode applies when neither Options.Algorithm nor GORUN_ALGO is set: the tuner.
// Every algorithm passes the shared collective suite (TestSuiteEveryAlgorithm) over memory,
// QUIC and shared memory; a failure in the middle of a non-ring op that reaches a rank as a
// bare link error first waits briefly for the cause (algoState.cause).
const defaultMode = modeAuto

// algoMode is what Options.Algorithm / GORUN_ALGO asked for.
type algoMode uint8

const (
	modeAuto algoMode = iota
	modeRing
	modeRD // the recursive family: rd or rhd, by the model
	modeRHD
	modeHier
	modeOneShot
	modeRDOneShot
)

func (m algoMode) String() string {
	return [...]string{"auto", "ring", "rd", "rhd", "hier", "oneshot", "rdoneshot"}[m]
}

func parseAlgoMode(s string) (algoMode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto":
		return modeAuto, nil
	case "ring":
		return modeRing, nil
	case "rd":
		return modeRD, nil
	case "rhd":
		return modeRHD, nil
	case "hier":
		return modeHier, nil
	case "oneshot":
		return modeOneShot, nil
	case "rdoneshot":
		return modeRDOneShot, nil
	}
	return 0, fmt.Errorf("collective: unknown algorithm %q (want ring, hier, rd, rhd, oneshot, rdoneshot or auto)", s)
}

// linkKinds are the kinds of link between members on one host and on different hosts.
type linkKinds struct {
	Intra string `json:"intra"`
	Inter string `json:"inter"`
}

// LinkKinder may be implemented by a transport (or a wrapper exposing Base) to tell the
// tuner what carries its links: intra between ranks on one host, inter across hosts, as
// named in the tuner's table ("shm", "quic", "tcp", "tls", ...).
type LinkKinder interface {
	LinkKinds() (intra, inter string)
}

// detectKinds looks through the transport's wrappers for what carries its links.
func detectKinds(t transport.Transport) linkKinds {
	k := linkKinds{}
	for tr := t; tr != nil; {
		if lk, ok := tr.(LinkKinder); ok {
			i, e := lk.LinkKinds()
			if k.Intra == "" {
				k.Intra = i
			}
			if k.Inter == "" {
				k.Inter = e
			}
			return k
		}
		switch tr := tr.(type) {
		case *stack.Transport:
			// What InitFromEnv runs on: the settings say what carries links between hosts
			// (the data links' mode; on one host too without shared memory).
			inter := tr.Settings.Transport.String()
			if k.Intra == "" && tr.ShmLinks == nil {
				k.Intra = inter
			}
			if k.Inter == "" {
				k.Inter = inter
			}
		case *shmtransport.Transport:
			if k.Intra == "" {
				k.Intra = "shm"
			}
		case *quictransport.Transport:
			return k.fill("quic")
		case *memtransport.Transport:
			return k.fill("mem")
		}
		b, ok := tr.(interface{ Base() transport.Transport })
		if !ok {
			break
		}
		tr = b.Base()
	}
	return k.fill("quic")
}

func (k linkKinds) fill(base string) linkKinds {
	if k.Intra == "" {
		k.Intra = base
	}
	if k.Inter == "" {
		k.Inter = base
	}
	return k
}

// tuner is a group's algorithm chooser.
type tuner struct {
	mode  algoMode
	table *TunerTable
	kinds linkKinds
	topo  Topology
	n     int
	// Precomputed from the topology: whether the ring, each recursive-doubling distance
	// (by log2) and the fold cross hosts.
	ringInter bool
	// ringInterEdges counts the ring's edges (r, r+1 mod n) between two hosts.
	ringInterEdges int
	rdInter        []bool
	foldInter      bool
	// oneShotInter is the most peers on other hosts any rank has (the one-shot's slowest).
	oneShotInter int
}

func (t *tuner) init(g *Group, topo Topology) error {
	mode, err := parseAlgoMode(g.opts.Algorithm)
	if err != nil {
		return err
	}
	if g.opts.Algorithm == "" {
		mode = defaultMode
		if v := os.Getenv(AlgoEnv); v != "" {
			if mode, err = parseAlgoMode(v); err != nil {
				return fmt.Errorf("%s: %w", AlgoEnv, err)
			}
		}
	}
	table := g.opts.Tuner
	if table == nil {
		if path := os.Getenv(TunerFileEnv); path != "" {
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("collective: %s: %w", TunerFileEnv, err)
			}
			if table, err = ParseTunerTable(b); err != nil {
				return fmt.Errorf("collective: %s=%s: %w", TunerFileEnv, path, err)
			}
		} else {
			table = DefaultTunerTable()
		}
	}
	t.setup(mode, table, detectKinds(g.t), topo)
	return nil
}

func (t *tuner) setup(mode algoMode, table *TunerTable, kinds linkKinds, topo Topology) {
	t.mode, t.table, t.kinds, t.topo = mode, table, kinds, topo
	n := len(topo.HostOf)
	t.n = n
	t.ringInter = topo.NumHosts() > 1
	t.ringInterEdges = 0
	for r := range n {
		if topo.HostOf[r] != topo.HostOf[(r+1)%n] {
			t.ringInterEdges++
		}
	}
	p := pof2Below(max(n, 1))
	rem := n - p
	rank := func(q int) int {
		if q < rem {
			return 2*q + 1
		}
		return q + rem
	}
	t.rdInter = t.rdInter[:0]
	for d := 1; d < p; d *= 2 {
		inter := false
		for q := 0; q < p && !inter; q++ {
			inter = topo.HostOf[rank(q)] != topo.HostOf[rank(q^d)]
		}
		t.rdInter = append(t.rdInter, inter)
	}
	t.oneShotInter = 0
	for r := range n {
		other := 0
		for q := range n {
			if topo.HostOf[q] != topo.HostOf[r] {
				other++
			}
		}
		t.oneShotInter = max(t.oneShotInter, other)
	}
	t.foldInter = false
	for r := 0; r+1 < 2*rem; r += 2 {
		if topo.HostOf[r] != topo.HostOf[r+1] {
			t.foldInter = true
		}
	}
}

func (t *tuner) link(inter bool) (alpha, beta float64) {
	if inter {
		return t.table.cost(t.kinds.Inter)
	}
	return t.table.cost(t.kinds.Intra)
}

// candidates lists the algorithms the mode allows for a call, in id order.
// It returns them in a fixed array and a count, so that a call allocates nothing.
func (t *tuner) candidates(count int, comp Compression, feedback bool) (out [algoMax + 1]algorithm, n int) {
	var c []algorithm
	switch t.mode {
	case modeAuto:
		c = []algorithm{algoRing, algoRD, algoRHD, algoHier, algoOneShot, algoRDOneShot}
	case modeRing:
		c = []algorithm{algoRing}
	case modeRD:
		c = []algorithm{algoRD, algoRHD}
	case modeRHD:
		c = []algorithm{algoRHD}
	case modeHier:
		c = []algorithm{algoHier}
	case modeOneShot:
		c = []algorithm{algoOneShot}
	case modeRDOneShot:
		c = []algorithm{algoRDOneShot}
	}
	for _, a := range c {
		switch {
		case a == algoRD && feedback:
		case a == algoHier && !hierApplicable(t.topo):
		case a == algoOneShot && (feedback || !oneShotFits(t.n, count, comp)):
		case a == algoRDOneShot && (feedback || !rdOneShotApplicable(t.topo) || !oneShotFits(t.topo.NumHosts(), count, comp)):
		default:
			out[n] = a
			n++
		}
	}
	return out, n
}

// choose picks the algorithm of an AllReduce of count float32 values.
func (t *tuner) choose(count int, comp Compression, feedback bool) algorithm {
	if t.n <= 1 || t.mode == modeRing {
		return algoRing
	}
	best, bestT := algoRing, math.Inf(1)
	cands, nc := t.candidates(count, comp, feedback)
	switch nc {
	case 0:
		return algoRing // nothing forced can run the call: the ring can
	case 1:
		return cands[0]
	}
	ringT := math.Inf(1)
	for _, a := range cands[:nc] {
		p := t.predict(a, count, comp, feedback)
		if a == algoRing {
			ringT = p
		}
		if p < bestT {
			best, bestT = a, p
		}
	}
	if ringT <= bestT*(1+ringMargin) {
		return algoRing
	}
	return best
}

// ringMargin: the ring is kept unless another algorithm is predicted faster by more than this
// share. Where the model calls it close (large buffers, where every algorithm moves the same
// bytes and only a few α apart), the ring's pipelining of chunks, which the model does not
// see, wins: 64 MiB on 4 ranks of one host, ring against rhd (the model's pick by 2α), busbw
// 2.17 vs 1.87–1.89 GB/s over shared memory and 1.03 vs 0.90–0.97 over tcp (cf33592, one
// run each, quiet machine).
const ringMargin = 0.05

// predict models the time in seconds of an AllReduce of count values with algorithm a.
func (t *tuner) predict(a algorithm, count int, comp Compression, feedback bool) float64 {
	n := float64(t.n)
	wire := float64(4 * count)
	if comp != NoCompression {
		wire = float64(2 * count) // fp16 or bf16; fp16's chunk prefixes are negligible
	}
	red := float64(4*count) * t.table.gamma() // reducing the whole buffer once
	op := t.table.OpUS * 1e-6
	p := pof2Below(max(t.n, 1))
	fold := 0.0
	if t.n != p {
		al, be := t.link(t.foldInter)
		fold = 2*(al+wire*be) + red
	}
	switch a {
	case algoRing:
		if !t.ringInter {
			al, be := t.link(false)
			return op + 2*(n-1)*(al+wire/n*be) + (n-1)/n*red
		}
		// Across hosts the ring has no global step: a rank forwards as soon as its left
		// neighbour's segment arrived. Its critical path runs 2(n−1) edges around the ring,
		// a share f of them between hosts, so the steps cost the average of the two kinds
		// of link; and no inter-host link can carry its 2(n−1) segments faster than its β
		// allows. (benchmarks/report's discrete-event simulation of the schedule agrees
		// within a few percent; charging every step the inter-host cost overstated the ring
		// across hosts up to 4×.)
		f := float64(t.ringInterEdges) / n
		ai, bi := t.link(true)
		al, bl := t.link(false)
		s := wire / n
		chain := 2*(n-1)*(f*(ai+s*bi)+(1-f)*(al+s*bl)) + (n-1)/n*red
		return op + max(chain, ai+2*(n-1)*s*bi)
	case algoRD:
		s := op + fold
		for _, inter := range t.rdInter {
			al, be := t.link(inter)
			s += al + wire*be + red
		}
		return s
	case algoRHD:
		s := op + fold
		frac := 0.5
		for i := len(t.rdInter) - 1; i >= 0; i-- { // d = p/2 .. 1
			al, be := t.link(t.rdInter[i])
			s += 2*(al+wire*frac*be) + frac*red
			frac /= 2
		}
		return s
	case algoOneShot:
		if feedback || !oneShotFits(t.n, count, comp) {
			return math.Inf(1)
		}
		// One α (the slowest kind's), the sender's n−1 copies one after another, n−1
		// reductions (see oneShotCost).
		inter := float64(t.oneShotInter)
		ai, bi := t.link(true)
		al, bl := t.link(false)
		alpha := al
		if inter > 0 {
			alpha = max(al, ai)
		}
		return op + alpha + wire*(inter*bi+(n-1-inter)*bl) + (n-1)*red
	case algoRDOneShot:
		if feedback || !rdOneShotApplicable(t.topo) || !oneShotFits(t.topo.NumHosts(), count, comp) {
			return math.Inf(1)
		}
		// log2 L rd steps on the host, then the one-shot among H (see algoOneShot).
		al, bl := t.link(false)
		s := op
		for L := t.topo.LocalSize(); L > 1; L /= 2 {
			s += al + wire*bl + red
		}
		ai, bi := t.link(true)
		return s + oneShotCost(float64(t.topo.NumHosts()), ai, bi, wire, red)
	case algoHier:
		if !hierApplicable(t.topo) {
			return math.Inf(1)
		}
		L := float64(t.topo.LocalSize())
		H := t.topo.NumHosts()
		al, be := t.table.cost(t.kinds.Intra)
		// Its own op and the two on the host; the inner AllReduce's is in its prediction.
		local := 3*op + 2*(L-1)*(al+wire/L*be) + (L-1)/L*red
		var inner tuner
		innerTopo := makeTopology(seqHosts(H, 1), seqRanks(H))
		mode := t.mode
		if mode == modeHier {
			mode = modeAuto
		}
		inner.setup(mode, t.table, t.kinds, innerTopo)
		segCount := int(math.Ceil(float64(count) / L))
		ia := inner.choose(segCount, comp, feedback)
		return local + inner.predict(ia, segCount, comp, feedback)
	}
	return math.Inf(1)
}

// oneShotCost models a one-shot exchange among k members over links of cost (α, β): the
// k−1 messages leave at once, so the exchange pays one α, but the sender puts their bytes
// on the wire one after another ((k−1)·wire·β), and each member reduces k−1 buffers. With
// the committed table this picks the one-shot over rd for 4 KiB on one host, as measured at
// 3, 4 and 8 ranks (benchmarks/results/scale/latency/), and rd over rd+oneshot on 4 hosts ×
// 2 ranks over TLS, where the two measured about even (0.44–0.56 and 0.47–0.52 of the ring,
// latency/ and netns-2026-12-04/). The table's TLS α (10.9 µs, loopback in one process) is
// far below the 73.5 µs fitted between the network namespaces; with that α the model would
// pick rd+oneshot there.
func oneShotCost(k, alpha, beta, wire, red float64) float64 {
	return alpha + (k-1)*wire*beta + (k-1)*red
}

func seqRanks(n int) []int {
	r := make([]int, n)
	for i := range r {
		r[i] = i
	}
	return r
}

// seqHosts names the hosts of n ranks placed perHost to a host, in rank order.
func seqHosts(n, perHost int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = fmt.Sprintf("h%d", i/perHost)
	}
	return h
}

// Model is the tuner's model of a job shape, for projections and for tools: ranks placed
// RanksPerHost to a host in rank order, intra- and inter-host links of the given kinds.
type Model struct {
	Table        *TunerTable
	Ranks        int
	RanksPerHost int
	Intra, Inter string
	// Algorithm restricts the choice as Options.Algorithm does ("" = auto).
	Algorithm string
}

func (m Model) tuner() (*tuner, error) {
	mode, err := parseAlgoMode(m.Algorithm)
	if err != nil {
		return nil, err
	}
	if m.Ranks < 1 || m.RanksPerHost < 1 {
		return nil, fmt.Errorf("collective: Model: %d ranks, %d per host", m.Ranks, m.RanksPerHost)
	}
	table := m.Table
	if table == nil {
		table = DefaultTunerTable()
	}
	var t tuner
	t.setup(mode, table, linkKinds{Intra: m.Intra, Inter: m.Inter}.fill("quic"), makeTopology(seqHosts(m.Ranks, m.RanksPerHost), seqRanks(m.Ranks)))
	return &t, nil
}

// Choose returns the algorithm the tuner picks for an AllReduce of bytes (float32, no
// compression) and its predicted time in seconds.
func (m Model) Choose(bytes int) (string, float64, error) {
	t, err := m.tuner()
	if err != nil {
		return "", 0, err
	}
	a := t.choose(bytes/4, NoCompression, false)
	return a.String(), t.predict(a, bytes/4, NoCompression, false), nil
}

// Predict returns the modelled time in seconds of an AllReduce of bytes with the named
// algorithm ("ring", "rd", "rhd", "hier"); +Inf where it cannot run.
func (m Model) Predict(algo string, bytes int) (float64, error) {
	t, err := m.tuner()
	if err != nil {
		return 0, err
	}
	for a := algoRing; a <= algoMax; a++ {
		if a.String() == algo {
			return t.predict(a, bytes/4, NoCompression, false), nil
		}
	}
	return 0, fmt.Errorf("collective: unknown algorithm %q", algo)
}

// Algorithm returns the algorithm g's tuner picks for an AllReduce of count float32 values
// with the given options (what the op header will carry), e.g. "ring", "rd", "rhd", "hier".
func (g *Group) Algorithm(count int, opts ...ReduceOption) string {
	var rc reduceConfig
	for _, o := range opts {
		if o != nil {
			o.applyReduce(&rc)
		}
	}
	return g.alg.tuner.choose(count, rc.compression, rc.feedback).String()
}

// tunerAgreement is what rank 0 broadcasts at InitFromEnv.
type tunerAgreement struct {
	Table *TunerTable `json:"table"`
	Kinds linkKinds   `json:"kinds"`
}

// agreeTuner makes every member use rank 0's table and link kinds (BroadcastBytes). It is a
// setup op: the sequence numbers of the user's ops still start at 0.
func (g *Group) agreeTuner(ctx context.Context) error {
	if len(g.ranks) == 1 {
		return nil
	}
	var mine []byte
	if g.rank == 0 {
		var err error
		if mine, err = json.Marshal(tunerAgreement{Table: g.alg.tuner.table, Kinds: g.alg.tuner.kinds}); err != nil {
			return err
		}
	}
	b, err := g.BroadcastBytes(ctx, mine, 0)
	if err != nil {
		return fmt.Errorf("collective: agreeing on the tuner table: %w", err)
	}
	var ag tunerAgreement
	if err := json.Unmarshal(b, &ag); err != nil || ag.Table == nil {
		return fmt.Errorf("collective: rank 0's tuner table: %v", err)
	}
	g.alg.tuner.setup(g.alg.tuner.mode, ag.Table, ag.Kinds.fill("quic"), g.alg.topo)
	g.opts.Tuner = ag.Table
	g.mu.Lock()
	g.seq = 0
	g.mu.Unlock()
	return nil
}
