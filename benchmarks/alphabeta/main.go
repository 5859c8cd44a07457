// Command alphabeta measures the α-β costs the collective tuner models algorithms with and
// prints them as a tuner table (JSON, the format of collective/alphabeta.json and of
// GORUN_TUNER_FILE):
//
//	go run ./benchmarks/alphabeta > collective/alphabeta.json
//
// For each link kind it can start in this process (mem: in-process pipes; quic: QUIC on
// 127.0.0.1; shm: shared memory wrapped around QUIC), two ranks measure
//
//	alpha_us  half the median round trip of a 64-byte ping-pong (one message's latency)
//	gbps      bytes / time of a 8 MiB exchange in both directions at once (what one ring
//	          link carries while both ranks send and receive), median of --iters
//
// and reduce_gbps is the speed of adding float32 vectors (bytes of one operand per second).
// tcp and tls are carried over from the committed table (placeholders until the data links
// that carry them can be started here). Both ranks share this machine's cores: the figures
// are what one pair of ranks gets on an otherwise idle machine, no more.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

func main() {
	iters := flag.Int("iters", 200, "ping-pongs per kind")
	bwIters := flag.Int("bw-iters", 10, "bandwidth exchanges per kind")
	bwBytes := flag.Int("bw-bytes", 8<<20, "bytes per bandwidth exchange")
	flag.Parse()
	ctx := context.Background()
	table := collective.DefaultTunerTable()
	out := &collective.TunerTable{Links: map[string]collective.LinkCost{}}
	for k, v := range table.Links {
		out.Links[k] = v
	}
	for _, kind := range []string{"mem", "quic", "shm"} {
		ts, closeAll, err := start(ctx, kind)
		if err != nil {
			fmt.Fprintf(os.Stderr, "alphabeta: %s: %v (kept the committed figures)\n", kind, err)
			continue
		}
		c, err := measure(ctx, ts, *iters, *bwIters, *bwBytes)
		closeAll()
		if err != nil {
			fmt.Fprintf(os.Stderr, "alphabeta: %s: %v (kept the committed figures)\n", kind, err)
			continue
		}
		fmt.Fprintf(os.Stderr, "%-5s alpha %.1f us, %.3f GB/s\n", kind, c.AlphaUS, c.GBps)
		out.Links[kind] = c
	}
	out.ReduceGBps = reduceSpeed()
	out.Source = fmt.Sprintf("go run ./benchmarks/alphabeta, %s, %d cores, GOMAXPROCS %d (2 ranks in one process); tcp, tls: carried over",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOMAXPROCS(0))
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.Encode(out)
}

func start(ctx context.Context, kind string) ([]transport.Transport, func(), error) {
	switch kind {
	case "mem":
		ts := memtransport.AsTransports(memtransport.New(2))
		return ts, func() {
			for _, t := range ts {
				t.Close()
			}
		}, nil
	case "quic", "shm":
		qs, err := quictransport.StartLocal(ctx, 2, quictransport.Config{})
		if err != nil {
			return nil, nil, err
		}
		var ts []transport.Transport
		for _, q := range qs {
			if kind == "quic" {
				ts = append(ts, q)
				continue
			}
			s, err := shmtransport.Wrap(q, shmtransport.Options{Mode: shmtransport.ModeShm})
			if err != nil {
				return nil, nil, err
			}
			ts = append(ts, s)
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
