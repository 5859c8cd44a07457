// Package collective runs collective communication for data- and pipeline-parallel training:
// AllReduce, ReduceScatter, AllGather, Broadcast, Reduce, Gather, Scatter, AllToAll,
// AllToAllV, Barrier, tagged Send/Recv and subgroups, on float32, float64, int32 and int64
// buffers, over any transport.Transport (QUIC between processes, memory inside one).
//
// A program joins its job and reduces its gradients like this:
//
//	g, err := collective.InitFromEnv(ctx) // RANK, WORLD_SIZE, MASTER_ADDR, ... set by gorun
//	if err != nil { ... }
//	defer g.Close()
//	err = g.AllReduce(ctx, grads, collective.Avg)                   // float32 on the wire
//	err = g.AllReduce(ctx, grads, collective.Avg, collective.FP16)  // half the bytes
//	err = g.AllReduce(ctx, grads, collective.Avg, collective.BF16)  // half, float32's range
//	w := g.AllReduceAsync(ctx, bucket, collective.Avg)              // overlap with compute
//	...
//	err = w.Wait(ctx)
//
// # Element types
//
// The methods of Group take []float32 (the package's first type, which ddp and pipeline use).
// Every collective is also a generic function over Number (float32 | float64 | int32 | int64)
// that takes the group as its second argument, with an Async form:
//
//	err = collective.AllReduce(ctx, g, counts, collective.Sum)       // counts []int64
//	err = collective.Reduce(ctx, g, metrics, collective.Max, 0)      // metrics []float64, to rank 0
//	err = collective.Gather(ctx, g, mine, all, 0)                    // all: Size()·len(mine), on rank 0
//	err = collective.Scatter(ctx, g, all, mine, 0)                   // the inverse
//	err = collective.AllToAll(ctx, g, send, recv)                    // Size() equal blocks
//	err = collective.AllToAllV(ctx, g, send, sendCounts, recv, recvCounts)
//	err = collective.Send(ctx, g, ids, peer, tag)                    // ids []int32
//
// Generic functions rather than an interface or a tensor type: a Go user's data is already a
// slice, the element type is checked at compile time, and each call site reads like the
// method it extends. The type travels in the op header's dtype byte, so members that pass
// different types fail with a *MismatchError. The ring moves every type as its own memory
// (no conversion, no copy through float32) and reduces it with a kernel of its type: Sum, Max
// and Min for all (integer sums wrap on overflow, as Go's do), Avg for the float types only
// (integers refuse it: the division would round, and which rounding is the caller's choice).
// FP16 compression and Feedback are for float32 AllReduce and ReduceScatter only; AllReduce
// of another type always runs the ring. Chunks are Options.ChunkBytes of any type.
//
// # Algorithms and their costs
//
// With n members, a buffer of M bytes, α the latency of one message and β the time per
// byte of a link, k = M/ChunkBytes chunks:
//
//	AllReduce (ring)   2(n-1) steps; each member sends 2(n-1)/n·M         ≈ 2(n-1)α + 2(n-1)/n·Mβ
//	                   (rd, rhd, hier, oneshot, rdoneshot for float32: see tuner.go,
//	                   rdouble.go, hier.go, oneshot.go)
//	ReduceScatter      ring, n-1 steps; each sends (n-1)/n·M              ≈ (n-1)α + (n-1)/n·Mβ
//	AllGather          ring, n-1 steps; each sends (n-1)/n·M              ≈ (n-1)α + (n-1)/n·Mβ
//	Broadcast          pipelined chain root → root+1 → …; each sends M    ≈ (k+n-2)(α + Mβ/k) + nα
//	Reduce             the chain reversed, root+1 → … → root, reducing    ≈ (k+n-2)(α + Mβ/k) + nα
//	                   at every hop; each sends M once (the header lap adds nα, as Broadcast)
//	Gather, Scatter    direct to/from the root over n-1 peer links at once: the root moves
//	                   (n-1)·m for blocks of m bytes                      ≈ 3α + (n-1)·mβ at the root's port
//	AllToAll(V)        n-1 rounds of pairwise exchange (round i: send to r+i, receive from
//	                   r-i at once); each sends (n-1)·m                   ≈ (n-1)(α + mβ) (+α for V)
//
// Reduce could also be a reduce-scatter followed by sending the segments to the root; that
// moves about 2(n-1)/n·M through the root's link against the chain's M, and its n-1 senders
// converge on the root at once, so the chain (NCCL's ring Reduce) is used. Gather and
// Scatter go direct rather than along the ring: a chain would forward each block through
// the members in between, (n-1)·n/2 blocks on the wire against n-1. The peer links are
// opened on first use by both ends (shared memory between processes of one host, like any
// link), and AllToAll reuses them; see peerops.go.
//
// # Design
//
// The layers follow Gloo: a transport gives ordered, reliable byte links between ranks
// (package transport); this package builds the algorithms on them, one group at a time.
// Each group has a ring (member i sends to i+1 and receives from i-1) on channels named
// after the group, a worker goroutine that runs the group's ops in issue order, and a sender
// goroutine for the sending side of each op. The receiving side never waits for the sending
// side, so the ring cannot deadlock however little the transport buffers.
//
// AllReduce is a reduce-scatter followed by an all-gather around the ring, each rank sending
// 2(N-1)/N of the buffer, the bandwidth optimum. The N segments of the buffer are cut into
// chunks (Options.ChunkBytes) that flow through a pipeline: a rank sends chunk c of one step
// while it receives and reduces chunk c+1 of the step before. float32 data moves as the
// buffers' own memory (no encoding pass), fp16 and bf16 through preallocated scratch with
// AVX2 (and F16C) kernels on amd64, and no chunk allocates; see ring.go for the index
// arithmetic, fp16.go and bf16.go for the wire formats and their error bounds. Uncompressed
// chunks of a step lie back to back, so the wire need not see them one by one: the sending
// side writes every chunk that is ready in one Write (up to 4 MiB) and the receiving side
// reads whatever has arrived, reducing it at once (AVX2 on amd64) or, in the all-gather,
// straight into place; the chunk stays the unit of the pipeline's bookkeeping.
//
// Every op starts with a 40-byte header (op kind, sequence number, count, dtype, reduction,
// root or tag, and the wire geometry: compression, chunk size, algorithm) sent ahead of the
// data to the right neighbour, which checks it against its own call: ranks that disagree
// (a different op, or another Options.ChunkBytes) get a *MismatchError naming both calls,
// on every rank, and no rank returns success from that op. The ops over peer links (Gather,
// Scatter, AllToAll[V]) send the same header around the ring and one ahead of every
// message, whose count frames the payload (AllToAllV: a member expecting another size
// than its peer sends fails naming both, before reading a byte of it).
//
// # Timeline
//
// With Options.Timeline (InitFromEnv: GORUN_TIMELINE, gorun --timeline), every op is
// recorded on a row per group: when it was queued, when the worker started and finished
// it, with its kind, bytes, dtype, algorithm, links and sequence number (package timeline).
//
// # Failures
//
// The ring's streams carry ops back to back, so once an op fails half-way their positions
// are unknown. Like NCCL's communicator abort, a failed op (a dead peer, Options.Timeout
// without progress, a mismatch, a cancelled context) aborts the transport: every rank's
// pending and later ops fail promptly with an error that names the guilty rank through a
// *transport.PeerError. A job recovers by starting a new transport and group, as a
// restarted gorun job does.
package collective
