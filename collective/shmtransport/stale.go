package shmtransport

import (
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/jobenv"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// DefaultDir is where shared-memory files are made unless GORUN_SHM_DIR (EnvShmDir) or
// Options.Dir says otherwise: a tmpfs on Linux.
const DefaultDir = "/dev/shm"

// EnvShmDir names the environment variable that overrides DefaultDir (for Options.Dir left
// empty, and for CleanStale): a directory on a tmpfs that every rank of a host sees.
const EnvShmDir = jobenv.ShmDir

// DirFromEnv returns $GORUN_SHM_DIR, or DefaultDir when it is unset or empty.
func DirFromEnv() string {
	if d := os.Getenv(EnvShmDir); d != "" {
		return d
	}
	return DefaultDir
}

// NamePrefix starts the name of every file this package creates, so that CleanStale never
// touches another program's files. The full name is
//
//	ringtrain-shm-<job>-<creator pid>-<32 random hex digits>
//
// The random part makes the name unguessable; the pid lets a later job see that the creator
// died.
const NamePrefix = "ringtrain-shm-"

const (
	maxJobLen  = 40
	randHexLen = 32
	maxNameLen = len(NamePrefix) + maxJobLen + 1 + 10 + 1 + randHexLen
)

// sanitizeJob turns a job id into something safe inside a file name: letters, digits, '_'
// and '.', at most 40 of them; "job" when empty.
func sanitizeJob(job string) string {
	var b strings.Builder
	for _, c := range job {
		if b.Len() >= maxJobLen {
			break
		}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.':
			b.WriteRune(c)
		default:
			b.WriteByte('_')
		}
	}
	if b.Len() == 0 || strings.Trim(b.String(), ".") == "" {
		return "job"
	}
	return b.String()
}

func shmName(job string, pid int, random [16]byte) string {
	return fmt.Sprintf("%s%s-%d-%x", NamePrefix, sanitizeJob(job), pid, random)
}

// parseShmName returns the creator pid recorded in a name made by shmName.
func parseShmName(name string) (pid uint32, ok bool) {
	if len(name) > maxNameLen || !strings.HasPrefix(name, NamePrefix) {
		return 0, false
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-'
		if !ok {
			return 0, false
		}
	}
	rest := name[len(NamePrefix):]
	i := strings.LastIndexByte(rest, '-')
	if i < 0 || len(rest)-i-1 != randHexLen {
		return 0, false
	}
	for _, c := range []byte(rest[i+1:]) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return 0, false
		}
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j < 1 { // the job part must not be empty
		return 0, false
	}
	p, err := strconv.ParseUint(rest[j+1:], 10, 32)
	if err != nil || p == 0 {
		return 0, false
	}
	return uint32(p), true
}

// validShmName reports whether name is a bare file name (no directory) that this package
// could have made; the side that maps a file announced by its peer opens nothing else.
func validShmName(name string) bool {
	_, ok := parseShmName(name)
	return ok
}

// CleanStale removes, from the shared-memory directory (DirFromEnv: $GORUN_SHM_DIR or
// DefaultDir), the files of this package whose creating process no longer exists (killed
// before it could remove them). Wrap runs it; a launcher may run it after a job. It returns
// the paths it removed.
func CleanStale() ([]string, error) { return CleanStaleIn(DirFromEnv()) }

// CleanStaleIn is CleanStale for the shared-memory directory dir. Files whose creator is alive
// are left alone, as are files made in another pid namespace (their pid means nothing here)
// and files that cannot be read.
func CleanStaleIn(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("shmtransport: cleaning stale files: %w", err)
	}
	self, _ := localIdentity(dir)
	var removed []string
	var errs []error
	for _, e := range entries {
		pid, ok := parseShmName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if !staleFile(path, pid, self) {
			continue
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, path)
	}
	return removed, errors.Join(errs...)
}

// staleFile decides whether the file at path, named with creator pid, was left by a process
// that is gone. The header (when written) names the creator's pid namespace and start time,
// which guard against another namespace's pids and against pid reuse.
func staleFile(path string, pid uint32, self identity) bool {
	var start uint64
	if f, err := os.Open(path); err == nil {
		var b [headerUsed]byte
		n, err := io.ReadFull(f, b[:])
		st, serr := f.Stat()
		f.Close()
		if err == nil && serr == nil && n == headerUsed {
			if h, err := decodeHeader(b[:], st.Size()); err == nil {
				if h.creatorPID != pid {
					return false // not made the way this package makes files
				}
				if h.pidNS != 0 && self.pidNS != 0 && h.pidNS != self.pidNS {
					return false // made in another pid namespace: cannot judge
				}
				start = h.creatorStart
			}
		}
		// A file without a valid header was cut short by its creator's death between
		// creating it and writing the header (or is not ours to judge by start time).
	} else {
		return false // unreadable (another user's, or just removed): leave it alone
	}
	return processGone(pid, start)
}
