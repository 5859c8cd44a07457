// Package datalink moves the bytes of ring links between hosts over TCP while QUIC (package
// quictransport) keeps forming and guarding the job: rendezvous, authentication, certificate
// pinning, control messages and liveness.
//
// [Wrap] takes the base (QUIC) transport and returns one whose [Transport.Link] sets up, on
// first use of each (peer, channel), a data link negotiated over the authenticated base link:
//
//   - tls ([ModeTLS], the default): TLS 1.3 over TCP. Both ends present the ephemeral
//     certificates whose fingerprints they published at the rendezvous (the same identities as
//     QUIC) and pin each other's; the dialer also proves the job token with an HMAC bound to the
//     session's exported keying material and to a nonce the acceptor sent over QUIC.
//   - tcp ([ModeTCP], opt-in): plaintext TCP after the same token proof, bound to the one-time
//     nonce that travelled over the encrypted QUIC link. For trusted fabrics only: the data is
//     neither encrypted nor integrity-protected beyond TCP's checksum.
//   - quic ([ModeQUIC]): the base link itself, as before. Also the fallback when the TCP
//     connection cannot be made, with a warning naming the edge.
//
// Each link has Options.Streams TCP connections (GORUN_STREAMS), over which it stripes its
// bytes in Options.StripeBytes blocks. Sockets get TCP_NODELAY and large buffers; writes go
// straight from the caller's buffer to the socket (crypto/tls seals them into 16 KiB records
// in a reused buffer), so the data path allocates nothing per chunk.
//
// With Options.Shm, links between ranks of one host (same host identity) stay on the base
// link: a shared-memory layer above (package shmtransport) takes them over.
//
// # Failures
//
// The base transport stays in charge of liveness: its QUIC connection to each peer carries the
// link's control channel and its keep-alives, so a dead peer or a cut link fails it within
// GORUN_PEER_TIMEOUT, and every data link then fails with the base's error, which names the
// guilty rank. A TCP connection that ends while the peer has not closed the link in order (on
// the control channel) and the base has not reported a failure within Options.BrokenGrace is
// blamed on the peer: the transport aborts with a *transport.PeerError naming it, which the base
// passes to every rank. A connection to the TCP listener that does not prove the token, shows
// a certificate no lower rank published, or names no pending link is refused and logged with
// its remote address.
//
// # Ending
//
// [Transport.Shutdown] waits until each peer has read every byte written to it (a count
// exchanged on the control channel), then drains the base; [Transport.Close] closes every
// connection in order; [Transport.Abort] aborts the base, which tells every peer. A link's
// Close sends a closing frame with the count of bytes it read, so that a peer whose Shutdown
// comes later still learns it (no one is left to answer a drain request), and keeps its control
// channel open until the peer's closing frame is in too: the base's own Shutdown counts control
// bytes, and a frame left unread would look like data lost. A peer that closed its whole
// transport in order (transport.ErrPeerClosed) is done with the data, as in quictransport.
package datalink
