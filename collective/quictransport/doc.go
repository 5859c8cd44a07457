// Package quictransport implements transport.Transport over QUIC (quic-go): the links the
// collective algorithms run on, between the ranks of one job, authenticated by the job token.
//
// # Joining
//
// [Establish] joins a job described by a [Config] (usually from [ConfigFromEnv], i.e. the
// torchrun environment plus GORUN_TOKEN). Rank 0 serves the rendezvous store
// (package rendezvous) on MASTER_ADDR:MASTER_PORT. Every rank makes an ephemeral ECDSA P-256
// certificate, binds one UDP socket for its data endpoint, publishes {address, SHA-256
// certificate fingerprint} in the store and reads every other rank's. A rank missing when
// JoinTimeout passes is named in a [*JoinTimeoutError]. The store stays up for the life of
// the job: [Transport.Store] hands it to whoever needs to exchange more (for instance the
// names of shared-memory segments).
//
// # Links
//
// There is one QUIC connection per pair of ranks, dialled on first use by the lower rank, and
// one bidirectional stream per (peer, channel) Link, opened by the lower rank, which writes a
// small header naming the channel at once (a QUIC stream is invisible to the peer until it
// carries data). The higher rank's Link waits for that stream; streams that arrive before
// anyone asks for them are parked. Both ends authenticate each other:
//
//   - the dialer pins the acceptor's certificate to the fingerprint published in the
//     authenticated store (no chain, no blind trust);
//   - the acceptor requires a client certificate, accepts only lower ranks' published
//     fingerprints during TLS, then checks the certificate against the store entry of the
//     rank the dialer claims to be;
//   - both exchange HMAC-SHA256 proofs of the job token bound to this TLS session's exported
//     keying material and to the (dialer, acceptor) ranks (see rendezvous.TokenProof).
//
// Anything else is refused with a QUIC application error and logged with the remote address;
// a refused stranger never touches the job's connections.
//
// # Failures
//
// QUIC's idle timeout is Config.PeerTimeout, with keep-alives every third of it, so a peer that
// dies without a word (SIGKILL, lost host) is noticed within PeerTimeout: pending and later
// Reads and Writes on its links fail with an error wrapping a *transport.PeerError naming it.
// A detected failure or [Transport.Abort] fails the whole transport (Done is closed, Err says
// why) and tells everyone: every connection is closed with an abort reason naming the guilty
// rank and the rank that noticed, so the receivers blame the original culprit, not the
// messenger ("rank 3: ... (reported by rank 2)"), and pass it on. The notice is also posted
// in the store, which every rank watches, so ranks with no connection to the failing one learn
// it too; and each rank leaves a last will in the store, so a rank that dies before talking to
// anyone is reported by the store within PeerTimeout. Losing the store itself is reported as
// rank 0's failure. A peer that closes in order ([Transport.Close]) only ends the links to
// it.
//
// No orderly end of a stream may overtake an abort reason, or a survivor would read a bare
// io.EOF where it should learn who failed. So: once a transport has failed, closing a link
// resets its stream (RESET_STREAM and STOP_SENDING) with an error code that names the guilty
// rank, instead of ending it with a FIN; a Read or Write that sees the connection fail fails
// the transport (sending the abort reasons) before it returns, so the caller's reaction
// cannot outrun them; and since quic-go reports io.EOF for a finished stream even when its
// connection then closes with a reason, a link whose peer ended the stream waits briefly
// (250 ms at most) for the connection to end too, and reports its failure if it does.
//
// # Ending
//
// As in NCCL: [Transport.Shutdown] flushes (Finalize), [Transport.Close] frees (Destroy),
// [Transport.Abort] kills in-flight work. Close is prompt and local, and QUIC drops what
// the peer has not read yet, even bytes already delivered to its QUIC stack. Shutdown waits
// until every peer has read every byte written to it: each link counts the bytes written
// and read, and Shutdown asks the peers, on each connection's control stream (the hello's
// stream, kept open), to answer once their Reads have returned that many.
//
// # Throughput
//
// quic-go on loopback is CPU-bound (a few hundred MB/s per stream on this project's 2-core
// machine). The transport uses large flow-control windows from the first byte
// (Config.StreamWindow, Config.ConnWindow) rather than waiting for auto-tuning, asks for large
// UDP socket buffers (forcing them past net.core.rmem_max when permitted), and passes the
// caller's buffers straight to quic-go, which sends from them without another copy. Callers
// should write large buffers: see BenchmarkLinkThroughput.
package quictransport
