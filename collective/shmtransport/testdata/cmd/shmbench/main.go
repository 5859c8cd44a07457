// Command shmbench measures a 64 MiB fp32 AllReduce (the collective package's ring, unchanged)
// over shared memory and over QUIC, with every rank a separate process that joins through the
// authenticated QUIC rendezvous, and, in the same run, PyTorch Gloo's all_reduce as the anchor
// (testdata/gloo_allreduce.py). For each rank count it runs gloo, quic and shm back to back,
// --rounds times, so that the three see the same machine load; it prints one JSON line per
// measurement and a summary table of busbw = bytes/time · 2(N-1)/N (nccl-tests convention).
//
//	go run ./collective/shmtransport/testdata/cmd/shmbench --ranks 2,4 --rounds 3
//
// With --baseline it also measures the raw ring exchange over each transport (every rank
// streams the buffer's size to its right neighbour while reading as much from its left, no
// reduction): the ceiling the AllReduce's busbw is to be compared with.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
)

const envRole = "SHMBENCH_ROLE"

// rankReport is what each rank process prints.
type rankReport struct {
	Rank     int     `json:"rank"`
	Left     string  `json:"left"`
	Right    string  `json:"right"`
	Times    []int64 `json:"times_ns"`
	Exchange []int64 `json:"exchange_ns,omitempty"`
	OK       bool    `json:"ok"`
}

// result is one printed measurement.
type result struct {
	Impl       string   `json:"impl"` // gloo, or ringtrain
	Transport  string   `json:"transport,omitempty"`
	Op         string   `json:"op"`
	Ranks      int      `json:"ranks"`
	Bytes      int      `json:"bytes"`
	Round      int      `json:"round"`
	Iters      int      `json:"iters"`
	TimeMedian float64  `json:"time_us_median"`
	TimeBest   float64  `json:"time_us_best"`
	BusMedian  float64  `json:"busbw_gbs_median"`
	BusBest    float64  `json:"busbw_gbs_best"`
	Edges      []string `json:"edges,omitempty"` // transport of each ring edge r -> r+1
	Correct    bool     `json:"correct"`
	Cores      int      `json:"cores"`
	Threads    int      `json:"threads_per_rank"` // GOMAXPROCS (Go) or torch threads (Gloo)
}

func main() {
	if os.Getenv(envRole) == "rank" {
		if err := rankMain(); err != nil {
			fmt.Fprintf(os.Stderr, "rank %s: %v\n", os.Getenv("RANK"), err)
			os.Exit(1)
		}
		return
	}
	ranks := flag.String("ranks", "2,4", "comma-separated rank counts")
	size := flag.Int("bytes", 64<<20, "AllReduce size in bytes (fp32)")
	iters := flag.Int("iters", 10, "timed iterations per measurement")
	warmup := flag.Int("warmup", 2, "untimed iterations first")
	rounds := flag.Int("rounds", 1, "repeat gloo, quic, shm this many times per rank count")
	transports := flag.String("transports", "quic,shm", "ringtrain transports to measure: GORUN_TRANSPORT values, shm optionally\nwith link options, e.g. shm/wait=block/sleep=futex/ring=1048576/spin=20us/publish=65536")
	gloo := flag.String("gloo", defaultGloo(), "path of gloo_allreduce.py; empty to skip Gloo")
	python := flag.String("python", "/usr/bin/python3", "Python with torch (Debian's python3-torch)")
	baseline := flag.Bool("baseline", false, "also measure the raw ring exchange over each transport")
	threads := flag.Int("threads-per-rank", 0, "GOMAXPROCS of every rank; 0 means cores / ranks (at least 1), as gorun does")
	flag.Parse()

	type key struct {
		impl string
		n    int
	}
	var summary = map[key][]float64{}
	var order []key
	add := func(r result) {
		b, _ := json.Marshal(r)
		fmt.Println(string(b))
		k := key{r.Impl, r.Ranks}
		if r.Transport != "" {
			k.impl = r.Op + "/" + r.Transport
		}
		if _, ok := summary[k]; !ok {
			order = append(order, k)
		}
		summary[k] = append(summary[k], r.BusMedian)
	}
	for _, s := range strings.Split(*ranks, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 2 {
			fatalf("--ranks: %q is not a rank count >= 2", s)
		}
		for round := range *rounds {
			if *gloo != "" {
				r, err := runGloo(*python, *gloo, n, *size, *iters, *warmup)
				if err != nil {
					fatalf("gloo, %d ranks: %v", n, err)
				}
				r.Round = round
				add(r)
			}
			for _, tr := range strings.Split(*transports, ",") {
				procs := *threads
				if procs <= 0 {
					procs = max(1, runtime.NumCPU()/n)
				}
				rs, err := runRanks(tr, n, procs, *size, *iters, *warmup, *baseline)
				if err != nil {
					fatalf("%s, %d ranks: %v", tr, n, err)
				}
				for _, r := range rs {
					r.Round = round
					add(r)
				}
			}
		}
	}
	fmt.Fprintf(os.Stderr, "\nbusbw GB/s (median of each measurement; %d cores; ranks beyond cores share them)\n", runtime.NumCPU())
	fmt.Fprintf(os.Stderr, "%-26s %5s  %s\n", "impl", "ranks", "per round")
	for _, k := range order {
		var parts []string
		for _, v := range summary[k] {
			parts = append(parts, fmt.Sprintf("%.3f", v))
		}
		line := fmt.Sprintf("%-26s %5d  %s", k.impl, k.n, strings.Join(parts, " "))
		if g, ok := summary[key{"gloo", k.n}]; ok && k.impl != "gloo" && len(g) == len(summary[k]) {
			var ratios []string
			for i, v := range summary[k] {
				ratios = append(ratios, fmt.Sprintf("%.2f", v/g[i]))
			}
			line += "   x gloo: " + strings.Join(ratios, " ")
		}
		fmt.Fprintln(os.Stderr, line)
	}
}

func defaultGloo() string {
	// Relative to the repository root or to this directory, whichever exists.
	for _, p := range []string{"collective/shmtransport/testdata/gloo_allreduce.py", "../../gloo_allreduce.py"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func fatalf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "shmbench: "+f+"\n", a...)
	os.Exit(1)
}

func runGloo(python, script string, n, size, iters, warmup int) (result, error) {
	cmd := exec.Command(python, script, "--ranks", strconv.Itoa(n), "--bytes", strconv.Itoa(size),
		"--iters", strconv.Itoa(iters), "--warmup", strconv.Itoa(warmup))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return result{}, err
	}
	var g struct {
		TimeMedian float64 `json:"time_us_median"`
		TimeBest   float64 `json:"time_us_best"`
		BusMedian  float64 `json:"busbw_gbs_median"`
		BusBest    float64 `json:"busbw_gbs_best"`
		Correct    bool    `json:"correct"`
	}
	if err := json.Unmarshal(out, &g); err != nil {
		return result{}, fmt.Errorf("gloo said %q: %v", out, err)
	}
	return result{Impl: "gloo", Op: "allreduce", Ranks: n, Bytes: size, Iters: iters, TimeMedian: g.TimeMedian,
		TimeBest: g.TimeBest, BusMedian: g.BusMedian, BusBest: g.BusBest, Correct: g.Correct, Cores: runtime.NumCPU(), Threads: 1}, nil
}

// runRanks runs one n-rank job over transport tr (separate processes, real rendezvous) and
// returns its AllReduce (and ring-exchange) results.
func runRanks(tr string, n, procs, size, iters, warmup int, baseline bool) ([]result, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	var tok [16]byte
	rand.Read(tok[:])
	mode, opts, _ := strings.Cut(tr, "/")
	reports := make([]rankReport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		cmd := exec.Command(self)
		cmd.Env = append(os.Environ(), envRole+"=rank", fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", n),
			"MASTER_ADDR=127.0.0.1", fmt.Sprintf("MASTER_PORT=%d", port), "GORUN_TOKEN="+hex.EncodeToString(tok[:]),
			fmt.Sprintf("GOMAXPROCS=%d", procs), "GORUN_TRANSPORT="+mode, "SHMBENCH_OPTS="+opts, fmt.Sprintf("SHMBENCH_BYTES=%d", size), fmt.Sprintf("SHMBENCH_ITERS=%d", iters),
			fmt.Sprintf("SHMBENCH_WARMUP=%d", warmup), fmt.Sprintf("SHMBENCH_BASELINE=%v", baseline))
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		wg.Go(func() {
			defer cmd.Wait()
			line, err := bufio.NewReader(out).ReadString('\n')
			if err != nil {
				errs[r] = fmt.Errorf("rank %d: %v", r, err)
				cmd.Process.Kill()
				return
			}
			if err := json.Unmarshal([]byte(line), &reports[r]); err != nil {
				errs[r] = fmt.Errorf("rank %d said %q", r, line)
			}
			io.Copy(io.Discard, out)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	edges := make([]string, n)
	ok := true
	for r, rep := range reports {
		edges[r] = rep.Right
		ok = ok && rep.OK
	}
	mk := func(op string, per func(rankReport) []int64, factor float64) result {
		worst := make([]float64, len(per(reports[0])))
		for _, rep := range reports {
			for i, t := range per(rep) {
				worst[i] = max(worst[i], float64(t))
			}
		}
		s := slices.Clone(worst)
		slices.Sort(s)
		med, best := s[len(s)/2], s[0]
		return result{Impl: "ringtrain", Transport: tr, Op: op, Ranks: n, Bytes: size, Iters: len(s),
			TimeMedian: med / 1e3, TimeBest: best / 1e3,
			BusMedian: float64(size) / med * factor, BusBest: float64(size) / best * factor,
			Edges: edges, Correct: ok, Cores: runtime.NumCPU(), Threads: procs}
	}
	out := []result{mk("allreduce", func(r rankReport) []int64 { return r.Times }, 2*float64(n-1)/float64(n))}
	if baseline {
		out = append(out, mk("ring-exchange", func(r rankReport) []int64 { return r.Exchange }, 1))
	}
	return out, nil
}

func envInt(k string) int {
	v, _ := strconv.Atoi(os.Getenv(k))
	return v
}

// rankMain is one rank: join, wrap, and time the AllReduces.
func rankMain() error {
	ctx := context.Background()
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	base, err := quictransport.Establish(ctx, cfg)
	if err != nil {
		return err
	}
	mode, err := shmtransport.ModeFromEnv()
	if err != nil {
		return err
	}
	o, err := linkOptions(os.Getenv("SHMBENCH_OPTS"))
	if err != nil {
		return err
	}
	o.Mode = mode
	tr, err := shmtransport.Wrap(base, o)
	if err != nil {
		return err
	}
	defer tr.Close()
	g, err := collective.New(ctx, tr, collective.Options{})
	if err != nil {
		return err
	}
	defer func() {
		// Leave in order: Close is prompt and local, so without the flush a rank that
		// finished first could cut its peer's last op (the group does not own tr).
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		g.Shutdown(sctx)
		tr.Shutdown(sctx)
		g.Close()
	}()
	n, rank := g.Size(), g.Rank()
	size, iters, warmup := envInt("SHMBENCH_BYTES"), envInt("SHMBENCH_ITERS"), envInt("SHMBENCH_WARMUP")
	rep := rankReport{Rank: rank, OK: true}
	if os.Getenv("SHMBENCH_BASELINE") == "true" {
		if rep.Exchange, err = exchange(ctx, tr, g, size, iters, warmup); err != nil {
			return err
		}
	}
	buf := make([]float32, size/4)
	want := float32(n * (n + 1) / 2)
	for i := -warmup; i < iters; i++ {
		for j := range buf {
			buf[j] = float32(rank + 1)
		}
		if err := g.Barrier(ctx); err != nil {
			return err
		}
		start := time.Now()
		if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
			return err
		}
		if i >= 0 {
			rep.Times = append(rep.Times, time.Since(start).Nanoseconds())
		}
		for _, j := range []int{0, len(buf) / 3, len(buf) - 1} {
			if buf[j] != want {
				rep.OK = false
			}
		}
	}
	rep.Left, rep.Right = tr.Kind((rank+n-1)%n), tr.Kind((rank+1)%n)
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
	return nil
}

// linkOptions parses the link options of a transport variant ("wait=block/ring=1048576").
func linkOptions(s string) (shmtransport.Options, error) {
	var o shmtransport.Options
	for _, kv := range strings.Split(s, "/") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "wait":
			switch v {
			case "spin-then-block":
				o.Wait = shmtransport.WaitSpinThenBlock
			case "block":
				o.Wait = shmtransport.WaitBlock
			case "spin":
				o.Wait = shmtransport.WaitSpin
			default:
				err = fmt.Errorf("unknown wait %q", v)
			}
		case "ring":
			o.RingBytes, err = strconv.Atoi(v)
		case "publish":
			o.PublishBytes, err = strconv.Atoi(v)
		case "spin":
			o.SpinTime, err = time.ParseDuration(v)
		case "sleep":
			switch v {
			case "futex":
				o.SleepOnFutex = true
			case "socket":
			default:
				err = fmt.Errorf("unknown sleep %q (futex or socket)", v)
			}
		default:
			err = fmt.Errorf("unknown option %q", k)
		}
		if err != nil {
			return o, fmt.Errorf("transport option %q: %v", kv, err)
		}
	}
	return o, nil
}

// exchange streams size bytes to the right neighbour while reading size bytes from the left,
// in the collective's default chunk size, on a channel of its own.
func exchange(ctx context.Context, tr *shmtransport.Transport, g *collective.Group, size, iters, warmup int) ([]int64, error) {
	n, rank := g.Size(), g.Rank()
	right, err := tr.Link(ctx, (rank+1)%n, "shmbench.exchange")
	if err != nil {
		return nil, err
	}
	left := right
	if n > 2 {
		if left, err = tr.Link(ctx, (rank+n-1)%n, "shmbench.exchange"); err != nil {
			return nil, err
		}
	}
	chunk := collective.DefaultChunkBytes
	src, dst := make([]byte, size), make([]byte, size)
	var times []int64
	for i := -warmup; i < iters; i++ {
		if err := g.Barrier(ctx); err != nil {
			return nil, err
		}
		start := time.Now()
		errc := make(chan error, 1)
		go func() {
			for off := 0; off < size; off += chunk {
				if _, err := right.Write(src[off:min(off+chunk, size)]); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		for off := 0; off < size; off += chunk {
			if _, err := io.ReadFull(left, dst[off:min(off+chunk, size)]); err != nil {
				return nil, err
			}
		}
		if err := <-errc; err != nil {
			return nil, err
		}
		if i >= 0 {
			times = append(times, time.Since(start).Nanoseconds())
		}
	}
	return times, nil
}
