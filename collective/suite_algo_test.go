package collective

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// The shared suite (every test that starts its job with startJob and no algorithm of its
// own) runs with whatever algorithm the environment asks for, so that one suite proves
// every algorithm:
//
//	RINGTRAIN_TEST_ALGO=rd        Options.Algorithm for jobs that set none (ring, rd, rhd,
//	                              hier, auto); GORUN_ALGO works too, also outside this package
//	RINGTRAIN_TEST_PER_HOST=2     jobs that give no Options.Hosts act as if their ranks sat
//	                              2 to a host, in rank order, where that makes more than one
//	                              host of equal size (what the hierarchical algorithm needs)
//
// TestSuiteEveryAlgorithm runs the suite that way for each algorithm, in child processes.
const (
	testAlgoEnv    = "RINGTRAIN_TEST_ALGO"
	testPerHostEnv = "RINGTRAIN_TEST_PER_HOST"
)

// suiteOptions applies RINGTRAIN_TEST_ALGO and RINGTRAIN_TEST_PER_HOST to a job's options.
func suiteOptions(n int, opts Options) Options {
	if a := os.Getenv(testAlgoEnv); a != "" && opts.Algorithm == "" {
		opts.Algorithm = a
	}
	if l, _ := strconv.Atoi(os.Getenv(testPerHostEnv)); l > 1 && opts.Hosts == nil && n%l == 0 && n/l > 1 {
		opts.Hosts = seqHosts(n, l)
	}
	return opts
}

// shmFabric: QUIC on 127.0.0.1 forms the job, every link takes shared memory (small rings,
// so that the algorithms cannot rely on buffering), as ranks of one host do under gorun.
var shmFabric = fabric{
	name:     "shm",
	maxRanks: 5,
	start: func(t testing.TB, n int) ([]transport.Transport, func(int)) {
		if runtime.GOOS != "linux" {
			t.Skip("shared-memory links need Linux")
		}
		dir, err := os.MkdirTemp(shmtransport.DefaultDir, "rtshm-collective-")
		if err != nil {
			t.Skipf("no shared-memory directory: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		log := slog.New(slog.DiscardHandler)
		qs, err := quictransport.StartLocal(ctx, n, quictransport.Config{PeerTimeout: 5 * time.Second, Logger: log})
		if err != nil {
			os.RemoveAll(dir)
			t.Fatalf("quictransport.StartLocal(%d): %v", n, err)
		}
		ss := make([]*shmtransport.Transport, n)
		ts := make([]transport.Transport, n)
		for r, q := range qs {
			if ss[r], err = shmtransport.Wrap(q, shmtransport.Options{Mode: shmtransport.ModeShm, Dir: dir, RingBytes: 64 << 10, Logger: log}); err != nil {
				t.Fatalf("shmtransport.Wrap rank %d: %v", r, err)
			}
			ts[r] = ss[r]
		}
		t.Cleanup(func() {
			for _, s := range ss {
				s.Close()
			}
			os.RemoveAll(dir)
		})
		return ts, func(r int) { ss[r].Close() }
	},
}

// testShmEnv=1 adds shmFabric to fabrics() (TestSuiteEveryAlgorithm sets it for the data
// tests, and for the failure stories of every algorithm but hier). hier's failure stories do
// not run over it: there its internal groups' ops (a local ReduceScatter) meet the mismatch
// before the header lap does, so some ranks report the internal op's mismatch (naming the
// right ranks and field) instead of the caller's AllReduce.
const testShmEnv = "RINGTRAIN_TEST_SHM"

func init() {
	if os.Getenv(testShmEnv) == "1" {
		extraFabrics = append(extraFabrics, shmFabric)
	}
}

// chunkMaximaFor is chunkMaxima for the chunking of algorithm alg: the ring's chunks, and
// for the other algorithms (which cut the buffer into other segments) the largest w within
// chunkElems−1 elements on either side, which bounds every chunk of at most chunkElems
// elements that holds the element.
func chunkMaximaFor(alg string, w []float64, n, chunkElems int) []float64 {
	if alg == "ring" {
		return chunkMaxima(w, n, chunkElems)
	}
	out := make([]float64, len(w))
	for i := range w {
		for j := max(0, i-chunkElems+1); j < min(len(w), i+chunkElems); j++ {
			if v := w[j]; v-v == 0 && v > out[i] { // finite
				out[i] = v
			}
		}
	}
	return out
}

// fp16BoundFor is fp16Bound for algorithm alg: the other algorithms quantize a value at
// most n+2 times (recursive doubling: log2 p + the fold; hier: each phase's ranks), Avg
// still divides by n.
func fp16BoundFor(alg string, a float64, n int, op Op) float64 {
	if alg == "ring" || n == 1 {
		return fp16Bound(a, n, op)
	}
	b := fp16Bound(a, n+2, Sum)
	if op == Avg {
		b /= float64(n)
	}
	return b
}

// suiteDataTests are the shared suite's tests of results: every collective, sizes 0, 1,
// primes and counts not divisible by N, every op, fp16 (bound, non-finite values,
// feedback), async ops in flight, sub-groups, byte collectives; over memory, QUIC and shared
// memory. suiteFailureTests are its failure stories (mismatches, a killed peer, shutdown),
// over the same (shared memory but for hier).
const (
	suiteDataTests    = "^(TestAllReduce|TestReduceScatter|TestAllGather|TestBroadcast|TestBarrier|TestAsyncOpsInOrder|TestSubgroups|TestAllReduceFP16Bound|TestAllReduceFP16NonFinite|TestFeedbackRunningSum|TestBroadcastBytes|TestAgree|TestSignedZeroMaxMin)$"
	suiteFailureTests = "^(TestCountMismatch|TestOpMismatch|TestKilledPeer|TestShutdownThenClose|TestChunkBytesMismatchFP16|TestMismatchFailsEveryRank)$"
	suiteShortTests   = "^(TestAllReduce|TestAsyncOpsInOrder|TestSubgroups|TestAllReduceFP16Bound|TestSignedZeroMaxMin)$"
)

// suiteFullEnv=1 makes TestSuiteEveryAlgorithm run the whole suite.
const suiteFullEnv = "RINGTRAIN_SUITE_FULL"

// TestSuiteEveryAlgorithm runs the shared suite once per algorithm (ring, rd, rhd, hier
// over 2-rank simulated hosts, oneshot, rdoneshot and auto over 2-rank hosts), each in child processes of this
// test binary. By default (CI) only the AllReduce data tests run, over memory and QUIC; the
// whole suite, shared memory included (a few minutes on 2 cores):
//
//	RINGTRAIN_SUITE_FULL=1 go test ./collective -run TestSuiteEveryAlgorithm -v
func TestSuiteEveryAlgorithm(t *testing.T) {
	if os.Getenv(testAlgoEnv) != "" {
		t.Skip("already a child run")
	}
	if raceEnabled {
		t.Skip("the suite runs under -race once, with the default algorithm")
	}
	type part struct{ run, shm string }
	for _, c := range []struct{ algo, perHost string }{
		{"ring", ""}, {"rd", ""}, {"rhd", ""}, {"hier", "2"}, {"oneshot", ""}, {"rdoneshot", "2"}, {"auto", "2"},
	} {
		t.Run(c.algo, func(t *testing.T) {
			parts := []part{{suiteShortTests, ""}}
			if os.Getenv(suiteFullEnv) == "1" {
				failShm := "1"
				if c.algo == "hier" {
					failShm = "" // see testShmEnv
				}
				parts = []part{{suiteDataTests, "1"}, {suiteFailureTests, failShm}}
			}
			for _, p := range parts {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+p.run, "-test.count=1")
				cmd.Env = append(os.Environ(), testAlgoEnv+"="+c.algo, testPerHostEnv+"="+c.perHost, testShmEnv+"="+p.shm)
				var out bytes.Buffer
				cmd.Stdout, cmd.Stderr = &out, &out
				err := cmd.Run()
				cancel()
				what := fmt.Sprintf("%s=%s %s=%s %s=%s -test.run=%s", testAlgoEnv, c.algo, testPerHostEnv, c.perHost, testShmEnv, p.shm, p.run)
				if err != nil {
					t.Fatalf("the suite with %s: %v\n%s", what, err, tail(out.String(), 60))
				}
				if !strings.Contains(out.String(), "PASS") {
					t.Fatalf("the suite with %s printed no PASS:\n%s", what, tail(out.String(), 60))
				}
			}
		})
	}
}

// TestSignedZeroMaxMin: Max and Min over inputs mixing −0 and +0 (which compare equal)
// leave every rank bit-identical, whatever the algorithm: partners of recursive doubling
// reduce in the same order.
func TestSignedZeroMaxMin(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{2, 3, 4, 5}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{ChunkBytes: 256})
				negZero := float32(math.Copysign(0, -1))
				for _, comp := range []Compression{NoCompression, FP16} {
					for _, op := range []Op{Max, Min} {
						const count = 301
						bufs := make([][]float32, n)
						j.mustEach(func(r int, g *Group) error {
							bufs[r] = make([]float32, count)
							for i := range bufs[r] {
								if (i+r)%2 == 0 {
									bufs[r][i] = negZero
								}
							}
							return g.AllReduce(ctxT(t), bufs[r], op, comp)
						})
						sameBits(t, fmt.Sprintf("AllReduce(count=%d, %v, %v) of ±0 with %s", count, op, comp, j.groups[0].Algorithm(count, comp)), bufs)
					}
				}
			})
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
