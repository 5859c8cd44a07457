package multihost

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/internal/netcluster"
)

// The Slurm tests run scripts/slurm/gorun.sbatch, unchanged, on a real Slurm cluster made of
// network-namespace hosts: slurmctld on host 0, one slurmd per host, each in its own UTS
// namespace (its own hostname, h0, h1, ...) and mount namespace (an /etc/hosts naming the
// cluster's hosts, as a site's DNS would), munge for authentication. They need root and
// Debian's slurmd, slurmctld, slurm-client and munge packages, which they install with apt
// when missing (set RINGTRAIN_NO_APT=1 to forbid that); they skip with the reason otherwise.

// slurmPackages are the Debian packages the tests need, and a binary of each.
var slurmPackages = map[string]string{"slurmd": "slurmd", "slurmctld": "slurmctld", "slurm-client": "sbatch", "munge": "munged"}

// slurmAvailable installs the packages where it can and returns why Slurm cannot run, or "".
func slurmAvailable() string {
	if why := netcluster.Available(); why != "" {
		return why
	}
	for _, tool := range []string{"nsenter", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("`%s` (util-linux) not found", tool)
		}
	}
	var missing []string
	for pkg, bin := range slurmPackages {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if len(missing) == 0 {
		return ""
	}
	if os.Getenv("RINGTRAIN_NO_APT") != "" {
		return fmt.Sprintf("packages %s are not installed and RINGTRAIN_NO_APT forbids installing them", strings.Join(missing, ", "))
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Sprintf("packages %s are not installed and there is no apt-get", strings.Join(missing, ", "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	apt := func(args ...string) ([]byte, error) {
		cmd := exec.CommandContext(ctx, "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		return cmd.CombinedOutput()
	}
	install := append([]string{"install", "-y", "-q", "--no-install-recommends"}, missing...)
	out, err := apt(install...)
	if err != nil { // perhaps stale or empty package lists: refresh them once
		if _, uerr := apt("update", "-qq"); uerr == nil {
			out, err = apt(install...)
		}
	}
	if err != nil {
		return fmt.Sprintf("installing %s with apt-get failed: %v\n%s", strings.Join(missing, ", "), err, tail(string(out), 10))
	}
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// slurmCluster is a Slurm cluster on the hosts of a netcluster.
type slurmCluster struct {
	c    *netcluster.Cluster
	dir  string // configuration, keys, logs, spool directories
	conf string // slurm.conf
}

// startSlurm starts munged, slurmctld on host 0 and a slurmd on every host, and waits until
// every node is idle.
func startSlurm(t *testing.T, c *netcluster.Cluster) *slurmCluster {
	t.Helper()
	// Slurm checks the permissions of some of these paths; a directory of our own, not the
	// test's 0700 TempDir chain, keeps the daemons' view simple.
	dir, err := os.MkdirTemp("", "slurm-"+c.Name+"-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := &slurmCluster{c: c, dir: dir, conf: filepath.Join(dir, "slurm.conf")}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel() // munged runs outside the namespaces; the daemons inside die with them
		if t.Failed() {
			for _, log := range []string{"slurmctld.log", "slurmd-h0.log", "slurmd-h1.log"} {
				if b, err := os.ReadFile(filepath.Join(dir, log)); err == nil {
					t.Logf("--- %s (last lines):\n%s", log, tail(string(b), 15))
				}
			}
		}
		os.RemoveAll(dir)
	})

	key := make([]byte, 1024)
	rand.Read(key)
	must(t, os.WriteFile(filepath.Join(dir, "munge.key"), key, 0o600))
	sock := filepath.Join(dir, "munge.sock")
	munged := exec.CommandContext(ctx, "munged", "--foreground", "--force", "--socket", sock,
		"--key-file", filepath.Join(dir, "munge.key"), "--log-file", filepath.Join(dir, "munged.log"),
		"--pid-file", filepath.Join(dir, "munged.pid"), "--seed-file", filepath.Join(dir, "munged.seed"))
	if out, err := startQuiet(munged); err != nil {
		t.Fatalf("starting munged: %v\n%s", err, out)
	}
	waitFor(t, 10*time.Second, "munged's socket", func() bool { _, err := os.Stat(sock); return err == nil })

	var hosts, nodes strings.Builder
	hosts.WriteString("127.0.0.1 localhost\n")
	for i := 0; i < c.Hosts; i++ {
		fmt.Fprintf(&hosts, "%s h%d\n", c.IP(i), i)
		fmt.Fprintf(&nodes, "NodeName=h%d NodeAddr=%s CPUs=%d State=UNKNOWN\n", i, c.IP(i), runtime.NumCPU())
	}
	must(t, os.WriteFile(filepath.Join(dir, "hosts"), []byte(hosts.String()), 0o644))
	conf := fmt.Sprintf(`ClusterName=%s
SlurmctldHost=h0(%s)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket=%[3]s/munge.sock
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=%[3]s/ctld
SlurmdSpoolDir=%[3]s/spool-%%n
SlurmctldPidFile=%[3]s/slurmctld.pid
SlurmdPidFile=%[3]s/slurmd-%%n.pid
SlurmctldLogFile=%[3]s/slurmctld.log
SlurmdLogFile=%[3]s/slurmd-%%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/linear
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
KillWait=10
InactiveLimit=0
MinJobAge=600
%sPartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
`, strings.ReplaceAll(c.Name, "-", ""), c.IP(0), dir, nodes.String())
	must(t, os.WriteFile(s.conf, []byte(conf), 0o644))
	must(t, os.MkdirAll(filepath.Join(dir, "ctld"), 0o755))

	s.daemon(t, ctx, 0, "slurmctld", "-D", "-i")
	for i := 0; i < c.Hosts; i++ {
		s.daemon(t, ctx, i, "slurmd", "-D", "-N", fmt.Sprintf("h%d", i))
	}
	waitFor(t, 60*time.Second, "every node idle in sinfo", func() bool {
		out, err := s.client(ctx, "sinfo", "--noheader", "--format=%T %D").Output()
		return err == nil && strings.TrimSpace(string(out)) == fmt.Sprintf("idle %d", c.Hosts)
	})
	return s
}

// daemon starts a Slurm daemon as host i: in its network namespace (nsenter, which unlike
// `ip netns exec` keeps /sys and so the cgroup hierarchy slurmd inspects), with its own
// hostname and /etc/hosts.
func (s *slurmCluster) daemon(t *testing.T, ctx context.Context, i int, name string, args ...string) {
	t.Helper()
	script := fmt.Sprintf("mount --bind %s/hosts /etc/hosts && hostname h%d && exec %s %s", s.dir, i, name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+s.c.Namespace(i), "unshare", "--mount", "--uts", "sh", "-c", script)
	cmd.Env = append(cleanEnv(), "SLURM_CONF="+s.conf)
	if out, err := startQuiet(cmd); err != nil {
		t.Fatalf("starting %s on host %d: %v\n%s", name, i, err, out)
	}
}

// client prepares a Slurm client command run from host 0, as a user on the login node would.
func (s *slurmCluster) client(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + s.c.Namespace(0), name}, args...)...)
	cmd.Env = append(cleanEnv(), "SLURM_CONF="+s.conf)
	return cmd
}

// jobState returns the job's JobState and ExitCode as scontrol shows them.
func (s *slurmCluster) jobState(t *testing.T, id string) (state, exit string) {
	t.Helper()
	out, err := s.client(context.Background(), "scontrol", "show", "job", id).CombinedOutput()
	if err != nil {
		t.Fatalf("scontrol show job %s: %v\n%s", id, err, out)
	}
	if m := regexp.MustCompile(`JobState=(\S+)`).FindSubmatch(out); m != nil {
		state = string(m[1])
	}
	if m := regexp.MustCompile(`\bExitCode=(\S+)`).FindSubmatch(out); m != nil {
		exit = string(m[1])
	}
	return state, exit
}

// jobProcessesLeft lists the processes on the hosts other than the Slurm daemons.
func (s *slurmCluster) jobProcessesLeft(t *testing.T) []string {
	t.Helper()
	var left []string
	for i := 0; i < s.c.Hosts; i++ {
		pids, err := s.c.Pids(i)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pids {
			comm, err := os.ReadFile("/proc/" + p + "/comm")
			if err != nil {
				continue // gone meanwhile
			}
			switch strings.TrimSpace(string(comm)) {
			case "slurmd", "slurmctld", "slurmscriptd":
				continue
			}
			left = append(left, fmt.Sprintf("host %d: pid %s (%s)", i, p, cmdline(p)))
		}
	}
	return left
}

// noJobProcessesLeft fails the test if anything but the daemons still runs after timeout.
func (s *slurmCluster) noJobProcessesLeft(t *testing.T, timeout time.Duration) {
	t.Helper()
	var left []string
	deadline := time.Now().Add(timeout)
	for {
		if left = s.jobProcessesLeft(t); len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still running %v after the job ended:\n%s", timeout, strings.Join(left, "\n"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// submit runs `sbatch --parsable` of scripts/slurm/gorun.sbatch with the training program on
// nodes nodes, NPROC ranks each, and returns the job id; out-<id>.txt in dir gets its output.
func (s *slurmCluster) submit(t *testing.T, dir string, nodes, nproc int, wait bool, args ...string) (id string, err error) {
	t.Helper()
	sbatchArgs := []string{"--parsable", "--nodes", fmt.Sprint(nodes), "--output", filepath.Join(dir, "out-%j.txt"), "--chdir", dir}
	if wait {
		sbatchArgs = append(sbatchArgs, "--wait")
	}
	sbatchArgs = append(sbatchArgs, sbatchScript(t), bins.train)
	cmd := s.client(context.Background(), "sbatch", append(sbatchArgs, args...)...)
	cmd.Env = append(cmd.Env, "GORUN="+bins.gorun, fmt.Sprintf("NPROC=%d", nproc))
	out, err := cmd.Output()
	id = strings.TrimSpace(strings.Split(string(out), "\n")[0])
	id, _, _ = strings.Cut(id, ";")
	if id == "" && err == nil {
		err = fmt.Errorf("sbatch printed no job id")
	}
	return id, err
}

func (s *slurmCluster) jobOutput(dir, id string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "out-"+id+".txt"))
	return string(b)
}

// sbatchScript is scripts/slurm/gorun.sbatch in this repository.
func sbatchScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "scripts", "slurm", "gorun.sbatch"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSlurm runs gorun.sbatch as a 2-node job on a 2-host Slurm cluster: a job that trains to
// the single-process reference; a job whose rank dies (Slurm reports the failure, nothing is
// left running); a job cancelled with scancel mid-training (nothing is left running).
func TestSlurm(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Slurm cluster")
	}
	if why := slurmAvailable(); why != "" {
		t.Skipf("skipping Slurm test: %s", why)
	}
	c := cluster(t, 2, "")
	s := startSlurm(t, c)
	const nodes, nproc = 2, 2

	t.Run("trains", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Chmod(dir, 0o755))
		ckpt, out := filepath.Join(dir, "ckpt"), filepath.Join(dir, "params")
		must(t, os.MkdirAll(out, 0o755))
		id, err := s.submit(t, dir, nodes, nproc, true, trainArgs(ckpt, out)...)
		if err != nil {
			t.Fatalf("sbatch --wait: %v\n%s", err, s.jobOutput(dir, id))
		}
		if state, exit := s.jobState(t, id); state != "COMPLETED" || exit != "0:0" {
			t.Fatalf("job %s: JobState=%s ExitCode=%s, want COMPLETED 0:0\n%s", id, state, exit, s.jobOutput(dir, id))
		}
		checkParams(t, out, nodes*nproc, trainSteps, reference(t, nodes*nproc*rankBatch, refArgs()...))
		s.noJobProcessesLeft(t, 10*time.Second)
	})

	t.Run("rank fails", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Chmod(dir, 0o755))
		args := trainArgs(filepath.Join(dir, "ckpt"), dir, "--crash-at-step", "3", "--crash-rank", "3")
		id, err := s.submit(t, dir, nodes, nproc, true, args...)
		if err == nil {
			t.Fatalf("sbatch --wait succeeded for a job whose rank 3 was killed\n%s", s.jobOutput(dir, id))
		}
		state, exit := s.jobState(t, id)
		if state != "FAILED" || exit == "0:0" {
			t.Errorf("job %s: JobState=%s ExitCode=%s, want FAILED with a non-zero exit code", id, state, exit)
		}
		if log := s.jobOutput(dir, id); !strings.Contains(log, "rank 3") {
			t.Errorf("the job's output does not name rank 3:\n%s", log)
		}
		s.noJobProcessesLeft(t, 20*time.Second)
	})

	t.Run("scancel", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Chmod(dir, 0o755))
		args := append(trainArgs(filepath.Join(dir, "ckpt"), dir), "--steps", "100000", "--every", "0", "--step-sleep", "50ms")
		id, err := s.submit(t, dir, nodes, nproc, false, args...)
		if err != nil {
			t.Fatalf("sbatch: %v", err)
		}
		// Cancel once every rank is training: each prints its progress.
		stepRe := regexp.MustCompile(`mhtrain: rank (\d+) step \d+`)
		waitFor(t, 60*time.Second, "every rank training", func() bool {
			ranks := map[string]bool{}
			for _, m := range stepRe.FindAllStringSubmatch(s.jobOutput(dir, id), -1) {
				ranks[m[1]] = true
			}
			return len(ranks) == nodes*nproc
		})
		if out, err := s.client(context.Background(), "scancel", id).CombinedOutput(); err != nil {
			t.Fatalf("scancel %s: %v\n%s", id, err, out)
		}
		waitFor(t, 60*time.Second, "job "+id+" CANCELLED", func() bool { st, _ := s.jobState(t, id); return st == "CANCELLED" })
		s.noJobProcessesLeft(t, 30*time.Second)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// startQuiet starts cmd with its output kept for an error message.
func startQuiet(cmd *exec.Cmd) (*strings.Builder, error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return &out, err
	}
	go cmd.Wait()
	return &out, nil
}

// waitFor polls cond every 200 ms until it holds, failing the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
