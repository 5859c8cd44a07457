package pipeline

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"strings"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// ErrMismatch is wrapped by *MismatchError.
var ErrMismatch = errors.New("pipeline: ranks disagree")

// MismatchError reports that ranks built their executors from different
// configurations or models: a rank started with other flags, or another
// seed or model. New returns the same error on every rank.
type MismatchError struct {
	// Rank is the first rank that differs from rank 0, and What lists what
	// differs ("model parameters (initial values)", "schedule", ...).
	Rank int
	What []string
	// Others are the further ranks that differ from rank 0, if any.
	Others []int
}

func (e *MismatchError) Error() string {
	s := fmt.Sprintf("pipeline: rank %d differs from rank 0 in: %s", e.Rank, strings.Join(e.What, "; "))
	if len(e.Others) > 0 {
		s += fmt.Sprintf(" (and ranks %v differ too)", e.Others)
	}
	return s + ": every rank must build the same model (same name and seed) with the same pipeline settings"
}

// Unwrap makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Unwrap() error { return ErrMismatch }

// fingerprint parts, in the order they are exchanged.
var fingerprintParts = []string{
	"layout (stages × replicas)",
	"micro-batches, global batch size or tag base",
	"partition (split points)",
	"schedule",
	"input shape",
	"model structure (layers, parameter names and shapes)",
	"model parameters (initial values: another seed?)",
}

func hashString(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// hashParams hashes the bits of every parameter value (FNV-1a over 32-bit
// words: fast enough for tens of millions of values, and any change of any
// value changes it with overwhelming likelihood).
func hashParams(ps []*models.Param) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for _, p := range ps {
		for _, v := range p.Value {
			h = (h ^ uint64(math.Float32bits(v))) * prime
		}
	}
	return h
}

func (e *Executor) fingerprint(full *models.Sequential) []uint64 {
	var structure strings.Builder
	for _, l := range full.Layers() {
		fmt.Fprintf(&structure, "%s(", l.Name())
		for _, p := range l.Params() {
			fmt.Fprintf(&structure, "%s%v,", p.Name, p.Shape)
		}
		structure.WriteString(");")
	}
	c := e.cfg
	return []uint64{
		hashString(fmt.Sprint(c.Stages, c.Replicas)),
		hashString(fmt.Sprint(c.MicroBatches, c.Batch, c.TagBase)),
		hashString(fmt.Sprint(e.plan.Splits())),
		hashString(e.sched.String()),
		hashString(fmt.Sprint(c.InputShape)),
		hashString(structure.String()),
		hashParams(full.Params()),
	}
}

// checkAgreement exchanges every rank's fingerprint, or its error when it could not build
// its executor (lerr; e is nil then), through collective.Group.Agree, and fails on every
// rank alike if any rank failed (a *collective.AgreementError naming each, wrapping this
// rank's own error) or any fingerprint differs from rank 0's (a *MismatchError).
func checkAgreement(ctx context.Context, g *collective.Group, e *Executor, full *models.Sequential, lerr error) error {
	var mine []byte
	if lerr == nil {
		for _, v := range e.fingerprint(full) {
			mine = binary.LittleEndian.AppendUint64(mine, v)
		}
	}
	all, err := g.Agree(ctx, mine, lerr)
	if err != nil {
		var ae *collective.AgreementError
		if errors.As(err, &ae) {
			return fmt.Errorf("pipeline: New: %w", err)
		}
		return fmt.Errorf("pipeline: rank %d: exchanging configuration fingerprints: %w", g.Rank(), err)
	}
	var bad *MismatchError
	for r := 1; r < g.Size(); r++ {
		var what []string
		for i, part := range fingerprintParts {
			if !bytes.Equal(field(all[r], i), field(all[0], i)) {
				what = append(what, part)
			}
		}
		switch {
		case len(what) == 0:
		case bad == nil:
			bad = &MismatchError{Rank: r, What: what}
		default:
			bad.Others = append(bad.Others, r)
		}
	}
	if bad != nil {
		return bad
	}
	return nil
}

// field returns fingerprint part i of a rank's message (nil if the message is too short,
// which then differs from a whole one).
func field(msg []byte, i int) []byte {
	if len(msg) < 8*(i+1) {
		return nil
	}
	return msg[8*i : 8*(i+1)]
}
