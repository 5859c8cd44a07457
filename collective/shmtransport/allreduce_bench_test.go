package shmtransport_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
)

// The child "allreduce-static" runs one rank of a real collective.Group over a static
// shared-memory ring (no base transport) and prints one JSON line of per-iteration times.
func init() {
	shmtransport.RegisterChild("allreduce-static", allreduceStaticChild)
}

type childResult struct {
	Rank  int     `json:"rank"`
	Times []int64 `json:"times_ns"`
	OK    bool    `json:"ok"`
}

func atoi(k string) int { v, _ := strconv.Atoi(os.Getenv(k)); return v }

func allreduceStaticChild() error {
	rank, n := atoi("AR_RANK"), atoi("AR_N")
	count, iters, ring := atoi("AR_BYTES")/4, atoi("AR_ITERS"), atoi("AR_RING")
	tr, err := shmtransport.OpenStaticRing(os.Getenv("AR_DIR"), strings.Split(os.Getenv("AR_NAMES"), ","), rank, n, ring, shmtransport.Wait(atoi("AR_WAIT")))
	if err != nil {
		return err
	}
	defer tr.Close()
	ctx := context.Background()
	g, err := collective.New(ctx, tr, collective.Options{ChunkBytes: atoi("AR_CHUNK")})
	if err != nil {
		return err
	}
	defer g.Close()
	return runAllReduce(ctx, g, rank, n, count, iters)
}

// runAllReduce times iters AllReduces (after one warm-up) of count float32 on g and prints a
// childResult; every rank adds rank+1, so the exact result is n(n+1)/2 everywhere.
func runAllReduce(ctx context.Context, g *collective.Group, rank, n, count, iters int) error {
	buf := make([]float32, count)
	res := childResult{Rank: rank, OK: true}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	want := float32(n * (n + 1) / 2)
	for i := -1; i < iters; i++ {
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
			res.Times = append(res.Times, time.Since(start).Nanoseconds())
		}
		if buf[0] != want || buf[count-1] != want || buf[count/2] != want {
			res.OK = false
		}
	}
	b, _ := json.Marshal(res)
	fmt.Println(string(b))
	return nil
}

// runRanks starts n children with role and per-rank env, releases them together, and returns
// the slowest rank's time of each iteration.
func runRanks(tb testing.TB, n int, role string, env func(rank int) []string) []time.Duration {
	tb.Helper()
	var cmds []*exec.Cmd
	var outs []*bufio.Reader
	var ins []io.WriteCloser
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), shmtransport.EnvChild+"="+role)
		cmd.Env = append(cmd.Env, env(i)...)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds, outs, ins = append(cmds, cmd), append(outs, bufio.NewReader(out)), append(ins, in)
	}
	for i := range n {
		if l, err := outs[i].ReadString('\n'); err != nil || l != "ready\n" {
			tb.Fatalf("rank %d: %q %v", i, l, err)
		}
	}
	for i := range n {
		io.WriteString(ins[i], "go\n")
	}
	var worst []time.Duration
	for i := range n {
		l, err := outs[i].ReadString('\n')
		if err != nil {
			tb.Fatalf("rank %d: %v", i, err)
		}
		var r childResult
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			tb.Fatalf("rank %d said %q", i, l)
		}
		if !r.OK {
			tb.Fatalf("rank %d: wrong AllReduce result", i)
		}
		for j, t := range r.Times {
			if j >= len(worst) {
				worst = append(worst, 0)
			}
			worst[j] = max(worst[j], time.Duration(t))
		}
		cmds[i].Wait()
	}
	return worst
}

func busbw(bytes int, n int, d time.Duration) float64 {
	return float64(bytes) / d.Seconds() / 1e9 * 2 * float64(n-1) / float64(n)
}

func report(b *testing.B, bytes, n int, times []time.Duration) {
	s := slices.Clone(times)
	slices.Sort(s)
	med := s[len(s)/2]
	b.ReportMetric(busbw(bytes, n, med), "busbw_GB/s")
	b.ReportMetric(busbw(bytes, n, s[0]), "best_busbw_GB/s")
	b.ReportMetric(float64(med.Microseconds()), "median_us")
}

// BenchmarkAllReduceStatic: 64 MiB fp32 AllReduce of the real collective.Group over static
// shared-memory rings between separate processes (no base transport involved). b.N is the
// number of timed iterations per rank.
func BenchmarkAllReduceStatic(b *testing.B) {
	needShm(b)
	const bytes = 64 << 20
	ring := atoiDefault("AR_RING", shmtransport.DefaultRingBytes)
	chunk := atoiDefault("AR_CHUNK", 0)
	for _, n := range []int{2, 4} {
		for _, wait := range []shmtransport.Wait{shmtransport.WaitSpinThenBlock, shmtransport.WaitBlock} {
			b.Run(fmt.Sprintf("n=%d/wait=%s", n, wait), func(b *testing.B) {
				dir, err := os.MkdirTemp(shmtransport.DefaultDir, "rtshm-bench-")
				if err != nil {
					b.Fatal(err)
				}
				defer os.RemoveAll(dir)
				names, err := shmtransport.CreateRingSegments(dir, n, ring)
				if err != nil {
					b.Fatal(err)
				}
				times := runRanks(b, n, "allreduce-static", func(r int) []string {
					return []string{"AR_DIR=" + dir, "AR_NAMES=" + strings.Join(names, ","),
						fmt.Sprintf("AR_RANK=%d", r), fmt.Sprintf("AR_N=%d", n), fmt.Sprintf("AR_BYTES=%d", bytes),
						fmt.Sprintf("AR_ITERS=%d", b.N), fmt.Sprintf("AR_RING=%d", ring), fmt.Sprintf("AR_WAIT=%d", int(wait)),
						fmt.Sprintf("AR_CHUNK=%d", chunk)}
				})
				report(b, bytes, n, times)
			})
		}
	}
}

func atoiDefault(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return d
}
