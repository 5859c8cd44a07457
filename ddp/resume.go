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
// st, every rank's CommHook state (StatefulHook: error-feedback residuals...) and the
// seeded layers' stream positions, then
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
// (opt may be nil), its CommHook state (StatefulHook.LoadState) and the seeded layers' stream positions,
// and gets the saved TrainState. All ranks call it at the same point, before training.
// It returns the checkpoint's path, or "" and a zero TrainState when dir holds none (a
// fresh start). Errors (a corrupt file, a checkpoint of another model or optimizer) are
// reported on every rank: when some ranks cannot apply the checkpoint, every rank returns
// a *collective.AgreementError naming them (within one exchange, not after a timeout).
//
// CompressHook's error-feedback residuals are restored per rank when the checkpoint was
// written by as many ranks; otherwise every rank starts from their mean over the writing
// ranks, which keeps the averaged correction still owed (their sum divided by the ranks).
// State written by another hook is not applied: the hook starts afresh.
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

// residualName names rank r's hook state slice name in a checkpoint.
func residualName(r int, name string) string { return "rank" + strconv.Itoa(r) + "/" + name }

// gatherResiduals collects every rank's CommHook state (StatefulHook.State: error-feedback
// residuals, PowerSGD's factors) into a snapshot on rank 0 (others get an empty one), kind
// "ddp-hook/<hook name>", slices "rank<r>/<name>". A hook without state (or training alone)
// gives an empty snapshot.
func (d *DDP) gatherResiduals(ctx context.Context, keep bool) (models.Snapshot, error) {
	sh, ok := d.opts.hook.(StatefulHook)
	if !ok || !d.dist {
		return models.Snapshot{}, nil
	}
	mine := sh.State()
	if len(mine) == 0 {
		return models.Snapshot{}, nil
	}
	n, me := d.Size(), d.Rank()
	m := 0
	for _, s := range mine {
		m += len(s.Data)
	}
	all := make([]float32, n*m)
	off := me * m
	for _, s := range mine {
		off += copy(all[off:], s.Data)
	}
	// Every rank's state has the same names and sizes (StatefulHook's contract), so one
	// AllGather of equal parts collects them; a rank whose size differs fails the op on
	// every rank with a MismatchError.
	if err := d.g.AllGather(ctx, all); err != nil {
		return models.Snapshot{}, err
	}
	if !keep {
		return models.Snapshot{}, nil
	}
	snap := models.Snapshot{Kind: hookStateKind(d.opts.hook)}
	for r := range n {
		off := r * m
		for _, s := range mine {
			sz := len(s.Data)
			snap.Slices = append(snap.Slices, models.NamedSlice{Name: residualName(r, s.Name), Shape: append([]int(nil), s.Shape...), Data: all[off : off+sz]})
			off += sz
		}
	}
	return snap, nil
}

// loadResiduals restores this rank's CommHook state from a checkpoint (see LoadCheckpoint):
// the slices of every writing rank, split by rank, go to StatefulHook.LoadState; a
// checkpoint without state, or with the state of another hook, resets the hook.
func (d *DDP) loadResiduals(ck *Checkpoint) error {
	sh, ok := d.opts.hook.(StatefulHook)
	if !ok || !d.dist {
		return nil
	}
	var saved [][]models.NamedSlice
	if ck.Residuals.Kind != "" && sameHookState(d.opts.hook, ck.Residuals.Kind) {
		if ck.WorldSize < 1 {
			return fmt.Errorf("CommHook state saved by %d ranks", ck.WorldSize)
		}
		saved = make([][]models.NamedSlice, ck.WorldSize)
		for _, s := range ck.Residuals.Slices {
			rs, name, ok := strings.Cut(s.Name, "/")
			r, err := strconv.Atoi(strings.TrimPrefix(rs, "rank"))
			if !ok || err != nil || !strings.HasPrefix(rs, "rank") || r < 0 || r >= ck.WorldSize {
				return fmt.Errorf("CommHook state slice %q does not name a rank of %d", s.Name, ck.WorldSize)
			}
			saved[r] = append(saved[r], models.NamedSlice{Name: name, Shape: s.Shape, Data: s.Data})
		}
	}
	if err := sh.LoadState(d.Rank(), saved); err != nil {
		return fmt.Errorf("CommHook %s state: %w", d.opts.hook.Name(), err)
	}
	return nil
}
