package collective

import (
	"context"
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/collective/quictransport"
)

// InitFromEnv joins the job described by the torchrun-style environment that gorun sets
// (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, GORUN_TOKEN; see quictransport.ConfigFromEnv):
// it establishes the authenticated QUIC transport and returns the world group over it.
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
	if o.Logger != nil {
		cfg.Logger = o.Logger
	}
	t, err := quictransport.Establish(ctx, cfg)
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
