//go:build unix

package launcher

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/errorfile"
)

// Multi-node jobs on one machine: two gorun processes with --nnodes 2 on 127.0.0.1, each its
// own node, talking through node 0's agent exactly as across machines.

// startNodes starts a gorun per node with the same flags plus --node-rank; extra[i] are
// node i's additional flags placed before TARGET.
func startNodes(t *testing.T, marker string, nnodes int, common []string, extra [][]string, target ...string) []*job {
	t.Helper()
	port := freeTestPort(t)
	tok := writeToken(t, "multi-node-test-token-"+strconv.Itoa(port))
	jobs := make([]*job, nnodes)
	// The last node first: the others must wait and retry until node 0 serves.
	for i := nnodes - 1; i >= 0; i-- {
		args := []string{"--nnodes", strconv.Itoa(nnodes), "--node-rank", strconv.Itoa(i),
			"--master-addr", "127.0.0.1", "--master-port", strconv.Itoa(port), "--token-file", tok,
			"--join-timeout", "20s"}
		args = append(args, common...)
		if extra != nil {
			args = append(args, extra[i]...)
		}
		jobs[i] = startGorun(t, marker, nil, append(args, target...)...)
	}
	return jobs
}

func waitAll(t *testing.T, jobs []*job, timeout time.Duration) []int {
	t.Helper()
	codes := make([]int, len(jobs))
	for i, j := range jobs {
		codes[i], _ = j.wait(timeout)
	}
	return codes
}

func dump(jobs []*job) string {
	var b strings.Builder
	for i, j := range jobs {
		fmt.Fprintf(&b, "--- node %d stdout:\n%s--- node %d stderr:\n%s", i, j.stdout, i, j.stderr)
	}
	return b.String()
}

// TestMultiNodeEnv: global ranks are node_rank × nproc + local_rank; both nodes' ranks share
// WORLD_SIZE, the token and node 0's run id.
func TestMultiNodeEnv(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2"}, nil, rankBin, "env")
	codes := waitAll(t, jobs, 60*time.Second)
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("exit codes %v\n%s", codes, dump(jobs))
	}
	all := map[int]map[string]string{}
	for node, j := range jobs {
		for r, env := range rankEnvs(t, j.stdout.String()) {
			if r/2 != node {
				t.Errorf("rank %d printed on node %d", r, node)
			}
			all[r] = env
		}
	}
	if len(all) != 4 {
		t.Fatalf("want ranks 0-3, got %d\n%s", len(all), dump(jobs))
	}
	for r := 0; r < 4; r++ {
		want := map[string]string{"RANK": strconv.Itoa(r), "LOCAL_RANK": strconv.Itoa(r % 2), "NODE_RANK": strconv.Itoa(r / 2),
			"WORLD_SIZE": "4", "LOCAL_WORLD_SIZE": "2", "NNODES": "2", "MASTER_ADDR": "127.0.0.1",
			"GORUN_TOKEN": all[0]["GORUN_TOKEN"], "GORUN_RUN_ID": all[0]["GORUN_RUN_ID"], "MASTER_PORT": all[0]["MASTER_PORT"]}
		for k, v := range want {
			if all[r][k] != v {
				t.Errorf("rank %d: %s=%q, want %q", r, k, all[r][k], v)
			}
		}
	}
	if !strings.HasPrefix(all[0]["GORUN_TOKEN"], "multi-node-test-token-") || all[0]["GORUN_RUN_ID"] == "" {
		t.Errorf("token %q, run id %q", all[0]["GORUN_TOKEN"], all[0]["GORUN_RUN_ID"])
	}
	assertNoProcesses(t, marker)
}

// TestMultiNodeRestartAgreement: rank 3 on node 1 fails in attempt 0; node 0's ranks are
// stopped and both nodes restart together; attempt 1 succeeds everywhere.
func TestMultiNodeRestartAgreement(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2", "--max-restarts", "1", "--grace", "2s"}, nil,
		rankBin, "restart", "3", "1", "7")
	codes := waitAll(t, jobs, 60*time.Second)
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("exit codes %v, want 0 0\n%s", codes, dump(jobs))
	}
	for node, j := range jobs {
		out := j.stdout.String()
		for l := 0; l < 2; l++ {
			r := node*2 + l
			for _, want := range []string{
				fmt.Sprintf("[%d] start rank=%d restart=0\n", r, r),
				fmt.Sprintf("[%d] start rank=%d restart=1\n", r, r),
				fmt.Sprintf("[%d] done rank=%d restart=1\n", r, r),
			} {
				if strings.Count(out, want) != 1 {
					t.Errorf("node %d: want one %q\n%s", node, want, dump(jobs))
				}
			}
		}
	}
	if !strings.Contains(jobs[0].stderr.String(), "node 1 reports: rank 3") {
		t.Errorf("node 0 does not name the failure on node 1:\n%s", jobs[0].stderr)
	}
	// Node 0's ranks were stopped by gorun in attempt 0, not failed on their own.
	if !strings.Contains(jobs[0].stderr.String(), "killed by SIGTERM (sent by gorun)") {
		t.Errorf("node 0's ranks were not stopped:\n%s", jobs[0].stderr)
	}
	assertNoProcesses(t, marker)
}

// TestMultiNodeGivesUp: without restarts, a failure on node 1 ends the job on both nodes
// with exit code 1 and the failure named on node 0.
func TestMultiNodeGivesUp(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2", "--grace", "2s"}, nil, rankBin, "fail", "2", "6")
	codes := waitAll(t, jobs, 60*time.Second)
	if codes[0] != 1 || codes[1] != 1 {
		t.Fatalf("exit codes %v, want 1 1\n%s", codes, dump(jobs))
	}
	for _, want := range []string{"first failure: node 1: rank 2 (local rank 0", "exit code 6", "[2] stderr line 14 of failing rank 2"} {
		if !strings.Contains(jobs[0].stderr.String(), want) {
			t.Errorf("node 0 lacks %q:\n%s", want, jobs[0].stderr)
		}
	}
	assertNoProcesses(t, marker)
}

// TestMultiNodeLostNode: node 1's gorun is SIGKILLed mid-job; node 0 stops its ranks and
// exits non-zero, and node 1's ranks die with their gorun.
func TestMultiNodeLostNode(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2", "--grace", "1s"}, nil, rankBin, "trap")
	jobs[0].waitFor(30*time.Second, "[0] ready", "[1] ready")
	jobs[1].waitFor(30*time.Second, "[2] ready", "[3] ready")
	jobs[1].cmd.Process.Signal(syscall.SIGKILL)
	code, took := jobs[0].wait(30 * time.Second)
	if code != 1 || !strings.Contains(jobs[0].stderr.String(), "lost node 1") {
		t.Errorf("node 0: exit %d after %v, want 1 naming the lost node\n%s", code, took, dump(jobs))
	}
	if !strings.Contains(jobs[0].stdout.String(), "[0] got terminated") {
		t.Errorf("node 0's ranks were not asked to stop:\n%s", dump(jobs))
	}
	waitAll(t, jobs[1:], 10*time.Second)
	assertNoProcesses(t, marker)
}

// TestMultiNodeLostNode0: when node 0's gorun dies, the other nodes stop their ranks and exit
// non-zero naming node 0.
func TestMultiNodeLostNode0(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2", "--grace", "1s"}, nil, rankBin, "trap")
	jobs[0].waitFor(30*time.Second, "[0] ready", "[1] ready")
	jobs[1].waitFor(30*time.Second, "[2] ready", "[3] ready")
	jobs[0].cmd.Process.Signal(syscall.SIGKILL)
	code, _ := jobs[1].wait(30 * time.Second)
	if code != 1 || !strings.Contains(jobs[1].stderr.String(), "lost node 0's agent") {
		t.Errorf("node 1: exit %d, want 1 naming node 0\n%s", code, dump(jobs))
	}
	if !strings.Contains(jobs[1].stdout.String(), "[2] got terminated") {
		t.Errorf("node 1's ranks were not asked to stop:\n%s", dump(jobs))
	}
	jobs[0].wait(10 * time.Second)
	assertNoProcesses(t, marker)
}

// TestMultiNodeRejoin: node 1's gorun dies during attempt 0; with a restart left, node 0
// stops its ranks and waits; a new gorun for node 1 joins and attempt 1 runs on both nodes.
func TestMultiNodeRejoin(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	common := []string{"--nproc", "1", "--grace", "1s", "--max-restarts", "1"}
	target := []string{rankBin, "restart", "99", "1", "0"} // attempt 0 waits; attempt 1 ends well
	jobs := startNodes(t, marker, 2, common, nil, target...)
	jobs[0].waitFor(30*time.Second, "[0] start rank=0 restart=0")
	jobs[1].waitFor(30*time.Second, "[1] start rank=1 restart=0")
	jobs[1].cmd.Process.Signal(syscall.SIGKILL)
	jobs[1].wait(10 * time.Second)
	// The same command line again, as a replaced pod or requeued step would run it.
	again := startGorun(t, marker, nil, jobs[1].cmd.Args[1:]...)
	code0, _ := jobs[0].wait(60 * time.Second)
	code1, _ := again.wait(30 * time.Second)
	all := append(jobs, again)
	if code0 != 0 || code1 != 0 {
		t.Fatalf("exit codes %d (node 0) and %d (new node 1), want 0\n%s", code0, code1, dump(all))
	}
	for _, want := range []string{"[0] done rank=0 restart=1"} {
		if !strings.Contains(jobs[0].stdout.String(), want) {
			t.Errorf("node 0 lacks %q\n%s", want, dump(all))
		}
	}
	if !strings.Contains(again.stdout.String(), "[1] done rank=1 restart=1") {
		t.Errorf("the new node 1 did not run attempt 1\n%s", dump(all))
	}
	if !strings.Contains(jobs[0].stderr.String(), "lost node 1") {
		t.Errorf("node 0 did not report the lost node\n%s", dump(all))
	}
	if testing.Verbose() {
		t.Log(dump(all))
	}
	assertNoProcesses(t, marker)
}

// TestMultiNodeNode0Interrupted: SIGINT to node 0 stops every node's ranks.
func TestMultiNodeNode0Interrupted(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "1", "--grace", "2s"}, nil, rankBin, "trap")
	jobs[0].waitFor(30*time.Second, "[0] ready")
	jobs[1].waitFor(30*time.Second, "[1] ready")
	jobs[0].cmd.Process.Signal(syscall.SIGINT)
	codes := waitAll(t, jobs, 30*time.Second)
	if codes[0] != 130 || codes[1] != 1 {
		t.Errorf("exit codes %v, want 130 (node 0) and 1\n%s", codes, dump(jobs))
	}
	if !strings.Contains(jobs[1].stdout.String(), "[1] got terminated") {
		t.Errorf("node 1's rank was not stopped:\n%s", dump(jobs))
	}
	assertNoProcesses(t, marker)
}

// TestMultiNodeMismatches: a wrong token and a different --nproc are refused with clear errors
// on the joining node, and node 0 gives up after its join timeout naming the missing node.
func TestMultiNodeMismatches(t *testing.T) {
	t.Parallel()
	t.Run("token", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		bad := writeToken(t, "some-other-secret-entirely")
		jobs := startNodes(t, marker, 2, []string{"--nproc", "1"}, [][]string{{"--join-timeout", "4s"}, {"--token-file", bad}},
			rankBin, "exit", "0")
		codes := waitAll(t, jobs, 30*time.Second)
		if codes[1] != 1 || !strings.Contains(jobs[1].stderr.String(), "tokens differ") {
			t.Errorf("node 1: exit %d, want 1 and a token error\n%s", codes[1], dump(jobs))
		}
		if codes[0] != 1 || !strings.Contains(jobs[0].stderr.String(), "node(s) 1 did not join within --join-timeout 4s") {
			t.Errorf("node 0: exit %d, want 1 naming node 1\n%s", codes[0], dump(jobs))
		}
		if strings.Contains(jobs[0].stdout.String()+jobs[1].stdout.String(), "[") {
			t.Errorf("ranks started despite the refused node:\n%s", dump(jobs))
		}
		assertNoProcesses(t, marker)
	})
	t.Run("nproc", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		jobs := startNodes(t, marker, 2, nil, [][]string{{"--nproc", "2", "--join-timeout", "4s"}, {"--nproc", "3"}},
			rankBin, "exit", "0")
		codes := waitAll(t, jobs, 30*time.Second)
		if codes[1] != 1 || !strings.Contains(jobs[1].stderr.String(), "node 1 has --nproc 3 but node 0 has --nproc 2") {
			t.Errorf("node 1: exit %d, want 1 and the --nproc mismatch\n%s", codes[1], dump(jobs))
		}
		if codes[0] != 1 || !strings.Contains(jobs[0].stderr.String(), "last refused join: node 1 has --nproc 3") {
			t.Errorf("node 0: exit %d\n%s", codes[0], dump(jobs))
		}
		assertNoProcesses(t, marker)
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := runGorun(t, nil, "--nnodes", "2", "--node-rank", "1", "--master-addr", "127.0.0.1",
			"--master-port", strconv.Itoa(freeTestPort(t)), "--token", "0123456789abcdef", "--join-timeout", "1s", rankBin, "exit", "0")
		if code != 1 || !strings.Contains(stderr, "cannot reach node 0's agent at 127.0.0.1:") {
			t.Errorf("exit %d, want 1 naming the unreachable master\n%s", code, stderr)
		}
	})
}

// TestSlurmTwoNodes: two gorun processes configured only by Slurm's variables (and the token
// and port from the environment), as srun starts them.
func TestSlurmTwoNodes(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	port := strconv.Itoa(freeTestPort(t))
	jobs := make([]*job, 2)
	for i := 1; i >= 0; i-- {
		env := cleanEnv("SLURM_JOB_ID=77", "SLURM_NNODES=2", "SLURM_NODEID="+strconv.Itoa(i),
			"SLURM_JOB_NODELIST=localhost,nodeb", "MASTER_PORT="+port, "GORUN_TOKEN=slurm-test-token-0123456789")
		jobs[i] = startGorun(t, marker, env, "--nproc", "1", "--join-timeout", "20s", rankBin, "env")
	}
	codes := waitAll(t, jobs, 60*time.Second)
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("exit codes %v\n%s", codes, dump(jobs))
	}
	for i, j := range jobs {
		env := rankEnvs(t, j.stdout.String())[i]
		want := map[string]string{"RANK": strconv.Itoa(i), "WORLD_SIZE": "2", "NODE_RANK": strconv.Itoa(i),
			"MASTER_ADDR": "localhost", "MASTER_PORT": port, "GORUN_TOKEN": "slurm-test-token-0123456789"}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("node %d: %s=%q, want %q", i, k, env[k], v)
			}
		}
	}
	assertNoProcesses(t, marker)
}

// TestErrorFile: a rank records its error with package errorfile and exits 7. gorun reads
// the rank's TORCHELASTIC_ERROR_FILE, prints the message in its summary, and writes the root
// cause to its own TORCHELASTIC_ERROR_FILE in torchrun's layout, with errorCode the rank's
// exit status. With two nodes and the failing rank on node 1, node 0 reports the message and
// writes its file with gorun's exit status.
func TestErrorFile(t *testing.T) {
	t.Parallel()
	const msg = "layer 3: out of memory (asked 4 GiB)"
	t.Run("one-node", func(t *testing.T) {
		t.Parallel()
		own := filepath.Join(t.TempDir(), "gorun-error.json")
		code, _, stderr := runGorun(t, cleanEnv("TORCHELASTIC_ERROR_FILE="+own), "--standalone", "--nproc", "2", "--grace", "1s",
			rankBin, "errorfile", "1", "7", msg)
		if code != 1 || !strings.Contains(stderr, "gorun: rank 1 recorded (TORCHELASTIC_ERROR_FILE, ") || !strings.Contains(stderr, msg) {
			t.Fatalf("exit %d, want 1 with rank 1's recorded message\n%s", code, stderr)
		}
		rep, err := errorfile.Read(own)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Message, "rank 1 ") || !strings.Contains(rep.Message, msg) || rep.ErrorCode == nil || *rep.ErrorCode != 7 ||
			!strings.Contains(rep.CallStack, "main.main") || time.Since(rep.Time) > 5*time.Minute {
			t.Fatalf("gorun's error file: %+v", rep)
		}
	})
	t.Run("two-nodes", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		port := freeTestPort(t)
		tok := writeToken(t, "error-file-test-token-"+strconv.Itoa(port))
		own := filepath.Join(t.TempDir(), "node0-error.json")
		var jobs []*job
		for node := 0; node < 2; node++ {
			env := cleanEnv()
			if node == 0 {
				env = cleanEnv("TORCHELASTIC_ERROR_FILE=" + own)
			}
			jobs = append(jobs, startGorun(t, marker, env, "--nnodes", "2", "--node-rank", strconv.Itoa(node), "--master-addr", "127.0.0.1",
				"--master-port", strconv.Itoa(port), "--token-file", tok, "--join-timeout", "20s", "--grace", "1s",
				rankBin, "errorfile", "1", "7", msg))
		}
		codes := waitAll(t, jobs, 60*time.Second)
		if codes[0] != 1 || codes[1] != 1 || !strings.Contains(jobs[0].stderr.String(), msg) {
			t.Fatalf("exit codes %v, want 1 with the message on node 0\n%s", codes, dump(jobs))
		}
		rep, err := errorfile.Read(own)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Message, "node 1") || !strings.Contains(rep.Message, msg) || rep.ErrorCode == nil || *rep.ErrorCode != 1 {
			t.Fatalf("node 0's error file: %+v", rep)
		}
		assertNoProcesses(t, marker)
	})
}

// TestTorchElasticEnv: torchrun's names carry the right values across nodes and restarts.
// Two nodes × 2 ranks, --max-restarts 1; rank 3 fails in attempt 0; in attempt 1 every rank
// has GROUP_RANK = NODE_RANK, ROLE_RANK = RANK, ROLE_WORLD_SIZE = WORLD_SIZE,
// TORCHELASTIC_RESTART_COUNT = 1, TORCHELASTIC_RUN_ID = the --run-id, and its own
// TORCHELASTIC_ERROR_FILE for attempt 1.
func TestTorchElasticEnv(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	jobs := startNodes(t, marker, 2, []string{"--nproc", "2", "--max-restarts", "1", "--run-id", "te-job", "--grace", "1s"}, nil,
		rankBin, "envfail", "3")
	codes := waitAll(t, jobs, 60*time.Second)
	if codes[0] != 0 || codes[1] != 0 {
		t.Fatalf("exit codes %v\n%s", codes, dump(jobs))
	}
	files := map[string]bool{}
	for node, j := range jobs {
		envs := rankEnvs(t, j.stdout.String()) // the last attempt's lines win
		for r, env := range envs {
			want := map[string]string{"NODE_RANK": strconv.Itoa(node), "GROUP_RANK": strconv.Itoa(node), "ROLE_RANK": strconv.Itoa(r),
				"WORLD_SIZE": "4", "ROLE_WORLD_SIZE": "4", "GORUN_RESTART_COUNT": "1", "TORCHELASTIC_RESTART_COUNT": "1",
				"GORUN_RUN_ID": "te-job", "TORCHELASTIC_RUN_ID": "te-job"}
			for k, v := range want {
				if env[k] != v {
					t.Errorf("rank %d: %s=%q, want %q", r, k, env[k], v)
				}
			}
			f := env["TORCHELASTIC_ERROR_FILE"]
			if !strings.HasSuffix(f, filepath.Join("attempt_1", strconv.Itoa(r%2), "error.json")) || files[f] {
				t.Errorf("rank %d: TORCHELASTIC_ERROR_FILE=%q: want its own path for attempt 1", r, f)
			}
			files[f] = true
		}
		if len(envs) != 2 {
			t.Errorf("node %d: %d ranks printed", node, len(envs))
		}
	}
	assertNoProcesses(t, marker)
}
