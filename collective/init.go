package collective

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// InitFromEnv joins the job described by the torchrun-style environment that gorun sets
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GORUN_TOKEN; see quictransport.ConfigFromEnv):
// it establishes the authenticated QUIC transport and returns the world group over it.
//
// GORUN_TRANSPORT (gorun --transport) chooses what carries the bytes of each ring edge:
// "auto" (the default) moves them through shared memory where both ranks are on the same host
// (same boot id and network namespace) and over QUIC otherwise; "quic" always uses QUIC; "shm"
// requires shared memory and fails naming a peer on another host. Ranks meet and authenticate
// over QUIC in every mode: shared-memory mappings are announced over the authenticated links.
//
// At most one Options may be given (none means the zero Options); its Logger, if set, is
// also the transport's. The group owns the transport: Close closes both.
func InitFromEnv(ctx context.Context, opts ...Options) (*Group, error) {
	if len(opts) > 1 {
		return nil, fmt.Errorf("collective: InitFromEnv: %d Options given, want at most one", len(opts))
	}
	var o Options
	if len(opts) == 1 {
		o = opts[0]
	}
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	mode, err := shmtransport.ModeFromEnv()
	if err != nil {
		return nil, err
	}
	if o.Logger != nil {
		cfg.Logger = o.Logger
	}
	base, err := quictransport.Establish(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var t transport.Transport = base
	if mode != shmtransport.ModeQUIC {
		shm, err := shmtransport.Wrap(base, shmtransport.Options{Mode: mode})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("rank %d: %w", cfg.Rank, err), base.Close())
		}
		t = shm // closing it closes base too
	}
	g, err := New(ctx, t, o)
	if err != nil {
		return nil, errors.Join(err, t.Close())
	}
	g.ownsT = true
	if err := g.agreeTuner(ctx); err != nil { // tuner.go: every rank uses rank 0's table
		return nil, errors.Join(err, g.Close())
	}
	return g, nil
}
