// Package collective runs collective communication for data- and pipeline-parallel training:
// ring AllReduce, ReduceScatter, AllGather, Broadcast, Barrier, tagged Send/Recv and
// subgroups, on []float32 buffers, over any transport.Transport (QUIC between processes,
// memory inside one).
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
// arithmetic, fp16.go and bf16.go for the wire formats and their error bounds.
//
// Every op starts with a 40-byte header (op kind, sequence number, count, dtype, reduction,
// root or tag, and the wire geometry: compression, chunk size, algorithm) sent ahead of the
// data to the right neighbour, which checks it against its own call: ranks that disagree
// (a different op, or another Options.ChunkBytes) get a *MismatchError naming both calls,
// on every rank, and no rank returns success from that op.
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
