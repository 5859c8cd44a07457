package shmtransport

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// syncBuffer is a bytes.Buffer safe for a logger shared by goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestReserveFailureFallsBack fakes a full shared-memory directory (the reservation of the
// file's pages fails with ENOSPC, as fallocate does on a full tmpfs): in auto mode every link
// stays on the base transport and works, the creator logs one warning per peer naming the
// edge and the size it wanted, and no file is left; in shm mode the link fails with
// ErrShmUnavailable. It needs no root (TestTinyShmDir in the external tests uses a real
// tmpfs).
func TestReserveFailureFallsBack(t *testing.T) {
	for _, mode := range []Mode{ModeAuto, ModeShm} {
		t.Run(mode.String(), func(t *testing.T) {
			old := reserve
			t.Cleanup(func() { reserve = old }) // runs after wrapAll's cleanup closed everything
			reserve = func(fd int, size int64) error {
				if size != headerBytes+2*(1<<16) {
					t.Errorf("reserving %d bytes, want %d", size, headerBytes+2*(1<<16))
				}
				return syscall.ENOSPC
			}
			var logs [2]syncBuffer
			ts, _ := wrapAll(t, 2, 0, func(rank int) Options {
				return Options{Mode: mode, RingBytes: 1 << 16,
					Logger: slog.New(slog.NewTextHandler(&logs[rank], nil))}
			})
			dir := ts[0].opts.Dir
			for _, ch := range []string{"a", "b", "c"} {
				a, b, err := tryLinkPair(ts, 0, 1, ch)
				if mode == ModeShm {
					if !errors.Is(err, ErrShmUnavailable) || !strings.Contains(err.Error(), "no space left") {
						t.Fatalf("channel %s: %v, want ErrShmUnavailable saying no space is left", ch, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("channel %s: %v", ch, err)
				}
				if _, ok := a.(*shmLink); ok {
					t.Fatalf("channel %s: a shared-memory link without reserved pages", ch)
				}
				go a.Write([]byte("ok" + ch))
				buf := make([]byte, 3)
				if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ok"+ch {
					t.Fatalf("channel %s over the base link: %q %v", ch, buf, err)
				}
			}
			if n := dirEntries(t, dir); len(n) != 0 {
				t.Fatalf("files left: %v", n)
			}
			if mode == ModeShm {
				return
			}
			if k := ts[0].Kind(1); k != "quic" {
				t.Errorf("Kind(1) = %q, want quic", k)
			}
			got := logs[0].String()
			if n := strings.Count(got, "level=WARN"); n != 1 {
				t.Fatalf("rank 0 logged %d warnings, want 1 for the edge:\n%s", n, got)
			}
			for _, want := range []string{"edge rank 0 <-> rank 1", "uses quic", "132.0 KiB (135168 bytes)", "no space left on device", dir} {
				if !strings.Contains(got, want) {
					t.Errorf("warning lacks %q:\n%s", want, got)
				}
			}
			if s := logs[1].String(); s != "" {
				t.Errorf("rank 1 (the opener) logged:\n%s", s)
			}
		})
	}
}

// TestDirFromEnv: GORUN_SHM_DIR chooses the directory when Options.Dir is empty.
func TestDirFromEnv(t *testing.T) {
	t.Setenv(EnvShmDir, "")
	if d := DirFromEnv(); d != DefaultDir {
		t.Fatalf("unset: %q, want %q", d, DefaultDir)
	}
	o, err := Options{}.withDefaults()
	if err != nil || o.Dir != DefaultDir {
		t.Fatalf("default Dir %q %v", o.Dir, err)
	}
	t.Setenv(EnvShmDir, "/tmp/elsewhere")
	if o, _ := (Options{}).withDefaults(); o.Dir != "/tmp/elsewhere" {
		t.Fatalf("Dir %q, want $%s", o.Dir, EnvShmDir)
	}
	if o, _ := (Options{Dir: "/x"}).withDefaults(); o.Dir != "/x" {
		t.Fatalf("Options.Dir %q, want it to win over the environment", o.Dir)
	}
}
