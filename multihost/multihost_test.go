package multihost

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The training every test runs unless it says otherwise: 20 SGD steps of a 784-32-10 MLP, 8
// samples per rank per step, a checkpoint every 5 steps.
const (
	trainSteps  = 20
	trainEvery  = 5
	trainHidden = 32
	rankBatch   = 8
)

func trainArgs(ckptDir, outDir string, extra ...string) []string {
	return append([]string{"--steps", fmt.Sprint(trainSteps), "--every", fmt.Sprint(trainEvery),
		"--hidden", fmt.Sprint(trainHidden), "--batch", fmt.Sprint(rankBatch), "--dir", ckptDir, "--out", outDir}, extra...)
}

// refArgs are the reference run's flags (its batch is the job's global batch).
func refArgs() []string {
	return []string{"--steps", fmt.Sprint(trainSteps), "--hidden", fmt.Sprint(trainHidden), "--every", "0"}
}

// TestThreeHostsTrainLikeOneProcess: 3 hosts × 2 ranks, one gorun per host as on three
// machines. Every rank must end with the same parameters bit for bit, equal (relative
// difference < 1e-5) to one process training alone on the global batch.
func TestThreeHostsTrainLikeOneProcess(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	tmp := t.TempDir()
	ckpt, out := filepath.Join(tmp, "ckpt"), tmp
	nodes := startJob(t, ctx, c, jobSpec{nodes: 3, nproc: 2, args: trainArgs(ckpt, out)})
	for i, n := range nodes {
		if code := n.wait(t, 80*time.Second); code != 0 {
			t.Fatalf("gorun on node %d exited %d", i, code)
		}
	}
	checkParams(t, out, 6, trainSteps, reference(t, 6*rankBatch, refArgs()...))
	checkCheckpoint(t, ckpt, trainHidden, trainEvery)
	noProcessesLeft(t, c, 3)
}

// faultTransports lists the transports between hosts that the fault tests (a killed rank, a
// cut link) run over: gorun's default (tls) in CI, and every one with
// RINGTRAIN_MULTIHOST_TRANSPORTS=tls,tcp,quic.
func faultTransports() []string {
	v := os.Getenv("RINGTRAIN_MULTIHOST_TRANSPORTS")
	if v == "" {
		return []string{"tls"}
	}
	return strings.Split(v, ",")
}

// TestKillRankInAllReduce kills (SIGKILL) rank 3 on host 1 while a 6.4 MB gradient bucket is
// in flight over 20 Mbit/s links. Every other rank must fail with an error naming rank 3,
// every gorun must exit non-zero within 30 s, no process of the job may be left on any host,
// and the last checkpoint must load.
func TestKillRankInAllReduce(t *testing.T) {
	for _, tr := range faultTransports() {
		t.Run(tr, func(t *testing.T) { killRankInAllReduce(t, tr) })
	}
}

func killRankInAllReduce(t *testing.T, tr string) {
	c := cluster(t, 3, "20mbit")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const victim, hidden = 3, 2048 // fc1 has 784×2048 weights: a 6.4 MB bucket, ~1 s on these links
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	nodes := startJob(t, ctx, c, jobSpec{
		nodes: 3, nproc: 2,
		gorunArgs: []string{"--grace", "10s", "--transport", tr},
		env:       []string{"GORUN_PEER_TIMEOUT=3s"},
		args: []string{"--steps", "50", "--every", "1", "--hidden", fmt.Sprint(hidden), "--batch", "8",
			"--dir", ckpt, "--mark-bytes", "1000000"},
	})
	vnode := nodes[nodeOf(victim, 2)]
	pidLine := vnode.waitLine(t, rankLine(victim, `pid \d+ `), 60*time.Second)
	var pid int
	if _, err := fmt.Sscanf(pidLine.text, fmt.Sprintf("[%d] mhtrain: rank %d pid %%d", victim, victim), &pid); err != nil {
		t.Fatalf("no pid in %q: %v", pidLine.text, err)
	}
	// The second step's big bucket: a checkpoint (step 1) exists by then.
	enter := vnode.waitLine(t, rankLine(victim, `allreduce-enter step=[1-9]\d* bucket=\d+ bytes=\d{7,}`), 60*time.Second)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (rank %d): %v", pid, victim, err)
	}
	killed := time.Now()
	var step, bucket int
	fmt.Sscanf(enter.text, fmt.Sprintf("[%d] mhtrain: rank %d allreduce-enter step=%%d bucket=%%d", victim, victim), &step, &bucket)
	t.Logf("killed rank %d (pid %d) %v after it entered the AllReduce of step %d, bucket %d", victim, pid, killed.Sub(enter.at), step, bucket)

	for i, n := range nodes {
		code := n.wait(t, time.Until(killed.Add(30*time.Second)))
		if code == 0 {
			t.Errorf("gorun on node %d exited 0 after rank %d was killed", i, victim)
		}
		t.Logf("gorun on node %d exited %d, %v after the kill", i, code, n.ended.Sub(killed).Round(time.Millisecond))
	}
	// gorun on every node names the dead rank too, for programs that die at SIGTERM.
	gorunSays := regexp.MustCompile(fmt.Sprintf(`^gorun: .*rank %d \(local rank 1, pid %d\) killed by SIGKILL`, victim, pid))
	for i, n := range nodes {
		if _, ok := n.find(gorunSays); !ok {
			t.Errorf("gorun on node %d did not name rank %d as killed by SIGKILL", i, victim)
		}
	}
	for r := 0; r < 6; r++ {
		if r == victim {
			continue
		}
		n := nodes[nodeOf(r, 2)]
		if _, ok := n.find(rankLine(r, fmt.Sprintf(`failed \(dead peer rank %d\)`, victim))); !ok {
			l, _ := n.find(rankLine(r, "failed"))
			t.Errorf("rank %d did not fail with an error naming rank %d (its failure: %q)", r, victim, l.text)
		}
	}
	// The kill really landed inside the step's reduction: no rank completed that step.
	for r := 0; r < 6; r++ {
		if l, ok := nodes[nodeOf(r, 2)].find(rankLine(r, fmt.Sprintf(`step %d loss`, step+1))); ok {
			t.Errorf("rank %d completed step %d, whose AllReduce rank %d was killed in: %q", r, step+1, victim, l.text)
		}
	}
	noProcessesLeft(t, c, 3)
	checkCheckpoint(t, ckpt, hidden, 1)
}

// TestRestartFromCheckpoint: rank 3 (host 1) SIGKILLs itself after step 12 on the first
// attempt; with --max-restarts 1 gorun restarts the job on all three hosts, every rank
// resumes from the step-10 checkpoint, and the job ends with the parameters of an
// uninterrupted run.
func TestRestartFromCheckpoint(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tmp := t.TempDir()
	ckpt, out := filepath.Join(tmp, "ckpt"), tmp
	nodes := startJob(t, ctx, c, jobSpec{
		nodes: 3, nproc: 2,
		gorunArgs: []string{"--max-restarts", "1", "--grace", "10s"},
		env:       []string{"GORUN_PEER_TIMEOUT=3s"},
		args:      trainArgs(ckpt, out, "--crash-at-step", "12", "--crash-rank", "3"),
	})
	for i, n := range nodes {
		if code := n.wait(t, 110*time.Second); code != 0 {
			t.Fatalf("gorun on node %d exited %d", i, code)
		}
	}
	if _, ok := nodes[1].find(rankLine(3, "killing itself after step 12")); !ok {
		t.Fatal("rank 3 never crashed")
	}
	for r := 0; r < 6; r++ {
		if _, ok := nodes[nodeOf(r, 2)].find(rankLine(r, `resumed from ckpt-000000000010\.rtck at step 10$`)); !ok {
			t.Errorf("rank %d (host %d) did not resume from the step-10 checkpoint", r, nodeOf(r, 2))
		}
	}
	checkParams(t, out, 6, trainSteps, reference(t, 6*rankBatch, refArgs()...))
	checkCheckpoint(t, ckpt, trainHidden, trainEvery)
	noProcessesLeft(t, c, 3)
}

// TestLinkCut cuts host 2's link in the middle of a job run with GORUN_PEER_TIMEOUT=3s.
// Ranks must notice within the configured timeout (well before the 15 s default, which would
// show that the setting is ignored), nothing may hang: every gorun exits non-zero within 30 s,
// and the last checkpoint loads.
func TestLinkCut(t *testing.T) {
	for _, tr := range faultTransports() {
		t.Run(tr, func(t *testing.T) { linkCut(t, tr) })
	}
}

func linkCut(t *testing.T, tr string) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	const peerTimeout = 3 * time.Second
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	nodes := startJob(t, ctx, c, jobSpec{
		nodes: 3, nproc: 2,
		gorunArgs: []string{"--grace", "5s", "--transport", tr},
		env:       []string{"GORUN_PEER_TIMEOUT=" + peerTimeout.String()},
		args: []string{"--steps", "100000", "--every", "5", "--hidden", fmt.Sprint(trainHidden), "--batch", "8",
			"--dir", ckpt, "--step-sleep", "20ms"},
	})
	nodes[0].waitLine(t, rankLine(0, `checkpoint step 10$`), 60*time.Second)
	if err := c.SetLink(2, false); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()
	t.Logf("cut host 2's link")
	for i, n := range nodes {
		code := n.wait(t, time.Until(cut.Add(30*time.Second)))
		if code == 0 {
			t.Errorf("gorun on node %d exited 0 after its link was cut", i)
		}
		t.Logf("gorun on node %d exited %d, %v after the cut", i, code, n.ended.Sub(cut).Round(time.Millisecond))
	}
	// Every rank reports the failure itself, by the configured timeout plus the time to pass
	// the news on (an abort notice through the store or the ring) and scheduling slack.
	limit := peerTimeout + 4*time.Second
	for r := 0; r < 6; r++ {
		l, ok := nodes[nodeOf(r, 2)].find(rankLine(r, `failed`))
		switch {
		case !ok:
			t.Errorf("rank %d printed no failure", r)
		case l.at.Sub(cut) > limit:
			t.Errorf("rank %d failed %v after the cut, want within %v (GORUN_PEER_TIMEOUT=%v): %q", r, l.at.Sub(cut), limit, peerTimeout, l.text)
		default:
			t.Logf("rank %d failed %v after the cut: %s", r, l.at.Sub(cut).Round(time.Millisecond), l.text)
		}
	}
	noProcessesLeft(t, c, 3)
	checkCheckpoint(t, ckpt, trainHidden, 5)
}

// TestStrangerRefused: while a 2-host job is paused before step 5, a third host without the
// token sprays random datagrams at the master port and at two ranks' data ports, sends
// garbage to node 0's agent (TCP) and to the rendezvous store (QUIC), tries the store with a
// wrong token and the ranks' data ports with a certificate nobody published and with none. Every attempt
// must be refused and logged by the side that refused it, and the job must then finish with
// the right parameters.
func TestStrangerRefused(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	tmp := t.TempDir()
	ckpt, out, pause := filepath.Join(tmp, "ckpt"), tmp, filepath.Join(tmp, "go-on")
	nodes := startJob(t, ctx, c, jobSpec{nodes: 2, nproc: 2, args: trainArgs(ckpt, out, "--pause-at-step", "5", "--pause-file", pause)})
	var data []string
	for r := 0; r < 4; r++ {
		n := nodes[nodeOf(r, 2)]
		l := n.waitLine(t, rankLine(r, `pid \d+ data \S+:\d+ `), 60*time.Second)
		port := regexp.MustCompile(`data \S+:(\d+) `).FindStringSubmatch(l.text)[1]
		if r%2 == 0 {
			data = append(data, net.JoinHostPort(c.IP(nodeOf(r, 2)), port))
		}
	}
	for r := 0; r < 4; r++ {
		nodes[nodeOf(r, 2)].waitLine(t, rankLine(r, `paused before step 5$`), 60*time.Second)
	}
	master := net.JoinHostPort(c.IP(0), fmt.Sprint(masterPort))
	s := start(t, ctx, c, 2, "stranger (host 2)", nil, bins.stranger, "--store", master, "--agent", master, "--data", strings.Join(data, ","))
	if code := s.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("the stranger exited %d: something accepted it", code)
	}
	for _, want := range []string{"agent " + master + " garbage", "store " + master + " garbage", "store " + master + " wrong token",
		"data " + data[0] + " handshake", "data " + data[1] + " handshake",
		"data " + data[0] + " handshake without certificate", "data " + data[1] + " handshake without certificate"} {
		if _, ok := s.find(regexp.MustCompile("^stranger: " + regexp.QuoteMeta(want) + ": refused: ")); !ok {
			t.Errorf("no refusal of %q in the stranger's output", want)
		}
	}
	if err := os.WriteFile(pause, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		if code := n.wait(t, 60*time.Second); code != 0 {
			t.Fatalf("gorun on node %d exited %d after the stranger's visit", i, code)
		}
	}
	// Each refusal was logged where it happened, naming the stranger's address.
	stranger := regexp.QuoteMeta(c.IP(2))
	for _, w := range []struct {
		node  int
		what  string
		re    string
		count int
	}{
		{0, "node 0's agent", `^gorun: refused agent connection from ` + stranger + `:`, 1},
		{0, "rank 0's store", `^\[0\] .*rendezvous: refused connection .*remote=` + stranger + `:`, 2},
		{0, "rank 0's data endpoint", `^\[0\] .*quictransport: refused connection .*remote=` + stranger + `:`, 2},
		{1, "rank 2's data endpoint", `^\[2\] .*quictransport: refused connection .*remote=` + stranger + `:`, 2},
	} {
		if n := nodes[w.node].count(regexp.MustCompile(w.re)); n < w.count {
			t.Errorf("%s logged %d refusals of the stranger, want at least %d (pattern %q)", w.what, n, w.count, w.re)
		}
	}
	checkParams(t, out, 4, trainSteps, reference(t, 4*rankBatch, refArgs()...))
	checkCheckpoint(t, ckpt, trainHidden, trainEvery)
}

// TestLossyDelayedRing routes every ring link of a 3-host × 2-rank job (QUIC everywhere:
// --transport quic --shm off) through UDP relays that drop 5% of the datagrams and delay each by
// 2 ms, in both directions: each rank advertises its relay's address instead of its own.
// Training must still finish with the parameters of the single-process run, and the relays
// must have carried (and dropped) the ring's traffic.
func TestLossyDelayedRing(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	const nproc, dataPort, relayPort = 2, 30000, 31000
	relays := map[int]*proc{} // by global rank
	for h := 0; h < 3; h++ {
		for l := 0; l < nproc; l++ {
			r := h*nproc + l
			relays[r] = start(t, ctx, c, h, fmt.Sprintf("relay of rank %d (host %d)", r, h), nil, bins.relay,
				"--listen", net.JoinHostPort(c.IP(h), fmt.Sprint(relayPort+l)), "--to", fmt.Sprintf("127.0.0.1:%d", dataPort+l),
				"--loss", "0.05", "--delay", "2ms")
			relays[r].waitLine(t, regexp.MustCompile(`^relay: ready `), 30*time.Second)
		}
	}
	tmp := t.TempDir()
	ckpt, out := filepath.Join(tmp, "ckpt"), tmp
	nodes := startJob(t, ctx, c, jobSpec{
		nodes: 3, nproc: nproc,
		gorunArgs: []string{"--transport", "quic", "--shm", "off"},
		nodeEnv: func(h int) []string {
			return []string{fmt.Sprintf("MULTIHOST_LISTEN=0.0.0.0:%d", dataPort),
				"MULTIHOST_ADVERTISE=" + net.JoinHostPort(c.IP(h), fmt.Sprint(relayPort))}
		},
		args: trainArgs(ckpt, out),
	})
	for i, n := range nodes {
		if code := n.wait(t, 140*time.Second); code != 0 {
			t.Fatalf("gorun on node %d exited %d", i, code)
		}
	}
	checkParams(t, out, 3*nproc, trainSteps, reference(t, 3*nproc*rankBatch, refArgs()...))
	checkCheckpoint(t, ckpt, trainHidden, trainEvery)
	// The lower rank of a pair dials the higher one, so every ring link but none ends at
	// ranks 1..5's relays; rank 0's relay carries nothing.
	statsRe := regexp.MustCompile(`^relay: stats forwarded=(\d+) dropped=(\d+)$`)
	for r := 0; r < 3*nproc; r++ {
		p := relays[r]
		p.cmd.Process.Signal(syscall.SIGTERM)
		l := p.waitLine(t, statsRe, 10*time.Second)
		var fwd, drop int
		m := statsRe.FindStringSubmatch(l.text)
		fmt.Sscan(m[1], &fwd)
		fmt.Sscan(m[2], &drop)
		t.Logf("relay of rank %d: %d datagrams forwarded, %d dropped (%.1f%%)", r, fwd, drop, 100*float64(drop)/float64(max(1, fwd+drop)))
		if r > 0 && (fwd < 100 || drop == 0) {
			t.Errorf("relay of rank %d forwarded %d and dropped %d datagrams: the ring did not go through it", r, fwd, drop)
		}
	}
}

// TestCollectivesAcrossHosts runs every collective for every element type (testdata/collcheck:
// AllReduce sum/max/min/avg, ReduceScatter, AllGather, Broadcast, Reduce, Gather, Scatter,
// AllToAll, AllToAllV over float32, float64, int32 and int64, sizes 0 to 70001, each result
// checked exactly) on 3 hosts × 2 ranks: shared memory between the ranks of a host, each data
// link between hosts in turn.
func TestCollectivesAcrossHosts(t *testing.T) {
	c := cluster(t, 3, "")
	const nodes, nproc = 3, 2
	for _, tr := range []string{"tls", "tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
			defer cancel()
			procs := startJob(t, ctx, c, jobSpec{nodes: nodes, nproc: nproc, program: bins.collcheck,
				gorunArgs: []string{"--transport", tr}})
			for i, p := range procs {
				if code := p.wait(t, 110*time.Second); code != 0 {
					t.Fatalf("gorun on node %d exited %d", i, code)
				}
			}
			for r := 0; r < nodes*nproc; r++ {
				ok := regexp.MustCompile(fmt.Sprintf(`^\[%d\] collcheck: rank %d ok: [1-9]\d* checks$`, r, r))
				if _, found := procs[nodeOf(r, nproc)].find(ok); !found {
					t.Errorf("rank %d did not report its checks passed", r)
				}
			}
		})
	}
}
