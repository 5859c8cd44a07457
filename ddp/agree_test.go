package ddp

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// TestLoadFailureOnOneRankFailsAll: rank 1's part of the checkpoint is corrupt (its
// error-feedback residual has the wrong size), so only rank 1 cannot load it. Every rank must
// return an error naming rank 1 within seconds. Before LoadCheckpoint agreed on its outcome,
// ranks 0 and 2 returned success, went on to train, and waited in their first AllReduce for
// the group's timeout (20 s here, 5 min by default).
func TestLoadFailureOnOneRankFailsAll(t *testing.T) {
	const n = 3
	opts := Options{Compression: collective.FP16, ErrorFeedback: true, BucketCapMB: tinyCaps.BucketCapMB}
	dir := t.TempDir()
	gs := startJob(t, n)
	ds := make([]*DDP, n)
	opt := make([]models.Optimizer, n)
	var path string
	mustRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, gs[r], opts)
		if err != nil {
			return err
		}
		ds[r] = d
		if opt[r], err = models.NewAdam(m.Params(), models.AdamConfig{LR: 0.01}); err != nil {
			return err
		}
		x, labels := sample(shard(globalBatch(0, 8*n), r, n))
		if _, err := d.TrainStep(ctx, opt[r], Batch{X: x, Labels: labels}); err != nil {
			return err
		}
		p, err := d.SaveCheckpoint(ctx, dir, TrainState{Step: 1, GlobalBatch: 8 * n}, opt[r])
		if r == 0 {
			path = p
		}
		return err
	})
	ck, err := ReadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := false
	for i, s := range ck.Residuals.Slices {
		if strings.HasPrefix(s.Name, "rank1/") {
			ck.Residuals.Slices[i] = models.NamedSlice{Name: s.Name, Shape: []int{len(s.Data) - 1}, Data: s.Data[1:]}
			damaged = true
			break
		}
	}
	if !damaged {
		t.Fatal("no residual of rank 1 in the checkpoint")
	}
	if err := WriteCheckpoint(path, ck); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	took := make([]time.Duration, n)
	errs := onRanks(t, n, func(ctx context.Context, r int) error {
		defer func() { took[r] = time.Since(start) }()
		if _, _, err := ds[r].LoadCheckpoint(ctx, dir, opt[r]); err != nil {
			return err
		}
		// What a training program does next: the ranks that loaded train.
		x, labels := sample(shard(globalBatch(1, 8*n), r, n))
		_, err := ds[r].TrainStep(ctx, opt[r], Batch{X: x, Labels: labels})
		return err
	})
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: no error", r)
		}
		if !strings.Contains(err.Error(), "rank 1 failed") || !strings.Contains(err.Error(), "residual") {
			t.Fatalf("rank %d: %v does not name rank 1 and its cause", r, err)
		}
		if took[r] > 5*time.Second {
			t.Fatalf("rank %d took %v to fail", r, took[r])
		}
		var ae *collective.AgreementError
		if !errors.As(err, &ae) || len(ae.Failed) != 1 || ae.Failed[0].Rank != 1 {
			t.Fatalf("rank %d: %v is not an AgreementError naming rank 1 alone", r, err)
		}
		var ce *CheckpointError
		if errors.As(err, &ce) != (r == 1) {
			t.Fatalf("rank %d: errors.As(CheckpointError) = %v; only rank 1 has one of its own", r, r != 1)
		}
	}
}

// TestWrapLocalErrorReachesEveryRank: a rank whose options are invalid fails Wrap before it
// can compare anything; the others must fail at once naming it, not wait for it in the
// exchange until the group's timeout.
func TestWrapLocalErrorReachesEveryRank(t *testing.T) {
	const n = 3
	gs := startJob(t, n)
	start := time.Now()
	errs := onRanks(t, n, func(ctx context.Context, r int) error {
		opts := Options{}
		if r == 2 {
			opts.ErrorFeedback = true // without FP16: invalid
		}
		_, err := Wrap(ctx, smallModel(t, 40, 1), gs[r], opts)
		return err
	})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "rank 2 failed") || !strings.Contains(err.Error(), "ErrorFeedback needs Compression") {
			t.Fatalf("rank %d: %v; want an error naming rank 2's invalid options", r, err)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v", el)
	}
}
