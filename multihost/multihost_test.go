package multihost

import (
	"context"
	"fmt"
	"path/filepath"
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
