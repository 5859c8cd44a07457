package multihost

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/netcluster"
)

// Elastic jobs (--nnodes 2:3) on 3 hosts × 2 ranks, training with a constant global batch
// (mhtrain --global-batch): whatever the world size of each attempt, the sample sequence is
// the same, so the final parameters must equal one process training alone on the global
// batch, however the job was resized.
const (
	elasticSteps  = 60
	elasticGlobal = 24 // 4 per rank at 6 ranks, 6 per rank at 4
)

type elasticJob struct {
	c      *netcluster.Cluster
	ctx    context.Context
	tok    string
	ckpt   string
	out    string
	nodes  map[int]*proc // by host
	starts map[int]int   // gorun starts per host
}

func newElasticJob(t *testing.T, c *netcluster.Cluster, ctx context.Context) *elasticJob {
	tmp := t.TempDir()
	tok := filepath.Join(tmp, "job.token")
	if err := os.WriteFile(tok, []byte(fmt.Sprintf("multihost-elastic-%s-%d\n", c.Name, time.Now().UnixNano())), 0o600); err != nil {
		t.Fatal(err)
	}
	return &elasticJob{c: c, ctx: ctx, tok: tok, ckpt: filepath.Join(tmp, "ckpt"), out: tmp, nodes: map[int]*proc{}, starts: map[int]int{}}
}

// start runs gorun on host h (node rank hint h).
func (j *elasticJob) start(t *testing.T, h int) *proc {
	t.Helper()
	var eps []string
	for i := 0; i < 3; i++ {
		eps = append(eps, j.c.IP(i))
	}
	args := []string{"--nnodes", "2:3", "--node-rank", strconv.Itoa(h), "--master-addr", j.c.IP(0),
		"--rdzv-endpoints", strings.Join(eps, ","), "--master-port", strconv.Itoa(masterPort), "--token-file", j.tok,
		"--nproc", "2", "--join-timeout", "20s", "--settle", "2s", "--grace", "3s", bins.train,
		"--steps", strconv.Itoa(elasticSteps), "--every", "5", "--hidden", strconv.Itoa(trainHidden),
		"--global-batch", strconv.Itoa(elasticGlobal), "--dir", j.ckpt, "--out", j.out, "--step-sleep", "100ms"}
	j.starts[h]++
	p := start(t, j.ctx, j.c, h, fmt.Sprintf("gorun host %d (start %d)", h, j.starts[h]), []string{"GORUN_PEER_TIMEOUT=3s"}, bins.gorun, args...)
	j.nodes[h] = p
	return p
}

// worldLine matches any rank's "world W" line.
func worldLine(world int) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`^\[\d+\] mhtrain: rank \d+ world %d version`, world))
}

func killGorun(t *testing.T, p *proc) time.Time {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// TestElasticLoseAndRejoinHost: kill every process of host 2 (its gorun with SIGKILL; its ranks
// go with it) after the step-10 checkpoint. Hosts 0 and 1 go on at 4 ranks from the last
// checkpoint (world version 1). Host 2's gorun is started again: it joins through the
// endpoints and is admitted after --settle (6 ranks, version 2). The job finishes with the
// single-process parameters.
func TestElasticLoseAndRejoinHost(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	j := newElasticJob(t, c, ctx)
	for h := 0; h < 3; h++ {
		j.start(t, h)
	}
	j.nodes[0].waitLine(t, rankLine(0, `checkpoint step 10$`), 60*time.Second)
	killGorun(t, j.nodes[2])
	t.Log("killed host 2's gorun (SIGKILL)")
	j.nodes[0].waitLine(t, regexp.MustCompile(`^\[0\] mhtrain: rank 0 world 4 version 1 `), 30*time.Second)
	j.nodes[0].waitLine(t, rankLine(0, `resumed from ckpt-\d+\.rtck at step \d+$`), 30*time.Second)
	j.nodes[0].waitLine(t, regexp.MustCompile(`^\[0\] mhtrain: rank 0 step \d+ loss`), 30*time.Second)
	j.start(t, 2)
	j.nodes[2].waitLine(t, regexp.MustCompile(`^\[[45]\] mhtrain: rank [45] world 6 version 2 `), 40*time.Second)
	for _, h := range []int{0, 1, 2} {
		if code := j.nodes[h].wait(t, 90*time.Second); code != 0 {
			t.Fatalf("gorun on host %d exited %d", h, code)
		}
	}
	if _, ok := j.nodes[0].find(regexp.MustCompile(`^gorun: membership change: lost node 2 `)); !ok {
		t.Error("node 0 did not report losing node 2")
	}
	checkParams(t, j.out, 6, elasticSteps, reference(t, elasticGlobal, "--steps", strconv.Itoa(elasticSteps), "--hidden", strconv.Itoa(trainHidden), "--every", "0"))
	checkCheckpoint(t, j.ckpt, trainHidden, 5)
	noProcessesLeft(t, c, 3)
}

// TestElasticLoseRendezvousHost: kill host 0's gorun, the rendezvous host. Host 1 (the
// lowest survivor) takes over with host 2 (a majority of 3), becomes node 0 with MASTER_ADDR
// its own address, and the job finishes on 4 ranks with the single-process parameters.
func TestElasticLoseRendezvousHost(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	j := newElasticJob(t, c, ctx)
	for h := 0; h < 3; h++ {
		j.start(t, h)
	}
	j.nodes[0].waitLine(t, rankLine(0, `checkpoint step 10$`), 60*time.Second)
	killGorun(t, j.nodes[0])
	t.Log("killed host 0's gorun (SIGKILL)")
	j.nodes[1].waitLine(t, regexp.MustCompile(`^gorun: taking over the rendezvous`), 30*time.Second)
	j.nodes[1].waitLine(t, regexp.MustCompile(`^\[0\] mhtrain: rank 0 world 4 version 1 `), 40*time.Second)
	for _, h := range []int{1, 2} {
		if code := j.nodes[h].wait(t, 90*time.Second); code != 0 {
			t.Fatalf("gorun on host %d exited %d", h, code)
		}
	}
	checkParams(t, j.out, 4, elasticSteps, reference(t, elasticGlobal, "--steps", strconv.Itoa(elasticSteps), "--hidden", strconv.Itoa(trainHidden), "--every", "0"))
	noProcessesLeft(t, c, 3)
}

// TestElasticPartition cuts host 0 (the rendezvous host) from hosts 1 and 2. Host 0 keeps
// one node of three: it exits non-zero naming the partition. Hosts 1 and 2 hold a majority:
// host 1 takes over and the job finishes there. Nothing is left running anywhere.
func TestElasticPartition(t *testing.T) {
	c := cluster(t, 3, "")
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	j := newElasticJob(t, c, ctx)
	for h := 0; h < 3; h++ {
		j.start(t, h)
	}
	j.nodes[0].waitLine(t, rankLine(0, `checkpoint step 10$`), 60*time.Second)
	if err := c.SetLink(0, false); err != nil {
		t.Fatal(err)
	}
	t.Log("cut host 0's link")
	code0 := j.nodes[0].wait(t, 60*time.Second)
	if code0 == 0 {
		t.Errorf("host 0 (the minority side) exited 0")
	}
	if _, ok := j.nodes[0].find(regexp.MustCompile(`partition: `)); !ok {
		t.Errorf("host 0 exited %d without naming the partition", code0)
	}
	for _, h := range []int{1, 2} {
		if code := j.nodes[h].wait(t, 90*time.Second); code != 0 {
			t.Fatalf("gorun on host %d exited %d", h, code)
		}
	}
	if _, ok := j.nodes[1].find(regexp.MustCompile(`^\[0\] mhtrain: rank 0 world 4 version 1 `)); !ok {
		t.Error("hosts 1-2 did not go on at 4 ranks")
	}
	checkParams(t, j.out, 4, elasticSteps, reference(t, elasticGlobal, "--steps", strconv.Itoa(elasticSteps), "--hidden", strconv.Itoa(trainHidden), "--every", "0"))
	noProcessesLeft(t, c, 3)
}
