// Command allreduce measures the collective package's collectives the way nccl-tests does:
// a sweep of buffer sizes, each timed over many iterations, reported as time, algorithm
// bandwidth and bus bandwidth, with the error against a known reference. AllReduce by
// default; --collective picks others (reducescatter, allgather, broadcast, reduce, gather,
// scatter, alltoall, or a list timed interleaved) and --dtype the element types (fp32, fp16,
// fp64, int32, int64); every JSON line names both ("op", "dtype"), and busbw uses the
// nccl-tests factor of its collective (the table is in collectives.go).
//
// Run it on every rank of a job through gorun (which sets RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT, GORUN_TOKEN), or with --local N to start N ranks inside this one process over
// QUIC on 127.0.0.1 (quictransport.StartLocal), or --local N --mem over the in-process
// transport (no network: the cost of the algorithm alone):
//
//	go run ./benchmarks/allreduce --local 4 --min 4KiB --max 64MiB --baseline
//	go run ./cmd/gorun --nproc 4 ./benchmarks/allreduce -- --json --dtype fp32,fp16
//	go run ./cmd/gorun --nproc 2 ./benchmarks/allreduce -- --min 64MiB --compress none,fp16,bf16
//
// Figures:
//
//	bytes      size of the float32 buffer reduced (also with --dtype fp16 or bf16, where half
//	           as many bytes travel: rows of one size compare directly in time)
//	time_us    median over --iters of one AllReduce's wall time, the largest over ranks
//	algbw_gbs  bytes / time_us
//	busbw_gbs  algbw × 2(N−1)/N for AllReduce: what each rank's link carries per second in
//	           a ring (nccl-tests convention), comparable across N and with link_gbs; the
//	           factor of each other collective is in collectives.go (1 for broadcast and
//	           reduce, (N−1)/N for the others)
//	max_rel_err  max |result − reference| / max |reference| over all elements and ranks
//
// Several dtypes (--dtype fp32,fp16) and the baseline are timed interleaved, one iteration of
// each in turn, so that a busy machine slows them alike and their ratios stay meaningful.
//
// With --baseline each size is also measured as a raw ring exchange over the same transport:
// every rank streams that many bytes to its right neighbour while receiving as many from its
// left, with no reduction ("op":"ring-exchange", link_gbs = bytes / time): the ceiling a ring
// collective's busbw can reach on this transport. It writes --chunk bytes at a time unless
// --exchange-write says otherwise; the ring writes up to 4 MiB of ready chunks at once, so its
// ceiling is an exchange with writes that large (write_bytes says which ran).
//
// Through gorun every row also carries job_cpu_us: the sum over ranks of each rank's median
// CPU time per iteration (what bounds throughput where ranks outnumber cores), and
// --cpuprofile FILE takes %r for the rank, one profile per rank.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/stack"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/jobenv"
)

type config struct {
	min, max   int64
	factor     int
	dtypes     []string
	colls      []string // --collective
	op         collective.Op
	iters      int
	warmup     int
	json       bool
	baseline   bool
	local      int
	mem        bool
	chunk      int
	timeout    time.Duration
	cpuprofile string
	exWrite    int64    // --exchange-write: bytes per Write of the raw exchange (0: the chunk size)
	algos      []string // --algo: one group per algorithm; "" = the package default
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "allreduce:", err)
		os.Exit(2)
	}
	if cfg.cpuprofile != "" {
		// Through gorun every rank runs this: %r in the name becomes the rank, one file each.
		f, err := os.Create(strings.ReplaceAll(cfg.cpuprofile, "%r", os.Getenv(jobenv.Rank)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "allreduce: --cpuprofile:", err)
			os.Exit(2)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	if err := run(context.Background(), cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "allreduce:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func parseFlags(args []string, errOut io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("allreduce", flag.ContinueOnError)
	fs.SetOutput(errOut)
	minS := fs.String("min", "4KiB", "smallest buffer size (bytes; suffixes KiB, MiB, GiB, or K, M, G, all binary)")
	maxS := fs.String("max", "64MiB", "largest buffer size")
	fs.IntVar(&c.factor, "factor", 2, "size multiplier between steps of the sweep")
	dtypeS := fs.String("dtype", "fp32", "element type: fp32, fp16 or bf16 (float32 AllReduce with FP16 / BF16 compression; other collectives skip them), fp64, int32, int64, or a comma-separated list (timed interleaved)")
	compressS := fs.String("compress", "", "the compressions of --dtype by their names: none, fp16, bf16 or a comma-separated list (none reports as dtype fp32); excludes --dtype")
	collS := fs.String("collective", "allreduce", "collective: "+strings.Join(collectives, ", ")+", or a comma-separated list (timed interleaved)")
	opS := fs.String("op", "sum", "reduction: sum, avg, max or min")
	fs.IntVar(&c.iters, "iters", 20, "timed iterations per size")
	fs.IntVar(&c.warmup, "warmup", 5, "untimed iterations per size before timing")
	fs.BoolVar(&c.json, "json", false, "print one JSON object per line (rank 0) instead of a table")
	fs.BoolVar(&c.baseline, "baseline", false, "also measure the raw ring exchange over the same transport (op ring-exchange)")
	fs.IntVar(&c.local, "local", 0, "run N ranks in this process over QUIC on 127.0.0.1 instead of joining a job from the environment")
	fs.BoolVar(&c.mem, "mem", false, "with --local: use the in-process transport instead of QUIC")
	fs.IntVar(&c.chunk, "chunk", 0, "collective.Options.ChunkBytes (0: the package default)")
	fs.DurationVar(&c.timeout, "timeout", 0, "collective.Options.Timeout (0: the package default)")
	exWriteS := fs.String("exchange-write", "", "bytes per Write of the raw exchange (--baseline); empty: the chunk size (--chunk). The ring writes up to 4 MiB of ready chunks at once, so its ceiling is an exchange with writes as large")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "write a CPU profile of this process to the file; %r in the name becomes the rank ($RANK), so that every rank of a job writes its own")
	algoS := fs.String("algo", "", "AllReduce algorithms to time interleaved, comma-separated: ring, rd, rhd, hier, oneshot, rdoneshot, auto (empty: GORUN_ALGO or the package default); the JSON's algo says what ran")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: allreduce [flags]\n\nnccl-tests style AllReduce sweep; see the package doc.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	c.algos = []string{""}
	if *algoS != "" {
		c.algos = strings.Split(*algoS, ",")
	}
	var err error
	if c.min, err = parseSize(*minS); err != nil {
		return c, fmt.Errorf("--min: %w", err)
	}
	if *exWriteS != "" {
		if c.exWrite, err = parseSize(*exWriteS); err != nil {
			return c, fmt.Errorf("--exchange-write: %w", err)
		}
	}
	if c.max, err = parseSize(*maxS); err != nil {
		return c, fmt.Errorf("--max: %w", err)
	}
	if c.min > c.max {
		return c, fmt.Errorf("--min %s is larger than --max %s", *minS, *maxS)
	}
	if c.factor < 2 {
		return c, fmt.Errorf("--factor %d: want at least 2", c.factor)
	}
	dtypeFlag := "--dtype"
	if *compressS != "" {
		if *dtypeS != "fp32" {
			return c, errors.New("--compress and --dtype exclude each other (--compress none,bf16 is --dtype fp32,bf16)")
		}
		names := strings.Split(*compressS, ",")
		for i, nm := range names {
			switch nm {
			case "none":
				names[i] = "fp32"
			case "fp16", "bf16":
			default:
				return c, fmt.Errorf("--compress %q: want none, fp16, bf16 or a list of them", *compressS)
			}
		}
		dtypeFlag, *dtypeS = "--compress", strings.Join(names, ",")
	}
	for _, coll := range strings.Split(*collS, ",") {
		if !slices.Contains(collectives, coll) {
			return c, fmt.Errorf("--collective %q: want %s, or a list of them", *collS, strings.Join(collectives, ", "))
		}
		if slices.Contains(c.colls, coll) {
			return c, fmt.Errorf("--collective %q: %s listed twice", *collS, coll)
		}
		c.colls = append(c.colls, coll)
	}
	for _, dt := range strings.Split(*dtypeS, ",") {
		if !slices.Contains(dtypes, dt) {
			return c, fmt.Errorf("%s %q: want %s or a list of them", dtypeFlag, *dtypeS, strings.Join(dtypes, ", "))
		}
		if slices.Contains(c.dtypes, dt) {
			return c, fmt.Errorf("--dtype %q: %s listed twice", *dtypeS, dt)
		}
		c.dtypes = append(c.dtypes, dt)
	}
	switch *opS {
	case "sum":
		c.op = collective.Sum
	case "avg":
		c.op = collective.Avg
	case "max":
		c.op = collective.Max
	case "min":
		c.op = collective.Min
	default:
		return c, fmt.Errorf("--op %q: want sum, avg, max or min", *opS)
	}
	if !slices.ContainsFunc(c.dtypes, func(dt string) bool { return !compressed(dt) }) && !slices.Contains(c.colls, "allreduce") {
		return c, fmt.Errorf("%s %s: compression applies to --collective allreduce only", dtypeFlag, *dtypeS)
	}
	if c.iters < 1 {
		return c, fmt.Errorf("--iters %d: want at least 1", c.iters)
	}
	if c.warmup < 0 {
		return c, fmt.Errorf("--warmup %d: want 0 or more", c.warmup)
	}
	if c.local < 0 {
		return c, fmt.Errorf("--local %d: want a number of ranks", c.local)
	}
	if c.mem && c.local == 0 {
		return c, errors.New("--mem needs --local N")
	}
	if c.chunk < 0 {
		return c, fmt.Errorf("--chunk %d: want 0 (default) or a size in bytes", c.chunk)
	}
	return c, nil
}

// parseSize reads "4096", "4KiB", "4K", "64MiB", "1GiB" (binary multiples, case-insensitive).
// The size must be a positive multiple of 4 (whole float32s).
func parseSize(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffixes []string
		m        int64
	}{
		{[]string{"gib", "gb", "g"}, 1 << 30},
		{[]string{"mib", "mb", "m"}, 1 << 20},
		{[]string{"kib", "kb", "k"}, 1 << 10},
		{[]string{"b"}, 1},
	} {
		found := false
		for _, suf := range u.suffixes {
			if strings.HasSuffix(t, suf) {
				t, mult, found = strings.TrimSpace(strings.TrimSuffix(t, suf)), u.m, true
				break
			}
		}
		if found {
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, optionally with KiB, MiB or GiB", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	n *= mult
	if n%4 != 0 {
		return 0, fmt.Errorf("size %q = %d bytes is not a whole number of float32s (a multiple of 4)", s, n)
	}
	return n, nil
}

func (c config) sizes() []int64 {
	var out []int64
	for s := c.min; s <= c.max; s *= int64(c.factor) {
		out = append(out, s)
		if s > math.MaxInt64/int64(c.factor) {
			break
		}
	}
	return out
}

// rankCtx is what one rank benchmarks with.
type rankCtx struct {
	g     *collective.Group
	t     transport.Transport
	algos []*collective.Group // by cfg.algos
}

func (c config) groupOptions() collective.Options {
	return collective.Options{ChunkBytes: c.chunk, Timeout: c.timeout}
}

// run starts the ranks this process hosts (all of them with --local, one otherwise) and
// benchmarks each.
func run(ctx context.Context, cfg config, out io.Writer) error {
	var ts []transport.Transport
	label := "quic"
	switch {
	case cfg.local > 0 && cfg.mem:
		label = "mem"
		ts = memtransport.AsTransports(memtransport.New(cfg.local))
	case cfg.local > 0:
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		qs, err := quictransport.StartLocal(sctx, cfg.local, quictransport.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		cancel()
		if err != nil {
			return err
		}
		for _, q := range qs {
			ts = append(ts, q)
		}
	default:
		// Through gorun: the transports users get from collective.InitFromEnv (composed by
		// package stack from --transport, --shm, --iface and GORUN_STREAMS); the groups and
		// the --baseline exchange run over these same links.
		st, err := stack.FromEnv(ctx, nil)
		if err != nil {
			return err
		}
		label = st.Settings.String()
		ts = []transport.Transport{st}
	}
	defer func() {
		// The groups do not own these transports: drain them before closing.
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		for _, t := range ts {
			if s, ok := t.(transport.Shutdowner); ok {
				s.Shutdown(sctx)
			}
			t.Close()
		}
	}()
	ranks := make([]rankCtx, len(ts))
	errs := make([]error, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() {
			ranks[i].t = t
			ranks[i].g, errs[i] = collective.New(ctx, t, cfg.groupOptions())
			for _, a := range cfg.algos {
				if errs[i] != nil {
					return
				}
				if a == "" {
					ranks[i].algos = append(ranks[i].algos, ranks[i].g)
					continue
				}
				o := cfg.groupOptions()
				o.Name, o.Algorithm = "algo-"+a, a
				var ag *collective.Group
				ag, errs[i] = collective.New(ctx, t, o)
				ranks[i].algos = append(ranks[i].algos, ag)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, rc := range ranks {
		wg.Go(func() {
			var w io.Writer = io.Discard
			if rc.t.Rank() == 0 {
				w = out
			}
			if err := benchRank(ctx, cfg, rc, label, w); err != nil {
				errs[i] = fmt.Errorf("rank %d: %w", rc.t.Rank(), err)
			}
			// Leave in order (every byte sent is read before anyone closes), then free.
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			for _, ag := range rc.algos {
				if ag != rc.g {
					ag.Shutdown(sctx)
				}
			}
			rc.g.Shutdown(sctx)
			cancel()
			for _, ag := range rc.algos {
				ag.Close()
			}
			rc.g.Close()
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// row is one JSON line of the output.
type row struct {
	Op        string  `json:"op"`
	Algo      string  `json:"algo,omitempty"` // the AllReduce algorithm that ran (the tuner's choice with auto)
	Ranks     int     `json:"ranks"`
	Bytes     int64   `json:"bytes"`
	Dtype     string  `json:"dtype"`
	Reduce    string  `json:"reduce,omitempty"`
	TimeUS    float64 `json:"time_us"`
	MinUS     float64 `json:"min_us"`
	MaxUS     float64 `json:"max_us"`
	AlgBWGBs  float64 `json:"algbw_gbs"`
	BusBWGBs  float64 `json:"busbw_gbs"`
	LinkGBs   float64 `json:"link_gbs,omitempty"`
	MaxRelErr float64 `json:"max_rel_err"`
	Iters     int     `json:"iters"`
	Transport string  `json:"transport"`
	// Links says what carries rank 0's links, by peer ("1:tls,3:tls"); through gorun only.
	Links      string `json:"links,omitempty"`
	ChunkBytes int    `json:"chunk_bytes"`
	// WriteBytes is the raw exchange's bytes per Write (exchange rows only).
	WriteBytes int `json:"write_bytes,omitempty"`
	Cores      int `json:"cores"`
	// ProcessCPUUS is the median CPU time (user+system, all threads) the process used per
	// iteration, with --local only: all ranks' work for one op. Unlike time_us it hardly
	// depends on what else the machine runs.
	ProcessCPUUS float64 `json:"process_cpu_us,omitempty"`
	// JobCPUUS is, through gorun, the sum over ranks of each rank's median CPU time
	// (user+system, all threads) per iteration: the whole job's work for one op, which on a
	// machine with fewer cores than ranks bounds the throughput more than any link does, and
	// which hardly depends on what else runs there (the wake-ups and spinning included).
	JobCPUUS float64 `json:"job_cpu_us,omitempty"`
}

// variant is one thing timed at each size: a collective of one dtype, or the ring exchange.
type variant struct {
	coll  string // --collective
	bytes int64  // what the op moves (the size, rounded down to whole blocks for some)
	dtype string // "fp32", "fp16", "bf16", ..., or "raw" for the exchange
	algo  string // what ran (Group.Algorithm)
	asked string // what --algo asked for
	run   func() error
	times []float64
	cpu   []float64 // process CPU time per iteration (µs)
}

func benchRank(ctx context.Context, cfg config, rc rankCtx, label string, out io.Writer) error {
	g := rc.g
	n := g.Size()
	chunk := cfg.chunk
	if chunk == 0 {
		chunk = collective.DefaultChunkBytes
	}
	var ex *exchanger
	if cfg.baseline && n > 1 {
		var err error
		w := chunk
		if cfg.exWrite > 0 {
			w = int(cfg.exWrite)
		}
		if ex, err = newExchanger(ctx, rc.t, w, int(cfg.max)); err != nil {
			return err
		}
		defer ex.close()
	}
	if !cfg.json {
		fmt.Fprintf(out, "# ringtrain %s: %d ranks over %s, op %v, chunk %s, %d iterations (%d warm-up), median time; variants interleaved\n",
			strings.Join(cfg.colls, ","), n, label, cfg.op, human(int64(chunk)), cfg.iters, cfg.warmup)
		if cores := runtime.NumCPU(); cfg.local > 0 && n > cores {
			fmt.Fprintf(out, "# note: %d ranks share %d CPU cores in this process: the figures are CPU-bound\n", n, cores)
		}
		fmt.Fprintf(out, "%10s %10s %10s %10s %10s %11s %11s", "size", "dtype/algo", "time_us", "min_us", "max_us", "algbw_GB/s", "busbw_GB/s")
		if ex != nil {
			fmt.Fprintf(out, " %10s %9s", "link_GB/s", "bus/link")
		}
		fmt.Fprintf(out, " %12s", "max_rel_err")
		if cfg.local > 0 {
			fmt.Fprintf(out, " %10s", "cpu_ms/op")
		}
		fmt.Fprintln(out)
	}
	buf := make([]float32, cfg.max/4)
	enc := json.NewEncoder(out)
	for _, size := range cfg.sizes() {
		b := buf[:size/4]
		// Every variant is checked, warmed up, and then timed in turn, iteration by
		// iteration, so that they share whatever else the machine is doing.
		var vs []*variant
		relErr := map[string]float64{}
		for _, coll := range cfg.colls {
			if coll == "allreduce" {
				continue
			}
			for _, dt := range cfg.dtypes {
				if compressed(dt) {
					continue // compression is an AllReduce option
				}
				run, bytes, err := newRunner(ctx, g, coll, dt, size, cfg.op)
				if err != nil {
					return fmt.Errorf("%s %s %s: %w", coll, human(size), dt, err)
				}
				vs = append(vs, &variant{coll: coll, bytes: bytes, dtype: dt, algo: algoOf(coll), run: run})
			}
		}
		for ai, ag := range rc.algos {
			if !slices.Contains(cfg.colls, "allreduce") {
				break
			}
			for _, dt := range cfg.dtypes {
				if dt != "fp32" && !compressed(dt) {
					if ai > 0 {
						continue // the algorithms other than the ring are float32 only
					}
					run, bytes, err := newRunner(ctx, ag, "allreduce", dt, size, cfg.op)
					if err != nil {
						return fmt.Errorf("allreduce %s %s: %w", human(size), dt, err)
					}
					vs = append(vs, &variant{coll: "allreduce", bytes: bytes, dtype: dt, algo: "ring", run: run})
					continue
				}
				var opts []collective.ReduceOption
				switch dt {
				case "fp16":
					opts = append(opts, collective.FP16)
				case "bf16":
					opts = append(opts, collective.BF16)
				}
				e, err := checkOnce(ctx, ag, b, cfg.op, opts)
				if err != nil {
					return fmt.Errorf("%s %s %s: %w", human(size), dt, cfg.algos[ai], err)
				}
				v := &variant{coll: "allreduce", bytes: size, dtype: dt, algo: ag.Algorithm(len(b), opts...), asked: cfg.algos[ai],
					run: func() error { return ag.AllReduce(ctx, b, cfg.op, opts...) }}
				relErr[dt+"/"+v.asked] = e
				vs = append(vs, v)
			}
		}
		if ex != nil {
			vs = append(vs, &variant{bytes: size, dtype: "raw", run: func() error { return ex.exchange(int(size)) }})
		}
		for _, v := range vs {
			for range cfg.warmup {
				if err := v.run(); err != nil {
					return fmt.Errorf("%s %s: %w", human(size), v.dtype, err)
				}
			}
		}
		for range cfg.iters {
			for _, v := range vs {
				if v.dtype == "raw" {
					// The exchange has no header to line the ranks up: start together.
					if err := g.Barrier(ctx); err != nil {
						return err
					}
				}
				start, cpu0 := time.Now(), processCPU()
				if err := v.run(); err != nil {
					return fmt.Errorf("%s %s: %w", human(size), v.dtype, err)
				}
				v.times = append(v.times, float64(time.Since(start).Nanoseconds())/1e3)
				v.cpu = append(v.cpu, float64((processCPU()-cpu0).Nanoseconds())/1e3)
			}
		}
		rows := make([]row, len(vs))
		var link float64
		for i, v := range vs {
			med, lo, hi, err := acrossRanks(ctx, g, v.times)
			if err != nil {
				return err
			}
			r := row{Op: v.coll, Algo: v.algo, Ranks: n, Bytes: v.bytes, Dtype: v.dtype, Reduce: cfg.op.String(),
				TimeUS: med, MinUS: lo, MaxUS: hi, MaxRelErr: relErr[v.dtype+"/"+v.asked], Iters: cfg.iters,
				Transport: label, ChunkBytes: chunk, Cores: runtime.NumCPU()}
			if k := g.LinkKinds(); len(k) > 0 {
				r.Links = stack.KindsString(k)
			}
			if cfg.local > 0 {
				// With every rank in this process, its CPU time per op is the whole job's:
				// what a machine too busy to give the job its cores would charge.
				slices.Sort(v.cpu)
				r.ProcessCPUUS = v.cpu[len(v.cpu)/2]
			} else {
				slices.Sort(v.cpu)
				sum := []float32{float32(v.cpu[len(v.cpu)/2])}
				if err := g.AllReduce(ctx, sum, collective.Sum); err != nil {
					return err
				}
				r.JobCPUUS = float64(sum[0])
			}
			r.AlgBWGBs = float64(v.bytes) / med / 1e3
			r.BusBWGBs = r.AlgBWGBs * busFactor(v.coll, n)
			switch v.coll {
			case "allreduce", "reducescatter", "reduce":
			default:
				r.Reduce = ""
			}
			if v.dtype == "raw" {
				// Each rank moved size bytes over its link: the link rate is algbw, and it is
				// also the bus bandwidth of this "collective".
				link = r.AlgBWGBs
				r.Op, r.Reduce, r.BusBWGBs, r.LinkGBs = "ring-exchange", "", link, link
				r.WriteBytes = ex.chunk
			}
			rows[i] = r
		}
		for _, r := range rows {
			if cfg.json {
				enc.Encode(r)
				continue
			}
			dt := r.Dtype
			if r.Algo != "" {
				dt += "/" + r.Algo
			}
			if r.Op != "allreduce" && r.Op != "ring-exchange" {
				dt = r.Op + ":" + dt
			}
			fmt.Fprintf(out, "%10s %10s %10.1f %10.1f %10.1f %11.3f %11.3f", human(size), dt, r.TimeUS, r.MinUS, r.MaxUS, r.AlgBWGBs, r.BusBWGBs)
			if ex != nil {
				fmt.Fprintf(out, " %10.3f %9.2f", link, r.BusBWGBs/link)
			}
			fmt.Fprintf(out, " %12.3g", r.MaxRelErr)
			if cfg.local > 0 {
				fmt.Fprintf(out, " %10.1f", r.ProcessCPUUS/1e3)
			}
			fmt.Fprintln(out)
		}
	}
	return nil
}

// input is rank r's value at index i: a multiple of 2^-16 below 8.01 in magnitude with up to
// 19 significant bits, so that float32 sums over up to 31 ranks are exact (the fp32 error
// is 0) while fp16 (11 bits) and bf16 (8 bits) must round.
func input(r, i int) float32 {
	return float32((i*131+r*71)%1021-510)/64 + float32((i*7+r*3)%255)/65536
}

// checkOnce fills b with this rank's input, runs one AllReduce, and returns the largest
// error against the exact reference, relative to the reference's largest magnitude, over
// every rank.
func checkOnce(ctx context.Context, g *collective.Group, b []float32, op collective.Op, opts []collective.ReduceOption) (float64, error) {
	r, n := g.Rank(), g.Size()
	for i := range b {
		b[i] = input(r, i)
	}
	if err := g.AllReduce(ctx, b, op, opts...); err != nil {
		return 0, err
	}
	var maxErr, maxRef float64
	for i, got := range b {
		ref := float64(input(0, i))
		for q := 1; q < n; q++ {
			x := float64(input(q, i))
			switch op {
			case collective.Max:
				ref = max(ref, x)
			case collective.Min:
				ref = min(ref, x)
			default:
				ref += x
			}
		}
		if op == collective.Avg {
			ref /= float64(n)
		}
		if math.IsNaN(float64(got)) || math.IsInf(float64(got), 0) {
			return 0, fmt.Errorf("element %d is %g, the reference is %g", i, got, ref)
		}
		maxErr = max(maxErr, math.Abs(float64(got)-ref))
		maxRef = max(maxRef, math.Abs(ref))
	}
	rel := 0.0
	if maxRef > 0 {
		rel = maxErr / maxRef
	}
	e := []float32{float32(rel)}
	if err := g.AllReduce(ctx, e, collective.Max); err != nil {
		return 0, err
	}
	return float64(e[0]), nil
}

// acrossRanks returns the median, min and max of times, each the largest over the ranks
// (the slowest rank is the one everybody waits for).
func acrossRanks(ctx context.Context, g *collective.Group, times []float64) (med, lo, hi float64, err error) {
	s := slices.Clone(times)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	v := []float32{float32(m), float32(s[0]), float32(s[len(s)-1])}
	if err := g.AllReduce(ctx, v, collective.Max); err != nil {
		return 0, 0, 0, err
	}
	return float64(v[0]), float64(v[1]), float64(v[2]), nil
}

func human(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%dGiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", b>>10)
	}
	return fmt.Sprintf("%dB", b)
}
