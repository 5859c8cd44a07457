package multihost

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/netcluster"
)

var (
	flagHosts     = flag.Int("hosts", 4, "hosts (network namespaces), one rank each")
	flagRate      = flag.String("rate", "1gbit", "tbf rate of every host's link, as tc writes it (\"\": unshaped)")
	flagSize      = flag.String("size", "64MiB", "AllReduce buffer size (float32 bytes)")
	flagIters     = flag.Int("iters", 5, "timed iterations per dtype")
	flagWarmup    = flag.Int("warmup", 2, "untimed iterations per dtype")
	flagOut       = flag.String("out", "", "append the JSON lines of the runs to this file")
	flagTransport = flag.String("transport", "", "gorun --transport between the hosts: tls (gorun's default), tcp or quic")
)

// row is the part of benchmarks/allreduce's JSON line this benchmark reads.
type row struct {
	Op       string  `json:"op"`
	Ranks    int     `json:"ranks"`
	Bytes    int64   `json:"bytes"`
	Dtype    string  `json:"dtype"`
	TimeUS   float64 `json:"time_us"`
	MinUS    float64 `json:"min_us"`
	MaxUS    float64 `json:"max_us"`
	AlgBWGBs float64 `json:"algbw_gbs"`
	BusBWGBs float64 `json:"busbw_gbs"`
	LinkGBs  float64 `json:"link_gbs"`
	MaxRel   float64 `json:"max_rel_err"`
}

// parseRows reads the JSON lines rank 0 printed through gorun ("[0] {...}"), ignoring
// every other line.
func parseRows(r io.Reader) ([]row, error) {
	var rows []row
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "[0] ")
		if !ok || !strings.HasPrefix(rest, "{") {
			continue
		}
		var x row
		if err := json.Unmarshal([]byte(rest), &x); err != nil {
			return nil, fmt.Errorf("bad JSON line from rank 0 %q: %w", rest, err)
		}
		rows = append(rows, x)
	}
	return rows, sc.Err()
}

// linkRateBytes converts a tc rate ("1gbit", "100mbit", "500kbit") to bytes per second.
func linkRateBytes(rate string) (float64, error) {
	r := strings.ToLower(strings.TrimSpace(rate))
	for _, u := range []struct {
		suffix string
		bits   float64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}} {
		if num, ok := strings.CutSuffix(r, u.suffix); ok {
			v, err := strconv.ParseFloat(num, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("rate %q: want a positive number before %s", rate, u.suffix)
			}
			return v * u.bits / 8, nil
		}
	}
	return 0, fmt.Errorf("rate %q: want a number with gbit, mbit, kbit or bit", rate)
}

var build struct {
	once               sync.Once
	dir, gorun, reduce string
	err                error
}

func buildBins(b *testing.B) {
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "multihost-bench-")
		if build.err != nil {
			return
		}
		build.gorun, build.reduce = filepath.Join(build.dir, "gorun"), filepath.Join(build.dir, "allreduce")
		out, err := exec.Command("go", "build", "-o", build.dir+string(filepath.Separator),
			"github.com/ringtrain/ringtrain/cmd/gorun", "github.com/ringtrain/ringtrain/benchmarks/allreduce").CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		b.Fatal(build.err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// cpuTicks reads the machine's busy and total CPU time (all cores, clock ticks) from
// /proc/stat, to tell a CPU-bound run from a link-bound one.
func cpuTicks() (busy, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

var droppedRe = regexp.MustCompile(`dropped (\d+)`)

// tbfDrops sums the packets every shaped link of the cluster dropped (both ends: the hosts'
// eth0 and the switch's ports): drops would mean the tbf queue, not the sender, set the pace.
func tbfDrops(c *netcluster.Cluster, hosts int) int {
	nss := []string{c.Name + "-sw"}
	for i := 0; i < hosts; i++ {
		nss = append(nss, c.Namespace(i))
	}
	sum := 0
	for _, ns := range nss {
		out, err := exec.Command("ip", "netns", "exec", ns, "tc", "-s", "qdisc", "show").Output()
		if err != nil {
			return -1
		}
		for _, m := range droppedRe.FindAllStringSubmatch(string(out), -1) {
			n, _ := strconv.Atoi(m[1])
			sum += n
		}
	}
	return sum
}

// runJob runs benchmarks/allreduce on every host through one gorun per host (one rank each)
// and returns rank 0's rows.
func runJob(b *testing.B, c *netcluster.Cluster, hosts int, args ...string) []row {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tok := filepath.Join(b.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("multihost-bench-"+c.Name), 0o600); err != nil {
		b.Fatal(err)
	}
	type result struct {
		out, errOut bytes.Buffer
		err         error
	}
	res := make([]*result, hosts)
	busy0, total0 := cpuTicks()
	drops0 := tbfDrops(c, hosts)
	var wg sync.WaitGroup
	for i := 0; i < hosts; i++ {
		res[i] = &result{}
		cmd := c.Command(ctx, i, build.gorun, append([]string{"--nnodes", strconv.Itoa(hosts), "--node-rank", strconv.Itoa(i),
			"--master-addr", c.IP(0), "--master-port", "29500", "--token-file", tok, "--nproc", "1",
			"--transport", cmp.Or(*flagTransport, "tls"), build.reduce}, args...)...)
		cmd.Stdout, cmd.Stderr = &res[i].out, &res[i].errOut
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() { res[i].err = cmd.Wait() })
	}
	wg.Wait()
	busy1, total1 := cpuTicks()
	lastCPUBusy = float64(busy1-busy0) / float64(max(1, total1-total0))
	lastDrops = tbfDrops(c, hosts) - drops0
	var errs []error
	for i, r := range res {
		if r.err != nil {
			errs = append(errs, fmt.Errorf("gorun on host %d: %v\n%s%s", i, r.err, r.out.String(), r.errOut.String()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	if *flagOut != "" {
		f, err := os.OpenFile(*flagOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(res[0].out.String(), "\n") {
			if rest, ok := strings.CutPrefix(l, "[0] "); ok && strings.HasPrefix(rest, "{") {
				fmt.Fprintln(f, rest)
			}
		}
		f.Close()
	}
	rows, err := parseRows(&res[0].out)
	if err != nil {
		b.Fatal(err)
	}
	return rows
}

// What the last runJob saw: the share of the machine's CPU time that was busy (all
// processes, all cores, start-up included) and the packets the tbf queues dropped.
var (
	lastCPUBusy float64
	lastDrops   int
)

func pick(rows []row, op, dtype string) (row, bool) {
	for _, r := range rows {
		if r.Op == op && r.Dtype == dtype {
			return r, true
		}
	}
	return row{}, false
}

// BenchmarkAllReduceHosts is AllReduce across -hosts network-namespace hosts, one rank per
// host, every link shaped to -rate with tbf, fp32 and fp16, through gorun per host exactly as
// across machines. It reports bus bandwidth against the link rate (the ring's ceiling: each
// rank's link carries busbw), the raw ring exchange over the same QUIC transport (what the
// transport alone reaches on these links), and fp16's time relative to fp32's.
//
//	sudo go test -run '^$' -bench AllReduceHosts -benchtime 1x ./benchmarks/multihost/
func BenchmarkAllReduceHosts(b *testing.B) {
	hosts := *flagHosts
	linkBps := 0.0 // unknown: unshaped links
	if *flagRate != "" {
		var err error
		if linkBps, err = linkRateBytes(*flagRate); err != nil {
			b.Fatal(err)
		}
	}
	c := netcluster.Start(b, hosts, *flagRate)
	buildBins(b)
	common := []string{"--json", "--min", *flagSize, "--max", *flagSize, "--iters", strconv.Itoa(*flagIters), "--warmup", strconv.Itoa(*flagWarmup)}
	for i := 0; i < b.N; i++ {
		fp32 := runJob(b, c, hosts, append(common, "--dtype", "fp32", "--baseline")...)
		cpu32, drops32 := lastCPUBusy, lastDrops
		fp16 := runJob(b, c, hosts, append(common, "--dtype", "fp16")...)
		cpu16, drops16 := lastCPUBusy, lastDrops
		r32, ok1 := pick(fp32, "allreduce", "fp32")
		x, ok2 := pick(fp32, "ring-exchange", "raw")
		r16, ok3 := pick(fp16, "allreduce", "fp16")
		if !ok1 || !ok2 || !ok3 {
			b.Fatalf("missing rows: fp32 %+v, fp16 %+v", fp32, fp16)
		}
		b.ReportMetric(r32.BusBWGBs*1e3, "fp32_busbw_MB/s")
		b.ReportMetric(x.LinkGBs*1e3, "exchange_MB/s")
		if linkBps > 0 {
			b.ReportMetric(r32.BusBWGBs*1e9/linkBps, "fp32_busbw/link")
			b.ReportMetric(x.LinkGBs*1e9/linkBps, "exchange/link")
		}
		b.ReportMetric(r16.BusBWGBs*1e3, "fp16_busbw_MB/s")
		b.ReportMetric(r16.TimeUS/r32.TimeUS, "fp16/fp32_time")
		b.ReportMetric(cpu32, "fp32_cpu_busy")
		b.ReportMetric(float64(drops32+drops16), "tbf_drops")
		b.ReportMetric(r32.TimeUS/1e3, "fp32_ms")
		b.ReportMetric(r16.TimeUS/1e3, "fp16_ms")
		ofLink := func(gbs float64) string {
			if linkBps == 0 {
				return "unshaped link"
			}
			return fmt.Sprintf("%.3f of the link", gbs*1e9/linkBps)
		}
		b.Logf("%d hosts × 1 rank on %d cores, links %q (%.0f MB/s), %s, median of %d (min–max over iterations):",
			hosts, runtime.NumCPU(), *flagRate, linkBps/1e6, *flagSize, *flagIters)
		b.Logf("  fp32 AllReduce    %7.1f ms (%.1f–%.1f)  busbw %6.1f MB/s = %s  max_rel_err %.2g",
			r32.TimeUS/1e3, r32.MinUS/1e3, r32.MaxUS/1e3, r32.BusBWGBs*1e3, ofLink(r32.BusBWGBs), r32.MaxRel)
		b.Logf("  fp16 AllReduce    %7.1f ms (%.1f–%.1f)  busbw %6.1f MB/s (fp32 bytes)  time %.3f of fp32's  max_rel_err %.2g",
			r16.TimeUS/1e3, r16.MinUS/1e3, r16.MaxUS/1e3, r16.BusBWGBs*1e3, r16.TimeUS/r32.TimeUS, r16.MaxRel)
		b.Logf("  raw ring exchange %7.1f ms  %6.1f MB/s = %s (the transport's ceiling here)",
			x.TimeUS/1e3, x.LinkGBs*1e3, ofLink(x.LinkGBs))
		b.Logf("  machine CPU busy during the fp32 job %.0f%%, fp16 job %.0f%%; tbf drops %d (fp32 job) + %d (fp16 job)",
			100*cpu32, 100*cpu16, drops32, drops16)
	}
}
