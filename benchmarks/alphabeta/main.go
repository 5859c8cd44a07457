// Command alphabeta measures the α-β costs the collective tuner models algorithms with and
// prints them as a tuner table (JSON, the format of collective/alphabeta.json and of
// GORUN_TUNER_FILE):
//
//	go run ./benchmarks/alphabeta > collective/alphabeta.json
//
// For each link kind (mem: in-process pipes; quic: QUIC on 127.0.0.1; shm: shared memory
// wrapped around QUIC; tcp and tls: the data links gorun uses between hosts, over
// 127.0.0.1, set up over QUIC as in a job), two ranks in this process measure
//
//	alpha_us  half the median round trip of a 64-byte ping-pong (one message's latency)
//	gbps      bytes / time of a 8 MiB exchange in both directions at once (what one ring
//	          link carries while both ranks send and receive), median of --iters
//
// reduce_gbps is the speed of adding float32 vectors (bytes of one operand per second), and
// op_us the fixed software cost of one collective op (a 1-element ring AllReduce of 2 ranks
// over in-process pipes, less its two messages' α).
// With --rounds R every kind is measured R times, interleaved (mem, quic, shm, tcp, tls, mem,
// ...) so that a change of load on a shared machine touches every kind alike, and the table
// keeps each figure's median over the rounds; every round's figures go to stderr. A kind
// left out of --kinds keeps the committed table's figures. Both ranks share this machine's
// cores: the figures are what one pair of ranks gets on this machine, no more.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/datalink"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

func main() {
	iters := flag.Int("iters", 200, "ping-pongs per kind")
	bwIters := flag.Int("bw-iters", 10, "bandwidth exchanges per kind")
	bwBytes := flag.Int("bw-bytes", 8<<20, "bytes per bandwidth exchange")
	rounds := flag.Int("rounds", 1, "measurements of every kind, interleaved; the table keeps the medians")
	kindList := flag.String("kinds", "mem,quic,shm,tcp,tls", "link kinds to measure (the others keep the committed figures)")
	flag.Parse()
	if *rounds < 1 || *iters < 1 || *bwIters < 1 || *bwBytes < 1 {
		fmt.Fprintln(os.Stderr, "alphabeta: --rounds, --iters, --bw-iters and --bw-bytes must be at least 1")
		os.Exit(2)
	}
	kinds := strings.Split(*kindList, ",")
	for _, k := range kinds {
		if _, _, err := start(context.Background(), k, true); err != nil {
			fmt.Fprintf(os.Stderr, "alphabeta: --kinds: %v\n", err)
			os.Exit(2)
		}
	}
	ctx := context.Background()
	table := collective.DefaultTunerTable()
	out := &collective.TunerTable{Links: map[string]collective.LinkCost{}}
	for k, v := range table.Links {
		out.Links[k] = v
	}
	alphas := map[string][]float64{}
	bws := map[string][]float64{}
	var reds, ops []float64
	for round := range *rounds {
		for _, kind := range kinds {
			kctx, cancel := context.WithTimeout(ctx, measureTimeout)
			ts, closeAll, err := start(kctx, kind, false)
			cancel()
			if err != nil {
				fmt.Fprintf(os.Stderr, "alphabeta: %s: %v (round %d skipped)\n", kind, err, round+1)
				continue
			}
			c, err := measure(ctx, ts, *iters, *bwIters, *bwBytes)
			closeAll()
			if err != nil {
				fmt.Fprintf(os.Stderr, "alphabeta: %s: %v (round %d skipped)\n", kind, err, round+1)
				continue
			}
			fmt.Fprintf(os.Stderr, "round %d %-5s alpha %.1f us, %.3f GB/s\n", round+1, kind, c.AlphaUS, c.GBps)
			alphas[kind] = append(alphas[kind], c.AlphaUS)
			bws[kind] = append(bws[kind], c.GBps)
		}
		r := reduceSpeed()
		fmt.Fprintf(os.Stderr, "round %d reduce %.3f GB/s\n", round+1, r)
		reds = append(reds, r)
		o, err := opCost(ctx, *iters)
		if err != nil {
			fmt.Fprintf(os.Stderr, "alphabeta: op cost: %v (round %d skipped)\n", err, round+1)
		} else {
			fmt.Fprintf(os.Stderr, "round %d op %.1f us\n", round+1, o)
			ops = append(ops, o)
		}
	}
	var measured []string
	for _, kind := range kinds {
		if len(alphas[kind]) == 0 {
			fmt.Fprintf(os.Stderr, "alphabeta: %s: no measurement (kept the committed figures)\n", kind)
			continue
		}
		out.Links[kind] = collective.LinkCost{AlphaUS: median(alphas[kind]), GBps: median(bws[kind])}
		measured = append(measured, kind)
	}
	out.ReduceGBps = median(reds)
	if len(ops) > 0 {
		out.OpUS = median(ops)
	}
	out.Source = fmt.Sprintf("go run ./benchmarks/alphabeta --rounds %d, %s, %d cores, GOMAXPROCS %d (2 ranks in one process); median of %d rounds of %s",
		*rounds, time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOMAXPROCS(0), *rounds, strings.Join(measured, ", "))
	if kept := keptKinds(out, measured); kept != "" {
		out.Source += "; " + kept + ": carried over"
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

// measureTimeout bounds the measurement of one kind in one round.
const measureTimeout = 2 * time.Minute

// keptKinds lists the table's kinds that this run did not measure.
func keptKinds(t *collective.TunerTable, measured []string) string {
	var kept []string
	for k := range t.Links {
		if !slices.Contains(measured, k) {
			kept = append(kept, k)
		}
	}
	slices.Sort(kept)
	return strings.Join(kept, ", ")
}

// start starts two ranks linked by kind; with check it only says whether kind is known.
func start(ctx context.Context, kind string, check bool) ([]transport.Transport, func(), error) {
	switch kind {
	case "mem", "quic", "shm", "tcp", "tls":
		if check {
			return nil, nil, nil
		}
	default:
		return nil, nil, fmt.Errorf("unknown link kind %q (want mem, quic, shm, tcp or tls)", kind)
	}
	switch kind {
	case "mem":
		ts := memtransport.AsTransports(memtransport.New(2))
		return ts, func() {
			for _, t := range ts {
				t.Close()
			}
		}, nil
	case "quic", "shm", "tcp", "tls":
		qs, err := quictransport.StartLocal(ctx, 2, quictransport.Config{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			return nil, nil, err
		}
		var ts []transport.Transport
		for _, q := range qs {
			var t transport.Transport
			switch kind {
			case "quic":
				t = q
			case "shm":
				t, err = shmtransport.Wrap(q, shmtransport.Options{Mode: shmtransport.ModeShm})
			case "tcp", "tls":
				// Shm false: both ranks share this host, and the data link must carry them.
				mode, _ := datalink.ParseMode(kind)
				t, err = datalink.Wrap(q, datalink.Options{Mode: mode, Logger: slog.New(slog.DiscardHandler)})
			}
			if err != nil {
				for _, q := range qs {
					q.Close()
				}
				return nil, nil, err
			}
			ts = append(ts, t)
		}
		return ts, func() {
			for _, t := range ts {
				t.Close()
			}
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown kind %q", kind)
}

func measure(ctx context.Context, ts []transport.Transport, iters, bwIters, bwBytes int) (collective.LinkCost, error) {
	links := make([]transport.Link, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() { links[r], errs[r] = ts[r].Link(ctx, 1-r, "alphabeta") })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return collective.LinkCost{}, err
		}
	}
	// A stuck peer fails the measurement instead of hanging it.
	deadline := time.Now().Add(measureTimeout)
	for _, l := range links {
		if err := l.SetDeadline(deadline); err != nil {
			return collective.LinkCost{}, err
		}
	}
	// Ping-pong.
	var rtts []float64
	wg.Go(func() {
		b := make([]byte, 64)
		for range iters + 20 {
			if _, err := io.ReadFull(links[1], b); err != nil {
				errs[1] = err
				return
			}
			if _, err := links[1].Write(b); err != nil {
				errs[1] = err
				return
			}
		}
	})
	b := make([]byte, 64)
	for i := range iters + 20 {
		t0 := time.Now()
		if _, err := links[0].Write(b); err != nil {
			return collective.LinkCost{}, err
		}
		if _, err := io.ReadFull(links[0], b); err != nil {
			return collective.LinkCost{}, err
		}
		if i >= 20 {
			rtts = append(rtts, time.Since(t0).Seconds())
		}
	}
	wg.Wait()
	if errs[1] != nil {
		return collective.LinkCost{}, errs[1]
	}
	// Bandwidth: both directions at once.
	var times []float64
	bufs := [2][]byte{make([]byte, bwBytes), make([]byte, bwBytes)}
	ins := [2][]byte{make([]byte, bwBytes), make([]byte, bwBytes)}
	for range bwIters + 1 {
		t0 := time.Now()
		for r := range 2 {
			wg.Go(func() {
				if _, err := links[r].Write(bufs[r]); err != nil {
					errs[r] = err
				}
			})
			wg.Go(func() {
				if _, err := io.ReadFull(links[r], ins[r]); err != nil {
					errs[r] = err
				}
			})
		}
		wg.Wait()
		if err := errs[0]; err != nil {
			return collective.LinkCost{}, err
		}
		times = append(times, time.Since(t0).Seconds())
	}
	times = times[1:]
	return collective.LinkCost{AlphaUS: round(median(rtts) / 2 * 1e6), GBps: round(float64(bwBytes) / median(times) / 1e9)}, nil
}

// opCost is the fixed software cost of one collective op, in µs: the median time of a
// 1-element AllReduce (ring) between 2 ranks over in-process pipes, less its two messages'
// α (the mem row's, measured the same way as the others).
func opCost(ctx context.Context, iters int) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, measureTimeout)
	defer cancel()
	ts := memtransport.AsTransports(memtransport.New(2))
	defer func() {
		for _, t := range ts {
			t.Close()
		}
	}()
	gs := make([]*collective.Group, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Go(func() { gs[r], errs[r] = collective.New(ctx, ts[r], collective.Options{Algorithm: "ring"}) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return 0, err
		}
	}
	defer func() {
		for _, g := range gs {
			g.Close()
		}
	}()
	var times []float64
	for i := range iters + 20 {
		t0 := time.Now()
		for r := range 2 {
			wg.Go(func() { errs[r] = gs[r].AllReduce(ctx, []float32{1}, collective.Sum) })
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return 0, err
			}
		}
		if i >= 20 {
			times = append(times, time.Since(t0).Seconds())
		}
	}
	alpha := collective.DefaultTunerTable().Links["mem"].AlphaUS
	return round(max(0, median(times)*1e6-2*alpha)), nil
}

func reduceSpeed() float64 {
	a, b := make([]float32, 1<<20), make([]float32, 1<<20)
	var ts []float64
	for range 20 {
		t0 := time.Now()
		for i := range a {
			a[i] += b[i]
		}
		ts = append(ts, time.Since(t0).Seconds())
	}
	return round(4 << 20 / median(ts) / 1e9)
}

func median(v []float64) float64 {
	slices.Sort(v)
	return v[len(v)/2]
}

func round(x float64) float64 {
	return float64(int64(x*1000+0.5)) / 1000
}
