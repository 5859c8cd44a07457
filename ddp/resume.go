package ddp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// SaveCheckpoint saves the training state after a completed step: every rank calls it
// at the same point (it communicates); rank 0 writes CheckpointPath(dir, st.Step)
// atomically (creating dir if needed) with the parameters, opt's state (opt may be nil),
// st, every rank's error-feedback residuals and the seeded layers' stream positions, then
// removes all but the newest Options.KeepCheckpoints checkpoints and any temporary file a
// killed writer left. It returns on every rank once the file is durable, with the same
// path, or with the same error (a failure to write on rank 0 is reported by all ranks).
//
// Only rank 0 touches dir; LoadCheckpoint has rank 0 read it and broadcast it, so the
// other ranks need not share the file system, as long as rank 0 runs where dir is.
//
// With a models.DeviceResident model, rank 0 first downloads the parameters
// (PullParams); a device optimizer's State exports its own buffers.
func (d *DDP) SaveCheckpoint(ctx context.Context, dir string, st TrainState, opt models.Optimizer) (string, error) {
	if err := d.check(); err != nil {
		return "", err
	}
	if d.inStep {
		return "", fmt.Errorf("%w: SaveCheckpoint in the middle of a step", ErrUsage)
	}
	if st.Step < 0 || st.Epoch < 0 || st.Batch < 0 || st.GlobalBatch < 0 || st.Sample < 0 {
		return "", fmt.Errorf("ddp: SaveCheckpoint: negative training position %+v", st)
	}
	res, err := d.gatherResiduals(ctx, d.Rank() == 0)
	if err != nil {
		return "", d.fail(fmt.Errorf("ddp: gathering error-feedback residuals for the checkpoint: %w", err))
	}
	path := CheckpointPath(dir, st.Step)
	var werr error
	if d.Rank() == 0 && d.dev != nil {
		// The device holds the trained values; the host copies may be stale.
		if werr = d.dev.PullParams(); werr != nil {
			werr = fmt.Errorf("ddp: downloading the parameters from %s for the checkpoint: %w", d.dev.Device(), werr)
		}
	}
	if d.Rank() == 0 && werr == nil {
		ck := &Checkpoint{State: st, WorldSize: d.Size(), Params: models.ParamSnapshot(d.params, st.Step), Residuals: res}
		if opt != nil {
			ck.Optimizer = opt.State()
		}
		for _, s := range d.seeded {
			seed, calls := s.s.State()
			ck.RNG = append(ck.RNG, LayerRNG{Layer: s.name, Seed: seed, Calls: calls})
		}
		if werr = os.MkdirAll(dir, 0o755); werr == nil {
			werr = WriteCheckpoint(path, ck)
		}
		if werr == nil {
			// Pruning is housekeeping: a failure to remove an old file does not make the
			// new checkpoint less good.
			_ = pruneCheckpoints(dir, d.opts.keep)
		}
	}
	if d.dist {
		// Every rank learns whether rank 0 wrote the file (and any rank's failure to take
		// part), so all return the same outcome.
		if err := d.g.AgreeErr(ctx, werr); err != nil {
			var ae *collective.AgreementError
			if !errors.As(err, &ae) {
				return "", d.fail(fmt.Errorf("ddp: sharing the checkpoint's outcome: %w", err))
			}
			return "", fmt.Errorf("ddp: SaveCheckpoint %s: %w", path, err)
		}
	}
	if werr != nil {
		return "", werr
	}
	return path, nil
}

// LoadCheckpoint restores the newest checkpoint of dir (see Latest) on every rank: rank 0
// reads and verifies it and broadcasts it; every rank loads the parameters, opt's state
// (opt may be nil), its error-feedback residuals and the seeded layers' stream positions,
// and gets the saved TrainState. All ranks call it at the same point, before training.
// It returns the checkpoint's path, or "" and a zero TrainState when dir holds none (a
// fresh start). Errors (a corrupt file, a checkpoint of another model or optimizer) are
// reported on every rank: when some ranks cannot apply the checkpoint, every rank returns
// a *collective.AgreementError naming them (within one exchange, not after a timeout).
//
// Error-feedback residuals are restored per rank when the checkpoint was written by as
// many ranks; otherwise every rank starts from their mean over the writing ranks, which
// keeps the averaged correction still owed (their sum divided by the ranks).
//
// With a models.DeviceResident model, the loaded parameters are uploaded (PushParams).
func (d *DDP) LoadCheckpoint(ctx context.Context, dir string, opt models.Optimizer) (TrainState, string, error) {
	if err := d.check(); err != nil {
		return TrainState{}, "", err
	}
	if d.inStep {
		return TrainState{}, "", fmt.Errorf("%w: LoadCheckpoint in the middle of a step", ErrUsage)
	}
	var msg []byte
	var path string
	var ck *Checkpoint
	if d.Rank() == 0 {
		var err error
		path, err = Latest(dir)
		switch {
		case errors.Is(err, ErrNoCheckpoint):
			msg = []byte{statusNone}
		case err != nil:
			msg = append([]byte{statusErr}, err.Error()...)
		default:
			b, rerr := os.ReadFile(path)
			if rerr == nil {
				ck = new(Checkpoint)
				if uerr := ck.UnmarshalBinary(b); uerr != nil {
					rerr = &CheckpointError{Path: path, Err: uerr}
				}
			} else {
				rerr = &CheckpointError{Path: path, Err: rerr}
			}
			if rerr != nil {
				msg = append([]byte{statusErr}, rerr.Error()...)
			} else {
				msg = append(append(make([]byte, 0, 1+len(path)+1+len(b)), statusOK), path...)
				msg = append(append(msg, 0), b...)
			}
		}
	}
	if d.dist {
		var err error
		if msg, err = d.g.BroadcastBytes(ctx, msg, 0); err != nil {
			return TrainState{}, "", d.fail(fmt.Errorf("ddp: receiving the checkpoint from rank 0: %w", err))
		}
	}
	if len(msg) == 0 {
		return TrainState{}, "", errors.New("ddp: empty checkpoint message from rank 0")
	}
	switch msg[0] {
	case statusNone:
		return TrainState{}, "", nil
	case statusErr:
		// Every rank got the same message: all fail alike without another exchange.
		if d.Rank() == 0 {
			return TrainState{}, "", errors.New(msgOf(msg))
		}
		return TrainState{}, "", fmt.Errorf("ddp: rank 0 could not load the checkpoint: %s", msgOf(msg))
	}
	st, path, err := d.load(msg, path, ck, opt)
	if d.dist {
		// A rank that cannot use the checkpoint (its model or optimizer does not fit it) must
		// not leave the others to start training and wait for it in their first AllReduce
		// until the group's timeout: every rank learns every rank's outcome, and all fail
		// naming the ranks that failed.
		if aerr := d.g.AgreeErr(ctx, err); aerr != nil {
			var ae *collective.AgreementError
			if !errors.As(aerr, &ae) {
				return TrainState{}, "", d.fail(fmt.Errorf("ddp: agreeing on the checkpoint's load: %w", aerr))
			}
			return TrainState{}, "", fmt.Errorf("ddp: LoadCheckpoint: %w", aerr)
		}
	}
	if err != nil {
		return TrainState{}, "", err
	}
	return st, path, nil
}

// load applies the checkpoint message of LoadCheckpoint on this rank (rank 0 passes the
// checkpoint it parsed already, the others parse msg) and returns its training state and path.
func (d *DDP) load(msg []byte, path string, ck *Checkpoint, opt models.Optimizer) (TrainState, string, error) {
	if ck == nil {
		i := strings.IndexByte(string(msg[1:min(len(msg), 1+4096)]), 0)
		if i < 0 {
			return TrainState{}, "", errors.New("ddp: malformed checkpoint message from rank 0")
		}
		path = string(msg[1 : 1+i])
		ck = new(Checkpoint)
		if err := ck.UnmarshalBinary(msg[2+i:]); err != nil {
			return TrainState{}, "", &CheckpointError{Path: path + " (as received from rank 0)", Err: err}
		}
	}
	if err := d.apply(ck, opt); err != nil {
		return TrainState{}, "", &CheckpointError{Path: path, Err: err}
	}
	if d.dev != nil {
		// The loaded values are on the host: the device's are stale.
		if err := d.dev.PushParams(); err != nil {
			return TrainState{}, "", fmt.Errorf("ddp: uploading the checkpoint's parameters to %s: %w", d.dev.Device(), err)
		}
	}
	return ck.State, path, nil
}

// apply loads a checkpoint's tensors into the model, the optimizer and the residuals,
// after checking that everything fits.
func (d *DDP) apply(ck *Checkpoint, opt models.Optimizer) error {
	if opt != nil && ck.Optimizer.Kind == "" {
		return errors.New("it holds no optimizer state, but an optimizer was given to restore")
	}
	if err := ck.Params.LoadParams(d.params); err != nil {
		return fmt.Errorf("written for another model: %w", err)
	}
	if opt != nil {
		if err := opt.LoadState(ck.Optimizer); err != nil {
			return fmt.Errorf("optimizer state: %w", err)
		}
	}
	if err := d.loadResiduals(ck); err != nil {
		return err
	}
	for _, s := range d.seeded {
		for _, r := range ck.RNG {
			if r.Layer == s.name {
				s.s.SetState(r.Seed, r.Calls)
			}
		}
	}
	return nil
}

const (
	statusNone byte = iota
	statusOK
	statusErr
)

func msgOf(b []byte) string {
	if len(b) <= 1 {
		return "(no message)"
	}
	return string(b[1:])
}

// residualName names rank r's residual of parameter p in a checkpoint.
func residualName(r int, p string) string { return "rank" + strconv.Itoa(r) + "/" + p }

// gatherResiduals collects every rank's error-feedback residuals, bucket by bucket, into a
// snapshot on rank 0 (others get an empty one). Without error feedback it does nothing.
func (d *DDP) gatherResiduals(ctx context.Context, keep bool) (models.Snapshot, error) {
	if len(d.buckets) == 0 || d.buckets[0].residual == nil {
		return models.Snapshot{}, nil
	}
	n, me := d.Size(), d.Rank()
	snap := models.Snapshot{Kind: "ddp-residuals"}
	for _, b := range d.buckets {
		m := len(b.flat)
		all := make([]float32, n*m)
		copy(all[me*m:], b.residual)
		if err := d.g.AllGather(ctx, all); err != nil {
			return models.Snapshot{}, err
		}
		if !keep {
			continue
		}
		for r := range n {
			off := r * m
			for _, pr := range b.params {
				sz := pr.p.Size()
				snap.Slices = append(snap.Slices, models.NamedSlice{Name: residualName(r, pr.p.Name), Shape: append([]int(nil), pr.p.Shape...), Data: all[off : off+sz]})
				off += sz
			}
		}
	}
	return snap, nil
}

// loadResiduals restores this rank's residuals from a checkpoint (see LoadCheckpoint).
func (d *DDP) loadResiduals(ck *Checkpoint) error {
	if len(d.buckets) == 0 || d.buckets[0].residual == nil {
		return nil
	}
	byName := make(map[string][]float32, len(ck.Residuals.Slices))
	for _, s := range ck.Residuals.Slices {
		byName[s.Name] = s.Data
	}
	same := ck.WorldSize == d.Size()
	for _, b := range d.buckets {
		clear(b.residual)
		if ck.Residuals.Kind == "" {
			continue
		}
		off := 0
		for _, pr := range b.params {
			sz := pr.p.Size()
			dst := b.residual[off : off+sz]
			off += sz
			if same {
				src, ok := byName[residualName(d.Rank(), pr.p.Name)]
				if !ok || len(src) != sz {
					return fmt.Errorf("error-feedback residual of %s for rank %d missing or of the wrong size", pr.p.Name, d.Rank())
				}
				copy(dst, src)
				continue
			}
			for r := range ck.WorldSize {
				src, ok := byName[residualName(r, pr.p.Name)]
				if !ok || len(src) != sz {
					return fmt.Errorf("error-feedback residual of %s for rank %d missing or of the wrong size", pr.p.Name, r)
				}
				for i, v := range src {
					dst[i] += v / float32(ck.WorldSize)
				}
			}
		}
	}
	return nil
}
