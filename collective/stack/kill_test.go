package stack_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// TestKilledRankNamed: 3 ranks as processes over forced tls and tcp links (no shared memory);
// rank 1 is SIGKILLed mid-job; ranks 0 and 2 must fail within GORUN_PEER_TIMEOUT (plus the
// op timeout's slack) with an error naming rank 1.
func TestKilledRankNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range []string{"tls", "tcp"} {
		t.Run(tr, func(t *testing.T) {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			port := c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
			const n = 3
			cmds := make([]*exec.Cmd, n)
			outs := make([]*strings.Builder, n)
			for r := range n {
				cmd := exec.Command(exe, "-test.run=^TestKilledRankHelper$", "-test.v")
				cmd.Env = append(os.Environ(), "STACK_KILL_HELPER=1", "RANK="+strconv.Itoa(r), "WORLD_SIZE=3",
					"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "GORUN_TOKEN=0123456789abcdef0123",
					"GORUN_TRANSPORT="+tr, "GORUN_SHM=off", "GORUN_PEER_TIMEOUT=3s")
				outs[r] = &strings.Builder{}
				cmd.Stdout, cmd.Stderr = outs[r], outs[r]
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				cmds[r] = cmd
			}
			for r, cmd := range cmds {
				done := make(chan error, 1)
				go func() { done <- cmd.Wait() }()
				select {
				case err := <-done:
					if r == 1 {
						continue
					}
					if err != nil || !strings.Contains(outs[r].String(), "NAMED RANK 1") {
						t.Errorf("rank %d: %v\n%s", r, err, outs[r])
					}
				case <-time.After(40 * time.Second):
					cmd.Process.Kill()
					t.Errorf("rank %d did not end\n%s", r, outs[r])
				}
			}
		})
	}
}

func TestKilledRankHelper(t *testing.T) {
	if os.Getenv("STACK_KILL_HELPER") != "1" {
		t.Skip("helper process of TestKilledRankNamed")
	}
	ctx := context.Background()
	g, err := collective.InitFromEnv(ctx)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, 1<<18)
	for i := 0; i < 3; i++ {
		if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
			t.Fatal(err)
		}
	}
	if kinds := g.LinkKinds(); len(kinds) != 2 {
		t.Fatalf("kinds %v", kinds)
	}
	if g.Rank() == 1 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	start := time.Now()
	for {
		err := g.AllReduce(ctx, buf, collective.Sum)
		if err == nil {
			continue
		}
		var pe *transport.PeerError
		if errors.As(err, &pe) && pe.Rank == 1 {
			fmt.Printf("NAMED RANK 1 after %v: %v\n", time.Since(start).Round(time.Millisecond), err)
			return
		}
		t.Fatalf("after %v: %v", time.Since(start), err)
	}
}
