package stack_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/datalink"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/stack"
)

func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestComposed runs a 3-rank AllReduce over each composition and checks what carries the
// links.
func TestComposed(t *testing.T) {
	for _, tc := range []struct {
		s    stack.Settings
		want string
	}{
		{stack.Settings{Transport: datalink.ModeTLS, Shm: stack.ShmOff}, "tls"},
		{stack.Settings{Transport: datalink.ModeTCP, Shm: stack.ShmOff, Streams: 2}, "tcp"},
		{stack.Settings{Transport: datalink.ModeQUIC, Shm: stack.ShmOff}, "quic"},
		{stack.Settings{Transport: datalink.ModeTLS, Shm: stack.ShmOn}, "shm"},
	} {
		t.Run(fmt.Sprintf("%v-shm-%v", tc.s.Transport, tc.s.Shm), func(t *testing.T) {
			const n = 3
			port := freeUDPPort(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			errs := make([]error, n)
			kinds := make([]map[int]string, n)
			for r := range n {
				wg.Go(func() {
					cfg := quictransport.Config{Rank: r, Size: n, MasterAddr: "127.0.0.1", MasterPort: port,
						Token: "secret", Logger: slog.New(slog.DiscardHandler)}
					tr, err := stack.Establish(ctx, cfg, tc.s)
					if err != nil {
						errs[r] = err
						return
					}
					g, err := collective.New(ctx, tr, collective.Options{})
					if err != nil {
						errs[r] = err
						tr.Close()
						return
					}
					defer func() { g.Shutdown(ctx); g.Close(); tr.Close() }()
					buf := make([]float32, 1<<20+3)
					for i := range buf {
						buf[i] = float32(r + i%7)
					}
					if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
						errs[r] = err
						return
					}
					for i, v := range buf {
						if want := float32(3*(i%7) + 3); v != want {
							errs[r] = fmt.Errorf("rank %d: buf[%d] = %v, want %v", r, i, v, want)
							return
						}
					}
					kinds[r] = g.LinkKinds()
				})
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			for r, k := range kinds {
				for p, got := range k {
					if got != tc.want {
						t.Errorf("rank %d: links to rank %d: %q, want %q (%v)", r, p, got, tc.want, stack.KindsString(k))
					}
				}
				if len(k) != 2 {
					t.Errorf("rank %d: kinds %v, want both neighbours", r, k)
				}
			}
		})
	}
}

func TestSettingsFromEnv(t *testing.T) {
	for _, tc := range []struct {
		transport, shm, streams string
		want                    stack.Settings
		note, fail              bool
	}{
		{"", "", "", stack.Settings{}, false, false},
		{"tcp", "off", "4", stack.Settings{Transport: datalink.ModeTCP, Shm: stack.ShmOff, Streams: 4}, false, false},
		{"quic", "", "", stack.Settings{Transport: datalink.ModeQUIC}, false, false},
		{"auto", "", "", stack.Settings{}, true, false},
		{"shm", "", "", stack.Settings{Shm: stack.ShmRequire}, true, false},
		{"shm", "off", "", stack.Settings{Shm: stack.ShmOff}, true, false},
		{"udp", "", "", stack.Settings{}, false, true},
		{"", "maybe", "", stack.Settings{}, false, true},
		{"", "", "0", stack.Settings{}, false, true},
	} {
		t.Setenv("GORUN_TRANSPORT", tc.transport)
		t.Setenv("GORUN_SHM", tc.shm)
		t.Setenv("GORUN_STREAMS", tc.streams)
		s, err := stack.SettingsFromEnv()
		if (err != nil) != tc.fail {
			t.Errorf("%+v: err %v", tc, err)
			continue
		}
		if tc.fail {
			continue
		}
		if (len(s.Notes) > 0) != tc.note {
			t.Errorf("%+v: notes %q", tc, s.Notes)
		}
		s.Notes = nil
		if fmt.Sprint(s) != fmt.Sprint(tc.want) {
			t.Errorf("%+v: got %+v", tc, s)
		}
	}
}

func TestIfaceAddr(t *testing.T) {
	if ip, err := stack.IfaceAddr("127.0.0.1"); err != nil || !ip.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("IP: %v %v", ip, err)
	}
	if ip, err := stack.IfaceAddr("lo"); err != nil || !ip.IsLoopback() {
		t.Fatalf("lo: %v %v", ip, err)
	}
	if _, err := stack.IfaceAddr("no-such-if0"); err == nil {
		t.Fatal("no error for a missing interface")
	}
}
