// Package rendezvous is the job's meeting point: a small key-value store that rank 0 serves
// over QUIC on MASTER_ADDR:MASTER_PORT, where every rank publishes what the others need to
// reach it (its data endpoint, its certificate fingerprint, later shared-memory names) and
// waits for what the others publish. It plays the part of Gloo's rendezvous Store and of
// PyTorch's TCPStore.
//
// # Security
//
// Every connection proves knowledge of the job token in both directions before any store
// operation is served. Each side sends HMAC-SHA256(token, exported keying material) where the
// keying material is exported from this very TLS session under a label naming the side (see
// [TokenProof]). Because the keying material is unique to the session, a proof cannot be
// replayed on, or relayed to, another connection: a man in the middle would hold two different
// sessions and could forge neither side's proof without the token. This is why the client does
// not need to verify the server's (ephemeral, self-signed) certificate chain: the server is
// authenticated by its proof, which the client checks before it trusts a single byte.
//
// A client that fails to prove the token is refused: its connection is closed with
// [CodeAuthFailed] and a reason, and the refusal is logged with the remote address. The
// authentication step has a deadline, so a silent stranger cannot hold resources, and each
// connection is served by its own goroutines, so a stranger never blocks other clients.
//
// # Wire format
//
// One request and one response per QUIC stream, each a frame of the form
//
//	version(1) type(1) length(4, big endian) payload(length)
//
// with strict limits on every length (see [MaxKeyLen], [MaxValueLen], [MaxKeys]). The
// first stream of a connection carries the authentication exchange.
package rendezvous
