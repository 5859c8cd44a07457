package shmtransport

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// localIdentity describes this process; dir is the shared-memory directory.
func localIdentity(dir string) (identity, error) {
	var id identity
	raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id, fmt.Errorf("shmtransport: reading boot id: %w", err)
	}
	b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(string(raw)), "-", ""))
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("shmtransport: malformed boot id %q", strings.TrimSpace(string(raw)))
	}
	copy(id.bootID[:], b)
	if id.netNS, err = inode("/proc/self/ns/net"); err != nil {
		return id, err
	}
	if id.pidNS, err = inode("/proc/self/ns/pid"); err != nil {
		return id, err
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return id, fmt.Errorf("shmtransport: shared-memory directory %s: %w", dir, err)
	}
	id.shmDev = uint64(st.Dev)
	id.pid = uint32(os.Getpid())
	start, _, err := procStat(os.Getpid())
	if err != nil {
		return id, err
	}
	id.start = start
	return id, nil
}

func inode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("shmtransport: %s: %w", path, err)
	}
	return st.Ino, nil
}

// errNoProcess says a pid names no live process.
var errNoProcess = errors.New("no such process")

// procStat returns the start time (clock ticks since boot) and state letter of process pid,
// or errNoProcess when it does not exist.
func procStat(pid int) (start uint64, state byte, err error) {
	// A fixed buffer keeps this allocation-free; /proc/pid/stat is a few hundred bytes, and
	// the fields we need come within the first 512 after the command name.
	var buf [1024]byte
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/stat", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
			return 0, 0, errNoProcess
		}
		return 0, 0, err
	}
	n, err := syscall.Read(fd, buf[:])
	syscall.Close(fd)
	if err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return 0, 0, errNoProcess
		}
		return 0, 0, err
	}
	return parseProcStat(buf[:max(n, 0)])
}

// parseProcStat extracts state (field 3) and starttime (field 22) from /proc/pid/stat. The
// command name (field 2) is in parentheses and may itself contain spaces and parentheses, so
// fields are counted from the last ')'.
func parseProcStat(b []byte) (start uint64, state byte, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, errors.New("shmtransport: malformed /proc/pid/stat")
	}
	rest := b[i+2:]
	field := 3
	for len(rest) > 0 {
		j := 0
		for j < len(rest) && rest[j] != ' ' {
			j++
		}
		tok := rest[:j]
		switch field {
		case 3:
			if len(tok) == 0 {
				return 0, 0, errors.New("shmtransport: malformed /proc/pid/stat")
			}
			state = tok[0]
		case 22:
			v, err := strconv.ParseUint(string(tok), 10, 64)
			if err != nil {
				return 0, 0, errors.New("shmtransport: malformed /proc/pid/stat")
			}
			return v, state, nil
		}
		field++
		if j >= len(rest) {
			break
		}
		rest = rest[j+1:]
	}
	return 0, 0, errors.New("shmtransport: short /proc/pid/stat")
}

// processGone reports whether the process pid that started at start (ticks since boot) has
// exited: it no longer exists, is a zombie, or its pid now belongs to a newer process.
func processGone(pid uint32, start uint64) bool {
	if pid == 0 {
		return false
	}
	s, state, err := procStat(int(pid))
	if errors.Is(err, errNoProcess) {
		return true
	}
	if err != nil {
		return false // cannot tell; do not declare a live peer dead
	}
	return state == 'Z' || state == 'X' || (start != 0 && s != start)
}
