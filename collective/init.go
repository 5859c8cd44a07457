package collective

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/collective/stack"
	"github.com/ringtrain/ringtrain/timeline"
)

// InitFromEnv joins the job described by the torchrun-style environment that gorun sets
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GORUN_TOKEN; see quictransport.ConfigFromEnv)
// and returns the world group over the transports the job asks for, composed by package
// stack (the algorithms here know none of them):
//
//   - GORUN_TRANSPORT (gorun --transport) picks what carries links between hosts, and
//     between ranks of one host when shared memory is off: "tls" (the default: TLS 1.3 over
//     TCP, pinning the certificates published at the rendezvous), "tcp" (plaintext after a
//     token handshake; not encrypted), or "quic". The old "auto" means tls, the old "shm"
//     means GORUN_SHM=require.
//   - GORUN_SHM (gorun --shm): "on" (the default) moves the bytes between ranks of one host
//     (same boot id and network namespace) through shared memory, "off" does not, "require"
//     fails naming a peer on another host.
//   - GORUN_SOCKET_IFNAME (gorun --iface) picks the interface or address to advertise and
//     bind; GORUN_STREAMS the TCP connections per link.
//
// Ranks always meet, authenticate and watch each other over QUIC. Each rank logs once per
// peer what carries its links.
//
// At most one Options may be given (none means the zero Options); its Logger, if set, is
// also the transports'. The group owns the transport: Close closes both.
//
// GORUN_TIMELINE (gorun --timeline) makes the group record its ops into the process's
// timeline (timeline.FromEnv) unless Options.Timeline is set; Close writes the file.
func InitFromEnv(ctx context.Context, opts ...Options) (*Group, error) {
	if len(opts) > 1 {
		return nil, fmt.Errorf("collective: InitFromEnv: %d Options given, want at most one", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	if o.Timeline == nil {
		var err error
		if o.Timeline, err = timeline.FromEnv(); err != nil {
			return nil, err
		}
	}
	t, err := stack.FromEnv(ctx, o.Logger)
	if err != nil {
		return nil, err
	}
	g, err := New(ctx, t, o)
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	g.ownsT = true
	return g, nil
}
