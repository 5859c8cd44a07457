// Package shmtransport carries the ring's bytes through shared memory between ranks that run
// on the same host, while ranks on other hosts keep using the base (QUIC) transport.
//
// Ranks still meet, authenticate and form the ring over the base transport. Wrap puts a
// transport.Transport in front of it that decides, for every link (one ring edge, one
// channel), whether both ends share a host: the same kernel boot (/proc/sys/kernel/random/boot_id),
// the same network namespace (so that network-namespace "hosts" in multi-host tests stay
// apart) and the same /dev/shm. That identity is exchanged over the base transport's own,
// authenticated link for the channel. If both ends agree, the link's data moves through a
// mapped file under /dev/shm; otherwise the base link is handed to the algorithms unchanged.
// The collective algorithms only ever see transport.Link and do not change.
//
// # The shared-memory link
//
// The lower rank of a pair creates a file under /dev/shm with mode 0600 and an unguessable
// name, announces the name and a random nonce over the authenticated base link, and removes
// the file as soon as the other side has mapped it and checked its header (magic, version,
// sizes, nonce, ranks). From then on nothing outside the two processes can open it. Each
// direction is a single-producer/single-consumer byte ring with a monotonically increasing
// head (written only by the producer) and tail (written only by the consumer), each on its own
// cache lines. A waiter sleeps on one of the link's two wake-up sockets (connected Unix
// sockets in the abstract namespace, one per direction), so that its goroutine parks and the
// rank's other goroutine keeps the processor; it says in the mapping how much it waits for,
// and the peer writes one byte to wake it only once that much has arrived (or room was made),
// so a large transfer costs one wake-up per step rather than one per publish. Spinning first
// (WaitSpinThenBlock) and sleeping on a futex in the mapping (Options.SleepOnFutex) are
// options; on the 2-core machine this was built on, both were slower (see Wait).
//
// # Where the files live, and a full tmpfs
//
// The files are made in /dev/shm, or in the directory named by the environment variable
// GORUN_SHM_DIR (EnvShmDir; Options.Dir overrides both). It must be a tmpfs (or another
// file system that supports fallocate) that every rank of the host sees. Each link needs
// 2·RingBytes + 4 KiB there (8 MiB + 4 KiB by default), and reserves all of it (fallocate(2))
// before mapping the file: a sparse file would map fine on a nearly full tmpfs (Docker's
// default /dev/shm is 64 MiB) and then kill the rank with SIGBUS at the first page the tmpfs
// cannot back. When the reservation fails (ENOSPC, or a file system without fallocate), the
// link stays on the base transport and the lower rank of the edge, which creates the file,
// logs one warning per edge (Options.Logger, default slog.Default()) naming both ranks, the
// size and the directory; with GORUN_TRANSPORT=shm it is an error instead.
//
// # Failure
//
// A peer that dies (even by kill -9) never leaves the other side hanging: the kernel closes
// the dead process's wake-up sockets, which a sleeping waiter sees at once; the base link for
// the channel and the base transport's Done channel are watched as well (and, for futex
// sleepers, the peer's process is polled). Every pending and later Read or Write then fails
// with an error wrapping *transport.PeerError that names the dead rank. Files left behind by processes that were
// killed before they could remove them carry a recognizable prefix and their creator's pid,
// and CleanStale (run by Wrap, and callable by a launcher) removes those whose creator is gone.
//
// Shared memory needs Linux; elsewhere Wrap in ModeAuto keeps every link on the base
// transport.
package shmtransport
