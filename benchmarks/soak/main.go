// Command soak runs thousands of random collective ops on every rank of a job and checks
// every result against an independent computation.
//
// All ranks draw the same op sequence from --seed: every collective (AllReduce and
// ReduceScatter in fp32 and fp16, AllGather, Broadcast, Barrier, BroadcastBytes,
// AllGatherBytes, Agree with planned member failures), tagged Send/Recv pairs,
// on the world group and on subgroups (halves, the world in reverse order, a shuffled
// subset, a single member), with buffer sizes log-uniform from 4 bytes to --max-bytes (and
// some empty ones), about half of them issued asynchronously and waited later in a shuffled
// order, up to --max-inflight at a time. Inputs are a hash of (seed, op, rank, element), so
// every rank can compute every other rank's input and thus every result on its own:
//
//   - reductions take integers whose sums stay below 2^24, so float32 sums are exact in any
//     order; fp32 results must match bit for bit (Avg: the one correctly rounded division
//     the package documents), fp16 results must lie within the error bound documented on
//     collective.AllReduce (taken with the largest magnitude of the whole buffer, which can
//     only loosen it), and every member of a group must hold the same fp16 AllReduce result
//     bits (checked at the end through a digest);
//   - AllGather, Broadcast and Send/Recv move arbitrary finite bit patterns into buffers
//     pre-filled with other patterns, and must deliver them bit for bit; the byte
//     collectives must deliver every member's message (of its own length) byte for byte;
//     Agree must return every value when no member fails, and otherwise an
//     *AgreementError naming exactly the members that failed, with their messages.
//
// The job ends with Group.Shutdown (the flushing end), then Close.
//
// Run it under gorun; arguments after the program belong to it:
//
//	go run ./cmd/gorun --standalone --nproc 4 --transport shm  ./benchmarks/soak --ops 10000 --seed 1
//	go run ./cmd/gorun --standalone --nproc 4 --transport quic ./benchmarks/soak --ops 10000 --seed 1
//	go run ./cmd/gorun --standalone --nproc 4 --transport shm  ./benchmarks/soak --ops 10000 --seed 1 --algo rd
//
// Every rank prints a human summary line; rank 0 adds one JSON line (fields: see summary),
// with every rank's counts gathered. The exit status is 0 only if every op succeeded and
// every result was right on this rank.
//
// # Chaos
//
// With --chaos-kill-after D one rank, drawn from the seed (or --chaos-rank), kills itself
// with SIGKILL D after the group is formed, in the middle of the soak. It first prints
// {"chaos":"kill","rank":V,"t_ns":...}. Every survivor keeps running (it ignores the SIGTERM
// gorun sends when the victim dies: it must find the failure through the collective
// package, not be told by the launcher) until an op fails, then prints
// {"chaos":"survivor","rank":r,"victim":V,"t_ns":...,"named":bool,"err":"..."} and exits 3.
// "named" says whether the error names the victim ("rank V"). scripts/chaos.sh and
// TestChaos run this under gorun and check the timing, the exit and what is left behind.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport"
)

type config struct {
	ops         int
	seed        uint64
	maxBytes    int
	maxInflight int
	tags        int
	chunk       int
	opTimeout   time.Duration
	progress    int
	verbose     bool
	chaosAfter  time.Duration
	chaosRank   int
	maxReports  int
	corruptOp   int
	algo        string
	simHosts    int
}

func parseFlags(args []string, out io.Writer) (*config, error) {
	fs := flag.NewFlagSet("soak", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &config{}
	var maxBytes string
	fs.IntVar(&c.ops, "ops", 1000, "ops in the sequence")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the op sequence and the data (same on every rank)")
	fs.StringVar(&maxBytes, "max-bytes", "8MiB", "largest buffer (sizes are log-uniform from 4 bytes)")
	fs.IntVar(&c.maxInflight, "max-inflight", 4, "async ops outstanding at most per rank")
	fs.IntVar(&c.tags, "tags", 3, "distinct Send/Recv tags")
	fs.IntVar(&c.chunk, "chunk", 0, "collective.Options.ChunkBytes (0: the package default)")
	fs.DurationVar(&c.opTimeout, "op-timeout", 60*time.Second, "collective.Options.Timeout: an op making no progress this long fails")
	fs.IntVar(&c.progress, "progress", 0, "print a progress line every N ops (0: never)")
	fs.BoolVar(&c.verbose, "v", false, "print every op")
	fs.DurationVar(&c.chaosAfter, "chaos-kill-after", 0, "chaos: one rank kills itself (SIGKILL) this long after joining (0: no chaos)")
	fs.IntVar(&c.chaosRank, "chaos-rank", -1, "chaos: the rank that dies (-1: drawn from --seed)")
	fs.IntVar(&c.maxReports, "max-reports", 20, "wrong results printed in full at most")
	fs.StringVar(&c.algo, "algo", "", "collective.Options.Algorithm: ring, rd, rhd, hier, oneshot, rdoneshot or auto (empty: GORUN_ALGO, else the tuner)")
	fs.IntVar(&c.simHosts, "sim-hosts", 0, "ranks per simulated host (collective.Options.Hosts, rank order), so that hier has hosts to work with on one machine (0: the real hosts)")
	fs.IntVar(&c.corruptOp, "corrupt-op", -1, "testing the checker: flip the lowest bit of one checked element of op N's result on every rank that checks it")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	b, err := parseSize(maxBytes)
	if err != nil {
		return nil, fmt.Errorf("--max-bytes: %v", err)
	}
	c.maxBytes = b
	switch {
	case c.ops < 0:
		return nil, errors.New("--ops must be ≥ 0")
	case c.maxInflight < 1:
		return nil, errors.New("--max-inflight must be ≥ 1")
	case c.tags < 1:
		return nil, errors.New("--tags must be ≥ 1")
	case c.chaosAfter < 0:
		return nil, errors.New("--chaos-kill-after must be ≥ 0")
	case c.simHosts < 0:
		return nil, errors.New("--sim-hosts must be ≥ 0")
	}
	switch c.algo {
	case "", "ring", "rd", "rhd", "hier", "oneshot", "rdoneshot", "auto":
	default:
		return nil, fmt.Errorf("--algo %q: want ring, rd, rhd, hier, oneshot, rdoneshot or auto", c.algo)
	}
	return c, nil
}

func parseSize(s string) (int, error) {
	s = strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suf string
		m   int
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"B", 1}} {
		if strings.HasSuffix(s, u.suf) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suf)), u.m
			break
		}
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > (1<<30)/mult || n*mult < 4 {
		return 0, fmt.Errorf("bad size %q: want 4 bytes to 1GiB, e.g. 8MiB", s)
	}
	return n * mult, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "chaos" {
		os.Exit(chaosMain(os.Args[2:]))
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg, os.Stdout, os.Stderr))
}

// summary is rank 0's JSON line.
type summary struct {
	Soak         string         `json:"soak"` // "done" or "failed"
	Transport    string         `json:"transport"`
	Algo         string         `json:"algo"` // --algo, else GORUN_ALGO, else "auto"
	Ranks        int            `json:"ranks"`
	Seed         uint64         `json:"seed"`
	Ops          int            `json:"ops"`     // ops in the sequence
	OpsRun       []int          `json:"ops_run"` // per rank: ops it took part in
	Bytes        int64          `json:"bytes"`   // Σ over ranks of the bytes of the buffers they passed
	Wrong        int            `json:"wrong"`   // ops with a wrong result, all ranks
	WrongByRank  []int          `json:"wrong_by_rank"`
	Errors       int            `json:"errors"` // ranks whose ops failed
	Kinds        map[string]int `json:"kinds"`  // ops of the sequence per kind
	Async        int            `json:"async"`
	SubgroupOps  int            `json:"subgroup_ops"`
	FP16MaxRel   float64        `json:"fp16_max_err_over_bound"` // largest |error|/bound seen on rank 0
	DigestsAgree bool           `json:"fp16_digests_agree"`
	WallS        float64        `json:"wall_s"`
	MaxBytes     int            `json:"max_bytes"`
}

// pending is an issued op not yet checked.
type pending struct {
	o    *op
	work *collective.Work // collectives
	p2p  chan error       // Send/Recv goroutine result
	buf  []float32
}

type runner struct {
	cfg    *config
	p      *plan
	rank   int
	groups []*collective.Group // index as plan.groups; nil where not a member
	ctx    context.Context
	out    io.Writer
	errOut io.Writer

	inflight map[int]*pending
	p2pPrev  map[[3]int]chan struct{} // (src, dst, tag) in world ranks: the previous message's done
	digest   map[int]uint64           // per group: fp16 AllReduce results, folded

	kinds         map[string]int // ops of the sequence per kind
	async, subOps int
	opsRun, wrong int
	bytes         int64
	reports       int
	fp16MaxRel    float64

	firstErr struct {
		sync.Mutex
		err error
		t   time.Time
	}
	failed chan struct{}
}

func run(cfg *config, stdout, stderr io.Writer) int {
	start := time.Now()
	ctx := context.Background()
	chaos := cfg.chaosAfter > 0
	if chaos {
		// gorun TERMs the survivors as soon as the victim dies; they must find the failure
		// through the collective package themselves, so TERM is only noted.
		sigs := make(chan os.Signal, 4)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		go func() {
			for s := range sigs {
				fmt.Fprintf(stderr, "soak: got %v; carrying on until the collective fails (chaos mode)\n", s)
			}
		}()
	}
	g, err := collective.InitFromEnv(ctx, collective.Options{ChunkBytes: cfg.chunk, Timeout: cfg.opTimeout, Algorithm: cfg.algo, Hosts: simHosts(cfg.simHosts)})
	if err != nil {
		fmt.Fprintln(stderr, "soak: init:", err)
		return 1
	}
	rank, world := g.Rank(), g.Size()
	p := newPlan(settings{seed: cfg.seed, world: world, ops: cfg.ops, maxBytes: cfg.maxBytes, maxInflight: cfg.maxInflight, tags: cfg.tags})
	r := &runner{cfg: cfg, p: p, rank: rank, ctx: ctx, out: stdout, errOut: stderr,
		inflight: make(map[int]*pending), p2pPrev: make(map[[3]int]chan struct{}),
		digest: make(map[int]uint64), failed: make(chan struct{}), kinds: make(map[string]int)}
	r.groups = make([]*collective.Group, len(p.groups))
	r.groups[0] = g

	victim := -1
	if chaos {
		victim = cfg.chaosRank
		if victim < 0 {
			victim = int(mix(cfg.seed^0xc4a05) % uint64(world))
		}
		if victim == rank {
			time.AfterFunc(cfg.chaosAfter, func() {
				fmt.Fprintf(stderr, "{\"chaos\":\"kill\",\"rank\":%d,\"t_ns\":%d}\n", rank, time.Now().UnixNano())
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			})
		}
	}

	err = r.soak()
	if chaos {
		if err == nil {
			fmt.Fprintf(stdout, "soak: rank %d: chaos: the soak ended (%d ops) before rank %d died; use more --ops\n", rank, cfg.ops, victim)
			g.Close()
			return 4
		}
		r.firstErr.Lock()
		e, t := r.firstErr.err, r.firstErr.t
		r.firstErr.Unlock()
		if e == nil {
			e, t = err, time.Now()
		}
		named := namesRank(e, victim)
		line, _ := json.Marshal(map[string]any{"chaos": "survivor", "rank": rank, "victim": victim,
			"t_ns": t.UnixNano(), "named": named, "err": e.Error()})
		fmt.Fprintln(stdout, string(line))
		closeStart := time.Now()
		g.Close()
		fmt.Fprintf(stdout, "soak: rank %d: chaos: failed after %d ops; Close took %v\n", rank, r.opsRun, time.Since(closeStart).Round(time.Millisecond))
		return 3
	}
	if err != nil {
		fmt.Fprintf(stderr, "soak: rank %d: FAILED after %d ops, %d wrong: %v\n", rank, r.opsRun, r.wrong, err)
		if rank == 0 {
			line, _ := json.Marshal(summary{Soak: "failed", Transport: transportName(), Algo: algoName(cfg), Ranks: world, Seed: cfg.seed,
				Ops: cfg.ops, Errors: 1, Wrong: r.wrong, WallS: time.Since(start).Seconds(), MaxBytes: cfg.maxBytes})
			fmt.Fprintln(stdout, string(line))
		}
		g.Close()
		return 1
	}

	// Gather every rank's counts and compare the fp16 digests of each group.
	agree, err := r.checkDigests()
	if err != nil {
		fmt.Fprintf(stderr, "soak: rank %d: digest exchange: %v\n", rank, err)
		g.Close()
		return 1
	}
	counts := make([]float32, 4*world)
	mine := counts[4*rank : 4*rank+4]
	mine[0], mine[1] = float32(r.opsRun), float32(r.wrong)
	mine[2], mine[3] = float32(r.bytes>>24), float32(r.bytes&(1<<24-1)) // exact as two parts
	if err := g.AllGather(ctx, counts); err != nil {
		fmt.Fprintf(stderr, "soak: rank %d: gathering counts: %v\n", rank, err)
		g.Close()
		return 1
	}
	if err := g.Barrier(ctx); err != nil {
		fmt.Fprintf(stderr, "soak: rank %d: final barrier: %v\n", rank, err)
		g.Close()
		return 1
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	serr := g.Shutdown(sctx)
	cancel()
	wall := time.Since(start)
	g.Close()
	if serr != nil {
		fmt.Fprintf(stderr, "soak: rank %d: Shutdown: %v\n", rank, serr)
		return 1
	}

	s := summary{Soak: "done", Transport: transportName(), Algo: algoName(cfg), Ranks: world, Seed: cfg.seed, Ops: cfg.ops,
		OpsRun: make([]int, world), WrongByRank: make([]int, world), Kinds: map[string]int{},
		FP16MaxRel: r.fp16MaxRel, DigestsAgree: agree, WallS: math.Round(wall.Seconds()*1000) / 1000, MaxBytes: cfg.maxBytes}
	for q := range world {
		c := counts[4*q : 4*q+4]
		s.OpsRun[q] = int(c[0])
		s.WrongByRank[q] = int(c[1])
		s.Wrong += int(c[1])
		s.Bytes += int64(c[2])<<24 + int64(c[3])
	}
	s.Kinds, s.Async, s.SubgroupOps = r.kinds, r.async, r.subOps
	fmt.Fprintf(stdout, "soak: rank %d: %d ops of %d, %d wrong, %.1f MiB, %v, transport %s, fp16 digests agree: %v\n",
		rank, r.opsRun, cfg.ops, r.wrong, float64(r.bytes)/(1<<20), wall.Round(time.Millisecond), s.Transport, agree)
	if rank == 0 {
		kinds := make([]string, 0, len(s.Kinds))
		for k, v := range s.Kinds {
			kinds = append(kinds, fmt.Sprintf("%s=%d", k, v))
		}
		sort.Strings(kinds)
		fmt.Fprintf(stdout, "soak: %d ranks, %d ops (%s; %d async, %d on subgroups), %.1f GiB moved by all ranks, %d wrong, %d errors, %.1f s\n",
			world, s.Ops, strings.Join(kinds, " "), s.Async, s.SubgroupOps, float64(s.Bytes)/(1<<30), s.Wrong, s.Errors, s.WallS)
		line, _ := json.Marshal(s)
		fmt.Fprintln(stdout, string(line))
	}
	if r.wrong > 0 || !agree {
		return 1
	}
	return 0
}

// simHosts names the host of every rank, perHost to a host in rank order (nil for 0).
func simHosts(perHost int) []string {
	if perHost <= 0 {
		return nil
	}
	world, _ := strconv.Atoi(os.Getenv("WORLD_SIZE"))
	hosts := make([]string, world)
	for r := range hosts {
		hosts[r] = "sim" + strconv.Itoa(r/perHost)
	}
	return hosts
}

// algoName is the AllReduce algorithm setting the job ran with.
func algoName(c *config) string {
	if c.algo != "" {
		return c.algo
	}
	if a := os.Getenv(collective.AlgoEnv); a != "" {
		return a
	}
	return "auto"
}

func transportName() string {
	// On one host the links are shared memory unless gorun turned it off
	// (--shm off), then they are GORUN_TRANSPORT's kind.
	if os.Getenv("GORUN_SHM") == "off" {
		if t := os.Getenv("GORUN_TRANSPORT"); t != "" {
			return t
		}
	}
	if os.Getenv("GORUN_SHM") != "" {
		return "shm"
	}
	if t := os.Getenv("GORUN_TRANSPORT"); t != "" {
		return t
	}
	return "auto"
}

// gorunTransportFlags are gorun's flags for a soak transport on one host: "shm" forces
// shared memory; any other (quic, tls, tcp) turns shared memory off so that the links
// really are of that kind.
func gorunTransportFlags(tr string) []string {
	if tr == "shm" {
		return []string{"--shm", "require"}
	}
	return []string{"--transport", tr, "--shm", "off"}
}

// namesRank reports whether err's message names world rank v ("rank v" as a whole word).
func namesRank(err error, v int) bool {
	if err == nil {
		return false
	}
	var pe *transport.PeerError
	if errors.As(err, &pe) && pe.Rank == v {
		return true
	}
	return regexp.MustCompile(`\brank ` + strconv.Itoa(v) + `\b`).MatchString(err.Error())
}

// setErr records the first failure and when it was seen.
func (r *runner) setErr(err error) {
	r.firstErr.Lock()
	defer r.firstErr.Unlock()
	if r.firstErr.err == nil {
		r.firstErr.err, r.firstErr.t = err, time.Now()
		close(r.failed)
	}
}

func (r *runner) soak() error {
	// Subgroups: every member creates them in plan order.
	for gi := 1; gi < len(r.p.groups); gi++ {
		if r.p.member(gi, r.rank) < 0 {
			continue
		}
		sg, err := r.groups[0].Subgroup(r.ctx, r.p.groups[gi])
		if err != nil {
			err = fmt.Errorf("Subgroup(%v): %w", r.p.groups[gi], err)
			r.setErr(err)
			return err
		}
		r.groups[gi] = sg
	}
	for {
		oo, ok := r.p.nextOp()
		if !ok {
			break
		}
		o := &oo
		i := o.index
		r.kinds[o.label()]++
		if o.async && o.kind != kSendRecv {
			r.async++
		}
		if o.group != 0 {
			r.subOps++
		}
		if r.cfg.verbose {
			fmt.Fprintf(r.errOut, "soak: rank %d: %v waits %v\n", r.rank, o, o.waits)
		}
		if err := r.issue(o); err != nil {
			r.setErr(err)
			return err
		}
		for _, w := range o.waits {
			if err := r.wait(w); err != nil {
				r.setErr(err)
				return err
			}
		}
		select {
		case <-r.failed: // a Send/Recv goroutine failed
			return r.firstErr.err
		default:
		}
		if r.cfg.progress > 0 && (i+1)%r.cfg.progress == 0 {
			fmt.Fprintf(r.errOut, "soak: rank %d: %d/%d ops, %d wrong\n", r.rank, i+1, r.p.ops, r.wrong)
		}
	}
	if len(r.inflight) != 0 {
		return fmt.Errorf("internal: %d ops never waited for", len(r.inflight))
	}
	if r.wrong > 0 {
		return nil // reported by run through the counts
	}
	return nil
}

// issue starts o on this rank (if it takes part) and, if it is synchronous, checks it.
func (r *runner) issue(o *op) error {
	if !r.p.involves(o, r.rank) {
		return nil
	}
	r.opsRun++
	g := r.groups[o.group]
	members := r.p.groups[o.group]
	me := r.p.member(o.group, r.rank)
	pd := &pending{o: o}
	r.bytes += 4 * int64(o.count)
	var opts []collective.ReduceOption
	if o.fp16 {
		opts = append(opts, collective.FP16)
	}
	switch o.kind {
	case kAllReduce, kReduceScatter:
		pd.buf = make([]float32, o.count)
		fillInts(pd.buf, stream(r.p.seed, o.index, r.rank, purposeInput), o.mag)
		if o.kind == kAllReduce {
			if o.async {
				pd.work = g.AllReduceAsync(r.ctx, pd.buf, o.red, opts...)
			} else if err := g.AllReduce(r.ctx, pd.buf, o.red, opts...); err != nil {
				return fmt.Errorf("%v: %w", o, err)
			}
		} else {
			if o.async {
				pd.work = g.ReduceScatterAsync(r.ctx, pd.buf, o.red, opts...)
			} else if err := g.ReduceScatter(r.ctx, pd.buf, o.red, opts...); err != nil {
				return fmt.Errorf("%v: %w", o, err)
			}
		}
	case kAllGather:
		pd.buf = make([]float32, o.count)
		m := o.count / len(members)
		fillBits(pd.buf, stream(r.p.seed, o.index, r.rank, purposeGarbage))
		fillBits(pd.buf[me*m:(me+1)*m], stream(r.p.seed, o.index, r.rank, purposeInput))
		if o.async {
			pd.work = g.AllGatherAsync(r.ctx, pd.buf)
		} else if err := g.AllGather(r.ctx, pd.buf); err != nil {
			return fmt.Errorf("%v: %w", o, err)
		}
	case kBroadcast:
		pd.buf = make([]float32, o.count)
		if me == o.root {
			fillBits(pd.buf, stream(r.p.seed, o.index, r.rank, purposeInput))
		} else {
			fillBits(pd.buf, stream(r.p.seed, o.index, r.rank, purposeGarbage))
		}
		if o.async {
			pd.work = g.BroadcastAsync(r.ctx, pd.buf, o.root)
		} else if err := g.Broadcast(r.ctx, pd.buf, o.root); err != nil {
			return fmt.Errorf("%v: %w", o, err)
		}
	case kBarrier:
		if err := g.Barrier(r.ctx); err != nil {
			return fmt.Errorf("%v: %w", o, err)
		}
		return nil
	case kBroadcastBytes:
		var data []byte
		if me == o.root {
			data = msgBytes(r.p.seed, o, r.rank, 4*o.count)
		}
		got, err := g.BroadcastBytes(r.ctx, data, o.root)
		if err != nil {
			return fmt.Errorf("%v: %w", o, err)
		}
		r.checkBytes(o, members, got, msgBytes(r.p.seed, o, members[o.root], 4*o.count))
		return nil
	case kAllGatherBytes:
		got, err := g.AllGatherBytes(r.ctx, msgBytes(r.p.seed, o, r.rank, msgLen(r.p.seed, o, r.rank)))
		if err != nil {
			return fmt.Errorf("%v: %w", o, err)
		}
		if len(got) != len(members) {
			r.wrongResult(o, members, fmt.Sprintf("%d messages, want %d", len(got), len(members)))
			return nil
		}
		for k, wr := range members {
			if !r.checkBytes(o, members, got[k], msgBytes(r.p.seed, o, wr, msgLen(r.p.seed, o, wr))) {
				break
			}
		}
		return nil
	case kAgree:
		var mine error
		if o.fails&(1<<me) != 0 {
			mine = fmt.Errorf("soak: planned failure of rank %d in op %d", r.rank, o.index)
		}
		vals, err := g.Agree(r.ctx, msgBytes(r.p.seed, o, r.rank, msgLen(r.p.seed, o, r.rank)), mine)
		var ae *collective.AgreementError
		switch {
		case o.fails == 0 && err != nil:
			return fmt.Errorf("%v: %w", o, err)
		case o.fails == 0:
			for k, wr := range members {
				if k >= len(vals) || !r.checkBytes(o, members, vals[k], msgBytes(r.p.seed, o, wr, msgLen(r.p.seed, o, wr))) {
					break
				}
			}
		case !errors.As(err, &ae):
			if err == nil {
				r.wrongResult(o, members, fmt.Sprintf("Agree returned values although members %b failed", o.fails))
				return nil
			}
			return fmt.Errorf("%v: %w", o, err) // the exchange itself failed
		default:
			var want, got []int
			for k, wr := range members {
				if o.fails&(1<<k) != 0 {
					want = append(want, wr)
				}
			}
			for _, f := range ae.Failed {
				got = append(got, f.Rank)
				if !strings.Contains(f.Msg, fmt.Sprintf("planned failure of rank %d in op %d", f.Rank, o.index)) {
					r.wrongResult(o, members, fmt.Sprintf("rank %d's failure reads %q", f.Rank, f.Msg))
					return nil
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) || (mine != nil) != errors.Is(err, mine) {
				r.wrongResult(o, members, fmt.Sprintf("AgreementError names ranks %v, want %v (own error found: %v): %v", got, want, errors.Is(err, mine), err))
			}
		}
		return nil
	case kSendRecv:
		pd.buf = make([]float32, o.count)
		send := me == o.src
		peer := o.dst
		if send {
			fillBits(pd.buf, stream(r.p.seed, o.index, r.rank, purposeInput))
		} else {
			peer = o.src
			fillBits(pd.buf, stream(r.p.seed, o.index, r.rank, purposeGarbage))
		}
		// Messages of one (sender, receiver, tag) must go in plan order on both sides: each
		// waits for the previous one on its channel.
		key := [3]int{members[o.src], members[o.dst], o.tag}
		prev := r.p2pPrev[key]
		done := make(chan struct{})
		r.p2pPrev[key] = done
		pd.p2p = make(chan error, 1)
		go func() {
			defer close(done)
			if prev != nil {
				<-prev
			}
			var err error
			if send {
				err = g.Send(r.ctx, pd.buf, peer, o.tag)
			} else {
				err = g.Recv(r.ctx, pd.buf, peer, o.tag)
			}
			if err != nil {
				err = fmt.Errorf("%v: %w", o, err)
				r.setErr(err)
			}
			pd.p2p <- err
		}()
	}
	if o.async {
		r.inflight[o.index] = pd
		return nil
	}
	return r.check(pd)
}

// wait waits for the earlier op index (if this rank issued it) and checks it.
func (r *runner) wait(index int) error {
	pd := r.inflight[index]
	if pd == nil {
		return nil // not a member
	}
	delete(r.inflight, index)
	var err error
	if pd.work != nil {
		err = pd.work.Wait(r.ctx)
	} else {
		select {
		case err = <-pd.p2p:
		case <-r.failed:
			// Another op failed first; this one may never finish (its peer may be gone).
			r.firstErr.Lock()
			err = r.firstErr.err
			r.firstErr.Unlock()
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("%v: %w", pd.o, err)
	}
	return r.check(pd)
}

// check compares a completed op's buffer with the independent computation.
func (r *runner) check(pd *pending) error {
	o := pd.o
	members := r.p.groups[o.group]
	n := len(members)
	me := r.p.member(o.group, r.rank)
	if o.index == r.cfg.corruptOp {
		if lo, hi := checkedRange(o, me, n); hi > lo {
			pd.buf[lo] = math.Float32frombits(math.Float32bits(pd.buf[lo]) ^ 1)
		}
	}
	var bad *mismatch
	switch o.kind {
	case kAllReduce, kReduceScatter:
		lo, hi := 0, o.count
		q := n
		if o.kind == kReduceScatter {
			m := o.count / n
			lo, hi = me*m, (me+1)*m
			q = n - 1
		}
		want, abs := reduceExpect(r.p.seed, o, members, lo, hi)
		got := pd.buf[lo:hi]
		if o.kind == kAllReduce && r.groups[o.group].Algorithm(o.count, collective.FP16) != "ring" {
			q = n + 2 // the other algorithms quantize a value at most n+2 times (collective.AllReduce)
		}
		if o.fp16 {
			bound := fp16Bound(o.red, q, n, abs)
			bad = compareBound(got, want, lo, bound)
			for j := range got {
				if e := math.Abs(float64(got[j]) - float64(want[j])); e > 0 {
					r.fp16MaxRel = max(r.fp16MaxRel, e/max(bound, math.SmallestNonzeroFloat64))
				}
			}
			if o.kind == kAllReduce {
				h := fnv.New64a()
				h.Write(f32Bytes(got))
				r.digest[o.group] = mix(r.digest[o.group]^h.Sum64()) + uint64(o.index)
			}
		} else {
			bad = compareBits(got, want, lo)
		}
	case kAllGather:
		m := o.count / n
		for k, wr := range members {
			want := make([]float32, m)
			fillBits(want, stream(r.p.seed, o.index, wr, purposeInput))
			if bad = compareBits(pd.buf[k*m:(k+1)*m], want, k*m); bad != nil {
				break
			}
		}
	case kBroadcast:
		want := make([]float32, o.count)
		fillBits(want, stream(r.p.seed, o.index, members[o.root], purposeInput))
		bad = compareBits(pd.buf, want, 0)
	case kSendRecv:
		if me == o.dst {
			want := make([]float32, o.count)
			fillBits(want, stream(r.p.seed, o.index, members[o.src], purposeInput))
			bad = compareBits(pd.buf, want, 0)
		}
	}
	if bad != nil {
		r.wrongResult(o, members, bad.String())
	}
	return nil
}

// msgLen is the length of member r's message in a byte collective whose messages differ in
// length: up to 4·count bytes.
func msgLen(seed uint64, o *op, r int) int {
	if o.count == 0 {
		return 0
	}
	return int(stream(seed, o.index, r, purposeInput+10) % uint64(4*o.count+1))
}

// msgBytes is world rank r's message of n bytes for op o.
func msgBytes(seed uint64, o *op, r, n int) []byte {
	b := make([]byte, n)
	key := stream(seed, o.index, r, purposeInput)
	for j := 0; j < n; j += 8 {
		v := mix(key + uint64(j)*0x9e3779b97f4a7c15)
		for k := 0; k < 8 && j+k < n; k++ {
			b[j+k] = byte(v >> (8 * k))
		}
	}
	return b
}

// checkBytes compares a received message; false (and a wrong result) if it differs.
func (r *runner) checkBytes(o *op, members []int, got, want []byte) bool {
	if o.index == r.cfg.corruptOp && len(got) > 0 {
		got = append([]byte(nil), got...)
		got[0] ^= 1
	}
	if len(got) == len(want) && string(got) == string(want) {
		return true
	}
	first := 0
	for first < min(len(got), len(want)) && got[first] == want[first] {
		first++
	}
	r.wrongResult(o, members, fmt.Sprintf("message of %d bytes, want %d; first difference at byte %d", len(got), len(want), first))
	return false
}

func (r *runner) wrongResult(o *op, members []int, what string) {
	r.wrong++
	if r.reports < r.cfg.maxReports {
		r.reports++
		fmt.Fprintf(r.errOut, "soak: rank %d: WRONG RESULT seed=%d %v members=%v: %s\n", r.rank, r.p.seed, o, members, what)
	}
}

// checkedRange is the part of o's buffer that member me checks.
func checkedRange(o *op, me, n int) (lo, hi int) {
	switch o.kind {
	case kReduceScatter:
		m := o.count / n
		return me * m, (me + 1) * m
	case kSendRecv:
		if me != o.dst {
			return 0, 0
		}
	case kBarrier:
		return 0, 0
	}
	return 0, o.count
}

// checkDigests compares, for every group of which this rank is a member, the fp16 AllReduce
// digest with the other members' (an AllGather of 4 × 16 bits per member).
func (r *runner) checkDigests() (bool, error) {
	agree := true
	for gi, g := range r.groups {
		if g == nil {
			continue
		}
		n := g.Size()
		buf := make([]float32, 4*n)
		d := r.digest[gi]
		for k := range 4 {
			buf[4*g.Rank()+k] = float32(uint16(d >> (16 * k)))
		}
		if err := g.AllGather(r.ctx, buf); err != nil {
			return false, fmt.Errorf("group %v: %w", r.p.groups[gi], err)
		}
		for q := 1; q < n; q++ {
			for k := range 4 {
				if buf[4*q+k] != buf[k] {
					if agree {
						fmt.Fprintf(r.errOut, "soak: rank %d: group %v: fp16 AllReduce results differ between members (digest of group rank %d ≠ rank 0's)\n",
							r.rank, r.p.groups[gi], q)
					}
					agree = false
				}
			}
		}
	}
	return agree, nil
}

// f32Bytes views a float32 slice as bytes (little-endian machines only, as collective).
func f32Bytes(b []float32) []byte {
	out := make([]byte, 4*len(b))
	for i, v := range b {
		u := math.Float32bits(v)
		out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return out
}
