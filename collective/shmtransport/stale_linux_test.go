package shmtransport

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func init() {
	// "create": make a segment in $SHM_DIR the way a rank does during setup, print its path
	// and wait to be killed.
	children["create"] = func() error {
		self, err := localIdentity(os.Getenv("SHM_DIR"))
		if err != nil {
			return err
		}
		h := header{ringBytes: 1 << 12, creatorPID: uint32(os.Getpid()), creatorStart: self.start, pidNS: self.pidNS}
		seg, err := createSegment(os.Getenv("SHM_DIR"), "killed", &h)
		if err != nil {
			return err
		}
		fmt.Println(seg.path)
		time.Sleep(time.Minute)
		return nil
	}
}

// deadPID returns the pid of a process that has exited and been reaped.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip(err)
	}
	return cmd.Process.Pid
}

// writeFile makes a file in dir named for pid, with a header claiming pid, start and pidNS
// (no header when withHeader is false).
func writeFile(t *testing.T, dir string, pid int, start, pidNS uint64, withHeader bool) string {
	t.Helper()
	path := filepath.Join(dir, shmName("t", pid, [16]byte{byte(len(dir)), byte(pid), byte(start), byte(pidNS)}))
	b := make([]byte, 0)
	if withHeader {
		b = make([]byte, headerBytes+2*minRingBytes)
		h := header{ringBytes: minRingBytes, creatorPID: uint32(pid), creatorStart: start, pidNS: pidNS}
		h.encode(b)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCleanStale(t *testing.T) {
	dir := shmDir(t)
	self, err := localIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	dead := deadPID(t)
	deadFile := writeFile(t, dir, dead, 1, self.pidNS, true)
	deadNoHeader := writeFile(t, dir, dead, 2, 0, false)
	reused := writeFile(t, dir, os.Getpid(), self.start+1, self.pidNS, true) // our pid, older process
	alive := writeFile(t, dir, os.Getpid(), self.start, self.pidNS, true)
	otherNS := writeFile(t, dir, dead, 3, self.pidNS+1, true)
	foreign := filepath.Join(dir, "somebody-else-123")
	if err := os.WriteFile(foreign, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	removed, err := CleanStaleIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	want := []string{deadFile, deadNoHeader, reused}
	slices.Sort(want)
	if !slices.Equal(removed, want) {
		t.Fatalf("removed %v\nwant    %v", removed, want)
	}
	for _, p := range []string{alive, otherNS, foreign} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s was removed: %v", p, err)
		}
	}
	// Wrap cleans its directory.
	again := writeFile(t, dir, dead, 9, self.pidNS, true)
	ts, _ := wrapAll(t, 1, 0, func(int) Options { return Options{Dir: dir} })
	_ = ts
	if _, err := os.Stat(again); !os.IsNotExist(err) {
		t.Fatalf("Wrap left the stale %s: %v", again, err)
	}
}

// TestCleanStaleAfterKill9: a rank killed with SIGKILL while it holds a freshly made file
// (between creating it and the peer mapping it) leaves it behind; the next job's CleanStale
// removes it.
func TestCleanStaleAfterKill9(t *testing.T) {
	dir := shmDir(t)
	var cmds []*exec.Cmd
	var paths []string
	for range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), envChild+"=create", "SHM_DIR="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			t.Fatalf("child: %v", err)
		}
		cmds = append(cmds, cmd)
		paths = append(paths, strings.TrimSpace(line))
	}
	if removed, _ := CleanStaleIn(dir); len(removed) != 0 {
		t.Fatalf("removed files of live processes: %v", removed)
	}
	for _, c := range cmds {
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("expected %s to survive kill -9: %v", p, err)
		}
	}
	removed, err := CleanStaleIn(dir)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(removed)
	slices.Sort(paths)
	if !slices.Equal(removed, paths) {
		t.Fatalf("removed %v, want %v", removed, paths)
	}
	if names := dirEntries(t, dir); len(names) != 0 {
		t.Fatalf("left: %v", names)
	}
}

func TestParseProcStat(t *testing.T) {
	// The command name may hold spaces and parentheses; fields are counted after the last ')'.
	line := "123 (we (ird) name) S 1 123 123 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10"
	start, state, err := parseProcStat([]byte(line))
	if err != nil || state != 'S' || start != 987654 {
		t.Fatalf("got start %d state %c err %v", start, state, err)
	}
	for _, bad := range []string{"", "123 (x)", "123 (x) S 1 2", "123 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 abc"} {
		if _, _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
