package shmtransport

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// shmSupported says whether this OS can make shared-memory links.
const shmSupported = true

// segment is a mapped shared-memory file.
type segment struct {
	mem  []byte
	path string // empty once unlinked (or, on the opener's side, never set)
}

// mapFlags: MAP_POPULATE, and touchPages after mapping. The pages are reserved (fallocate)
// when the file is made, so mapping them all up front costs no memory, only the page-table
// setup and a first write to each page, once per link, at setup (about 2048 pages a side
// for the default 4 MiB rings). Mapped lazily, each side paid a page fault (and, on the
// development machine, a VM, a hypervisor exit) per page on its first pass around the
// ring, and with small messages that first pass is the first thousand ops of every link
// (4 MiB a ring, 4 KiB a step): 4 ranks' 4 KiB AllReduces took 2–4× longer during it
// (benchmarks/results/scale/latency/).
const mapFlags = syscall.MAP_SHARED | syscall.MAP_POPULATE

// touchPages writes to every page of a fresh mapping once, changing nothing (an atomic add
// of 0, harmless if the peer already uses the page): under a hypervisor that shadows the
// guest's page tables, MAP_POPULATE fills the guest's tables but the first access to each
// page still exits to the hypervisor; this moves those exits to setup too.
func touchPages(mem []byte) {
	for off := 0; off+4 <= len(mem); off += os.Getpagesize() {
		atomic.AddUint32((*uint32)(unsafe.Pointer(&mem[off])), 0)
	}
}

// reserve allocates every page of the file behind fd up front, so that touching the mapping
// later can never fail. A sparse file on a full tmpfs maps fine and then kills the process
// with SIGBUS at the first page the kernel cannot back; fallocate(2) on tmpfs allocates the
// pages now (and undoes a partial allocation) or fails with ENOSPC. Tests replace it to fake
// a failure.
var reserve = func(fd int, size int64) error {
	for {
		err := syscall.Fallocate(fd, 0, 0, size)
		if err != syscall.EINTR {
			return err
		}
	}
}

// createSegment makes a new file under dir with mode 0600 and an unguessable name, sizes it
// for two rings of h.ringBytes, maps it and writes h into it.
func createSegment(dir, job string, h *header) (*segment, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return nil, fmt.Errorf("shmtransport: random name: %w", err)
	}
	path := filepath.Join(dir, shmName(job, os.Getpid(), r))
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("shmtransport: creating %s: %w", path, err)
	}
	defer syscall.Close(fd) // the mapping outlives the descriptor
	fail := func(what string, err error) (*segment, error) {
		syscall.Unlink(path)
		return nil, fmt.Errorf("shmtransport: %s %s: %w", what, path, err)
	}
	// The umask can only clear bits of 0600; set it exactly anyway so the mode never depends
	// on the environment.
	if err := syscall.Fchmod(fd, 0o600); err != nil {
		return fail("chmod", err)
	}
	size := int64(headerBytes) + 2*int64(h.ringBytes)
	if err := reserve(fd, size); err != nil {
		syscall.Unlink(path)
		return nil, &ReserveError{Dir: dir, Bytes: size, Err: err}
	}
	mem, err := syscall.Mmap(fd, 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, mapFlags)
	if err != nil {
		return fail("mapping", err)
	}
	touchPages(mem)
	h.encode(mem[:headerBytes])
	return &segment{mem: mem, path: path}, nil
}

// openSegment maps the file name (as announced by the peer) under dir and checks that it is
// the one the peer made for this link: a regular file of ours, mode 0600, the expected size,
// and a header carrying the expected nonce and ranks.
func openSegment(dir, name string, ringBytes uint64, nonce [16]byte, creatorRank, openerRank int) (*segment, error) {
	if !validShmName(name) {
		return nil, fmt.Errorf("shmtransport: %q is not a shared-memory file name of this package", name)
	}
	path := filepath.Join(dir, name)
	fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shmtransport: opening %s: %w", path, err)
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("shmtransport: stat %s: %w", path, err)
	}
	want := int64(headerBytes) + 2*int64(ringBytes)
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		return nil, fmt.Errorf("shmtransport: %s is not a regular file", path)
	case st.Uid != uint32(os.Geteuid()):
		return nil, fmt.Errorf("shmtransport: %s belongs to uid %d, not to us (%d)", path, st.Uid, os.Geteuid())
	case st.Mode&0o777 != 0o600:
		return nil, fmt.Errorf("shmtransport: %s has mode %#o, want 0600", path, st.Mode&0o777)
	case st.Size != want:
		return nil, fmt.Errorf("shmtransport: %s holds %d bytes, want %d", path, st.Size, want)
	}
	mem, err := syscall.Mmap(fd, 0, int(want), syscall.PROT_READ|syscall.PROT_WRITE, mapFlags)
	if err != nil {
		return nil, fmt.Errorf("shmtransport: mapping %s: %w", path, err)
	}
	touchPages(mem)
	h, err := decodeHeader(mem[:headerBytes], st.Size)
	if err == nil {
		switch {
		case h.nonce != nonce:
			err = fmt.Errorf("%w: nonce differs from the one announced", errHeader)
		case h.ringBytes != ringBytes:
			err = fmt.Errorf("%w: ring size %d, announced %d", errHeader, h.ringBytes, ringBytes)
		case int(h.creatorRank) != creatorRank || int(h.openerRank) != openerRank:
			err = fmt.Errorf("%w: made for ranks %d->%d, not %d->%d", errHeader, h.creatorRank, h.openerRank, creatorRank, openerRank)
		}
	}
	if err != nil {
		syscall.Munmap(mem)
		return nil, fmt.Errorf("shmtransport: %s: %w", path, err)
	}
	return &segment{mem: mem}, nil
}

// unlink removes the file; the mappings stay valid. Safe to call twice.
func (s *segment) unlink() error {
	if s.path == "" {
		return nil
	}
	p := s.path
	s.path = ""
	if err := syscall.Unlink(p); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("shmtransport: removing %s: %w", p, err)
	}
	return nil
}

// unmap releases the mapping; nothing may touch s.mem afterwards.
func (s *segment) unmap() error {
	if s.mem == nil {
		return nil
	}
	m := s.mem
	s.mem = nil
	return syscall.Munmap(m)
}

// sizeString formats a byte count for messages: "8.0 MiB (8392704 bytes)".
func sizeString(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB (%d bytes)", float64(n)/(1<<30), n)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB (%d bytes)", float64(n)/(1<<20), n)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB (%d bytes)", float64(n)/(1<<10), n)
	}
	return fmt.Sprintf("%d bytes", n)
}
