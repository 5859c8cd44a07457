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
// cache lines. A waiter spins briefly and then sleeps on a futex word in the mapping, so a
// blocked rank burns no core and an arriving chunk wakes it within microseconds.
//
// # Failure
//
// A peer that dies (even by kill -9) never leaves the other side hanging: the base link for
// the channel, the base transport's Done channel and, on the same host, the peer's process
// itself are watched, and every pending and later Read or Write fails with an error wrapping
// *transport.PeerError that names the dead rank. Files left behind by processes that were
// killed before they could remove them carry a recognizable prefix and their creator's pid,
// and CleanStale (run by Wrap, and callable by a launcher) removes those whose creator is gone.
//
// Shared memory needs Linux; elsewhere Wrap in ModeAuto keeps every link on the base
// transport.
package shmtransport
