package multihost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// soakBin is benchmarks/soak, built on first use (only the algorithm test needs it).
var soakBin struct {
	once sync.Once
	path string
	err  error
}

func buildSoak(t *testing.T) string {
	t.Helper()
	soakBin.once.Do(func() {
		if bins.dir == "" {
			soakBin.err = fmt.Errorf("no build directory: %v", bins.err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		soakBin.path = filepath.Join(bins.dir, "soak")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", soakBin.path, "github.com/ringtrain/ringtrain/benchmarks/soak").CombinedOutput(); err != nil {
			soakBin.err = fmt.Errorf("building benchmarks/soak: %v\n%s", err, out)
		}
	})
	if soakBin.err != nil {
		t.Fatal(soakBin.err)
	}
	return soakBin.path
}

// soakSummary is the part of benchmarks/soak's JSON line (rank 0) the test reads.
type soakSummary struct {
	Soak         string `json:"soak"`
	Algo         string `json:"algo"`
	Ranks        int    `json:"ranks"`
	Ops          int    `json:"ops"`
	Wrong        int    `json:"wrong"`
	Errors       int    `json:"errors"`
	DigestsAgree bool   `json:"fp16_digests_agree"`
}

var soakLine = regexp.MustCompile(`^\[0\] (\{"soak".*)$`)

// TestEveryAlgorithmFourHosts runs benchmarks/soak (every collective, fp32 and fp16, async
// ops, sub-groups, each result checked on every rank) on 4 hosts × 2 ranks with each
// AllReduce algorithm forced: ring, rd, rhd, hier, rdoneshot (shared memory on each host,
// gorun's default TLS data links across), and auto. The hosts are real network namespaces, so
// the topology the algorithms see comes from the rendezvous, not from a test option.
func TestEveryAlgorithmFourHosts(t *testing.T) {
	const hosts, nproc, ops = 4, 2, 150
	c := cluster(t, hosts, "")
	soak := buildSoak(t)
	for _, algo := range []string{"ring", "rd", "rhd", "hier", "rdoneshot", "auto"} {
		t.Run(algo, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			tok := filepath.Join(t.TempDir(), "job.token")
			if err := os.WriteFile(tok, []byte("multihost-algo-"+algo), 0o600); err != nil {
				t.Fatal(err)
			}
			nodes := make([]*proc, hosts)
			for i := range nodes {
				args := []string{"--nnodes", strconv.Itoa(hosts), "--node-rank", strconv.Itoa(i),
					"--master-addr", c.IP(0), "--master-port", strconv.Itoa(masterPort), "--token-file", tok,
					"--nproc", strconv.Itoa(nproc), "--join-timeout", "60s", soak,
					"--ops", strconv.Itoa(ops), "--seed", "3", "--max-bytes", "1MiB", "--algo", algo}
				nodes[i] = start(t, ctx, c, i, fmt.Sprintf("gorun node %d (host %s)", i, c.IP(i)), nil, bins.gorun, args...)
			}
			for i, n := range nodes {
				if code := n.wait(t, 150*time.Second); code != 0 {
					t.Fatalf("gorun on node %d exited %d", i, code)
				}
			}
			l, ok := nodes[0].find(soakLine)
			if !ok {
				t.Fatalf("no summary from rank 0:\n%s", nodes[0].output())
			}
			var s soakSummary
			if err := json.Unmarshal([]byte(soakLine.FindStringSubmatch(l.text)[1]), &s); err != nil {
				t.Fatalf("summary %q: %v", l.text, err)
			}
			if s.Soak != "done" || s.Wrong != 0 || s.Errors != 0 || !s.DigestsAgree || s.Algo != algo || s.Ranks != hosts*nproc || s.Ops != ops {
				t.Fatalf("summary %+v", s)
			}
		})
	}
	noProcessesLeft(t, c, hosts)
}
