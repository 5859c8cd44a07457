package collective

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

// fabric starts the transports of an n-rank job for a test. kill simulates the crash of a
// rank (nil if the fabric cannot). Tests run over every fabric in fabrics() unless they need
// something only one has.
type fabric struct {
	name string
	// maxRanks bounds the job sizes this fabric is used for (0: no bound), to keep slow
	// fabrics to the sizes that matter.
	maxRanks int
	start    func(t testing.TB, n int) (ts []transport.Transport, kill func(rank int))
}

var memFabric = fabric{
	name: "mem",
	start: func(t testing.TB, n int) ([]transport.Transport, func(int)) {
		// A small window: the algorithms must not depend on the transport's buffering.
		ts := memtransport.NewWithOptions(n, memtransport.Options{Window: 4096})
		t.Cleanup(func() {
			for _, tr := range ts {
				tr.Close()
			}
		})
		return memtransport.AsTransports(ts), func(r int) { ts[r].Kill() }
	},
}

// extraFabrics is filled by files that add transports (QUIC).
var extraFabrics []fabric

func fabrics() []fabric { return append([]fabric{memFabric}, extraFabrics...) }

// job is an n-rank group under test.
type job struct {
	t      testing.TB
	ts     []transport.Transport
	groups []*Group
	kill   func(int)
}

const testDeadline = 45 * time.Second

// startJob makes the world groups of an n-rank job over f.
func startJob(t testing.TB, f fabric, n int, opts Options) *job {
	t.Helper()
	opts = suiteOptions(n, opts)
	ts, kill := f.start(t, n)
	j := &job{t: t, ts: ts, groups: make([]*Group, n), kill: kill}
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.groups[r], errs[r] = New(ctx, ts[r], opts)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("New on rank %d: %v", r, err)
		}
	}
	t.Cleanup(j.closeAll)
	return j
}

// closeAll closes every rank's group at once, as separate processes would.
func (j *job) closeAll() {
	var wg sync.WaitGroup
	for _, g := range j.groups {
		wg.Go(func() { g.Close() })
	}
	wg.Wait()
}

// each runs f on every rank concurrently and returns the errors by rank. It fails the test if
// the ranks do not all return within the test deadline.
func (j *job) each(f func(r int, g *Group) error) []error {
	j.t.Helper()
	return eachGroup(j.t, j.groups, f)
}

func eachGroup(t testing.TB, groups []*Group, f func(r int, g *Group) error) []error {
	t.Helper()
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for r, g := range groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[r] = f(r, g)
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testDeadline):
		buf := make([]byte, 1<<20)
		t.Fatalf("ranks did not finish within %v; goroutines:\n%s", testDeadline, buf[:runtime.Stack(buf, true)])
	}
	return errs
}

// mustEach is each, failing the test on any error.
func (j *job) mustEach(f func(r int, g *Group) error) {
	j.t.Helper()
	for r, err := range j.each(f) {
		if err != nil {
			j.t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	t.Cleanup(cancel)
	return ctx
}

// randomInput returns rank r's input for a test: values of mixed sign and magnitude.
func randomInput(seed uint64, r, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 10)
	}
	return v
}

// reference computes the reduction of inputs in float64, plus Σ|x| per element (the scale
// of the float32 rounding error).
func reference(inputs [][]float32, op Op) (ref, absSum []float64) {
	n := len(inputs[0])
	ref, absSum = make([]float64, n), make([]float64, n)
	for i := range n {
		acc := float64(inputs[0][i])
		abs := math.Abs(acc)
		for _, in := range inputs[1:] {
			x := float64(in[i])
			abs += math.Abs(x)
			switch op {
			case Max:
				if x > acc || math.IsNaN(x) {
					acc = x
				}
			case Min:
				if x < acc || math.IsNaN(x) {
					acc = x
				}
			default:
				acc += x
			}
		}
		if op == Avg {
			acc /= float64(len(inputs))
			abs /= float64(len(inputs))
		}
		ref[i], absSum[i] = acc, abs
	}
	return ref, absSum
}

// checkFP32 checks got against the float64 reference within float32 accumulation error:
// each of the n-1 additions rounds by at most 2^-24 of a partial sum bounded by Σ|x|.
func checkFP32(t testing.TB, what string, got []float32, ref, absSum []float64, n int) {
	t.Helper()
	for i := range got {
		tol := float64(n) * 0x1p-24 * absSum[i]
		if d := math.Abs(float64(got[i]) - ref[i]); !(d <= tol) {
			t.Fatalf("%s: element %d = %g, reference %g (diff %g > tolerance %g)", what, i, got[i], ref[i], d, tol)
		}
	}
}

// sameBits checks that every rank holds bit-identical results.
func sameBits(t testing.TB, what string, bufs [][]float32) {
	t.Helper()
	for r := 1; r < len(bufs); r++ {
		for i := range bufs[0] {
			if math.Float32bits(bufs[r][i]) != math.Float32bits(bufs[0][i]) {
				t.Fatalf("%s: rank %d element %d = %g, rank 0 has %g: results differ between ranks", what, r, i, bufs[r][i], bufs[0][i])
			}
		}
	}
}

func clone(v []float32) []float32 { return append([]float32(nil), v...) }

// largeCount is the large, prime (so not divisible by any group size) element count of the
// tests; smaller under the race detector, where the plain run covers the full size.
func largeCount() int {
	if raceEnabled {
		return 30011
	}
	return 100003
}

// testCounts are the element counts every collective is tested with for n ranks: empty, one
// element, fewer than n (some segments empty), a small prime and a large prime.
func testCounts(n int) []int {
	set := map[int]bool{0: true, 1: true, n - 1: true, 13: true, largeCount(): true}
	var out []int
	for _, c := range []int{0, 1, n - 1, 13, largeCount()} {
		if set[c] {
			out = append(out, c)
			delete(set, c)
		}
	}
	return out
}

// noLeaks fails the test if goroutines of this package are still running when it ends
// (after the Cleanups that close groups and transports).
func noLeaks(t *testing.T) {
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			buf := make([]byte, 1<<20)
			stacks := string(buf[:runtime.Stack(buf, true)])
			var leaked []string
			for _, gs := range strings.Split(stacks, "\n\n") {
				if strings.Contains(gs, "ringtrain/collective.") && !strings.Contains(gs, "_test.go") {
					leaked = append(leaked, gs)
				}
			}
			if len(leaked) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines of package collective still running after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

func fabricSizes(f fabric, sizes []int) []int {
	var out []int
	for _, n := range sizes {
		if f.maxRanks == 0 || n <= f.maxRanks {
			out = append(out, n)
		}
	}
	return out
}

func name(f fabric, n int) string { return fmt.Sprintf("%s/N=%d", f.name, n) }
