package shmtransport

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The ring-exchange benchmark runs each rank as a separate process (re-executed test binary)
// and measures the raw link ceiling: every rank streams to its right neighbour while reading
// from its left, no reduction, as in the guide's "ring-exchange" baseline. The parent makes
// the segments (one per ring edge) and hands their names to the children, so no base
// transport is involved.

func init() {
	children["ring"] = ringChild
}

func envInt(k string) int {
	v, _ := strconv.Atoi(os.Getenv(k))
	return v
}

func ringChild() error {
	dir := os.Getenv("SHM_DIR")
	rank, n := envInt("RING_RANK"), envInt("RING_N")
	bytesPerIter, iters, chunk := envInt("RING_BYTES"), envInt("RING_ITERS"), envInt("RING_CHUNK")
	ring := uint64(envInt("RING_RING"))
	wait, _ := strconv.Atoi(os.Getenv("RING_WAIT"))
	names := strings.Split(os.Getenv("RING_NAMES"), ",")
	var nonce [16]byte
	cfg := linkConfig{wait: Wait(wait), spin: DefaultSpinTime, poll: DefaultLivenessInterval, publish: DefaultPublishBytes}
	if s := envInt("RING_SPIN_US"); s > 0 {
		cfg.spin = time.Duration(s) * time.Microsecond
	}
	if p := envInt("RING_PUBLISH"); p > 0 {
		cfg.publish = uint64(p)
	}
	right, left := (rank+1)%n, (rank+n-1)%n
	segR, err := openSegment(dir, names[rank], ring, nonce, rank, right)
	if err != nil {
		return err
	}
	segL, err := openSegment(dir, names[left], ring, nonce, left, rank)
	if err != nil {
		return err
	}
	tx := newShmLink(segR, true, right, ring, identity{}, identity{}, cfg, nil)
	rx := newShmLink(segL, false, left, ring, identity{}, identity{}, cfg, nil)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	src, dst := make([]byte, chunk), make([]byte, chunk)
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		for range iters {
			for off := 0; off < bytesPerIter; off += chunk {
				if _, err := tx.Write(src[:min(chunk, bytesPerIter-off)]); err != nil {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	for range iters {
		for off := 0; off < bytesPerIter; off += chunk {
			if _, err := io.ReadFull(rx, dst[:min(chunk, bytesPerIter-off)]); err != nil {
				return err
			}
		}
	}
	if err := <-errc; err != nil {
		return err
	}
	fmt.Println(time.Since(start).Nanoseconds())
	return nil
}

// runRing runs one ring exchange of n processes and returns the slowest rank's time.
func runRing(b *testing.B, n, bytesPerIter, iters, ring int, wait Wait, extra ...string) time.Duration {
	dir := shmDir(b)
	var names []string
	for i := range n {
		h := header{ringBytes: uint64(ring), creatorPID: uint32(os.Getpid()), creatorRank: uint32(i), openerRank: uint32((i + 1) % n)}
		seg, err := createSegment(dir, "bench", &h)
		if err != nil {
			b.Fatal(err)
		}
		names = append(names, strings.TrimPrefix(seg.path, dir+"/"))
		defer seg.unmap()
		defer seg.unlink()
	}
	var cmds []*exec.Cmd
	var outs []*bufio.Reader
	var ins []io.WriteCloser
	for i := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=ring", "SHM_DIR="+dir,
			fmt.Sprintf("RING_RANK=%d", i), fmt.Sprintf("RING_N=%d", n),
			fmt.Sprintf("RING_BYTES=%d", bytesPerIter), fmt.Sprintf("RING_ITERS=%d", iters),
			fmt.Sprintf("RING_CHUNK=%d", 1<<20), fmt.Sprintf("RING_RING=%d", ring),
			fmt.Sprintf("RING_WAIT=%d", int(wait)), "RING_NAMES="+strings.Join(names, ","))
		cmd.Env = append(cmd.Env, extra...)
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		in, _ := cmd.StdinPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds, outs, ins = append(cmds, cmd), append(outs, bufio.NewReader(out)), append(ins, in)
	}
	for i := range n {
		if l, err := outs[i].ReadString('\n'); err != nil || l != "ready\n" {
			b.Fatalf("rank %d: %q %v", i, l, err)
		}
	}
	for i := range n {
		io.WriteString(ins[i], "go\n")
	}
	var worst time.Duration
	for i := range n {
		l, err := outs[i].ReadString('\n')
		if err != nil {
			b.Fatalf("rank %d: %v", i, err)
		}
		ns, err := strconv.ParseInt(strings.TrimSpace(l), 10, 64)
		if err != nil {
			b.Fatalf("rank %d said %q", i, l)
		}
		worst = max(worst, time.Duration(ns))
		cmds[i].Wait()
	}
	return worst
}

// BenchmarkRingExchange reports link_GB/s (bytes each rank sent per second) for 2 and 4
// processes, ring sizes and wait strategies. Run it with -benchtime=Nx (N iterations of 64
// MiB per rank) and note that with 4 processes ranks outnumber this machine's 2 cores.
func BenchmarkRingExchange(b *testing.B) {
	const perIter = 64 << 20
	for _, n := range []int{2, 4} {
		for _, ring := range []int{1 << 20, 4 << 20} {
			for _, wait := range []Wait{WaitSpin, WaitSpinThenBlock, WaitBlock} {
				b.Run(fmt.Sprintf("n=%d/ring=%dK/wait=%s", n, ring>>10, wait), func(b *testing.B) {
					d := runRing(b, n, perIter, b.N, ring, wait)
					b.ReportMetric(float64(perIter)*float64(b.N)/d.Seconds()/1e9, "link_GB/s")
				})
			}
		}
	}
}
