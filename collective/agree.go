package collective

import (
	"context"
	"fmt"
	"strings"
)

// BroadcastBytes sends root's data to every member and returns it there (root is a group
// rank; the root gets its own data back). Only the root's data is read, so the others may pass
// nil; the length travels with the message, up to MaxBytesMessage. It is ordered with the
// other collectives and fails like them (see Group); like Broadcast, it returns on no rank
// before every rank has checked the call.
func (g *Group) BroadcastBytes(ctx context.Context, data []byte, root int) ([]byte, error) {
	if err := g.checkPeer("BroadcastBytes root", root); err != nil {
		return nil, err
	}
	if g.rank == root && len(data) > MaxBytesMessage {
		return nil, fmt.Errorf("collective: BroadcastBytes: %d bytes exceed MaxBytesMessage (%d)", len(data), MaxBytesMessage)
	}
	w := &Work{h: g.bytesHeader(kindBroadcastBytes, root, uint32(g.chunk))}
	if g.rank == root {
		w.data = data
	}
	if err := g.issue(ctx, w).wait(); err != nil {
		return nil, err
	}
	return w.data, nil
}

// AllGatherBytes gathers every member's message, of any length up to MaxBytesMessage, on
// every member: the result is indexed by group rank, and holds mine at Rank(). Messages are
// forwarded whole around the ring, which suits configuration and control messages rather than
// bulk data.
func (g *Group) AllGatherBytes(ctx context.Context, mine []byte) ([][]byte, error) {
	if len(mine) > MaxBytesMessage {
		return nil, fmt.Errorf("collective: AllGatherBytes: %d bytes exceed MaxBytesMessage (%d)", len(mine), MaxBytesMessage)
	}
	w := &Work{h: g.bytesHeader(kindAllGatherBytes, 0, 0), parts: make([][]byte, len(g.ranks))}
	w.parts[g.rank] = mine
	if err := g.issue(ctx, w).wait(); err != nil {
		return nil, err
	}
	return w.parts, nil
}

// bytesHeader is the header of a byte collective: no count (only the sender of a message
// knows its length; it travels in a frame of its own), the chunk size where it frames data.
func (g *Group) bytesHeader(kind opKind, root int, chunk uint32) header {
	return header{kind: kind, dtype: dtBytes, algo: algoRing, arg: int64(root), chunk: chunk}
}

// Agree is how the members of a group learn each other's outcome: every member contributes
// either a value (err == nil) or its error, and every member learns all of them. If every
// member succeeded it returns their values, indexed by group rank, on every member. If any
// failed it returns, on every member alike, an *AgreementError naming each member that failed
// and its error's text (errors.Is/As on it also find this member's own err, if it failed).
//
// It replaces "do all ranks agree" protocols that need each rank to know whether the others
// could go on: a checkpoint that fails to load on one rank makes every rank return at once,
// instead of leaving the others waiting in their next collective until Options.Timeout.
//
// If the exchange itself fails (a peer died), the error says so and wraps err too.
func (g *Group) Agree(ctx context.Context, value []byte, err error) ([][]byte, error) {
	var msg []byte
	if err != nil {
		msg = append([]byte{agreeErr}, err.Error()...)
	} else {
		msg = append([]byte{agreeOK}, value...)
	}
	all, xerr := g.AllGatherBytes(ctx, msg)
	if xerr != nil {
		if err != nil {
			return nil, fmt.Errorf("collective: rank %d: agreeing on an outcome (this rank's: %w): %w", g.worldRank, err, xerr)
		}
		return nil, fmt.Errorf("collective: rank %d: agreeing on an outcome: %w", g.worldRank, xerr)
	}
	var failed []RankError
	values := make([][]byte, len(all))
	for r, m := range all {
		switch {
		case len(m) > 0 && m[0] == agreeOK:
			values[r] = m[1:]
		case len(m) > 0 && m[0] == agreeErr:
			failed = append(failed, RankError{Rank: g.ranks[r], Msg: string(m[1:])})
		default:
			failed = append(failed, RankError{Rank: g.ranks[r], Msg: fmt.Sprintf("unreadable outcome message (%d bytes)", len(m))})
		}
	}
	if len(failed) > 0 {
		return nil, &AgreementError{Rank: g.worldRank, Size: len(g.ranks), Failed: failed, Local: err}
	}
	return values, nil
}

// AgreeErr is Agree without values: it returns nil on every member if err is nil on every
// member, and otherwise the same *AgreementError, naming every member that failed, on all.
func (g *Group) AgreeErr(ctx context.Context, err error) error {
	_, aerr := g.Agree(ctx, nil, err)
	return aerr
}

const (
	agreeOK  byte = 1
	agreeErr byte = 2
)

// RankError is one member's failure as reported through Agree.
type RankError struct {
	Rank int    // world rank of the member that failed
	Msg  string // its error's text
}

// AgreementError is Agree's error when one or more members failed. Every member gets the same
// Failed list; Local is this member's own error, if it was one of them.
type AgreementError struct {
	Rank   int         // world rank of the member that returns it
	Size   int         // members of the group
	Failed []RankError // the members that failed, by ascending group rank
	Local  error       // this member's own error, or nil
}

func (e *AgreementError) Error() string {
	var b strings.Builder
	if len(e.Failed) == 1 {
		fmt.Fprintf(&b, "collective: rank %d failed", e.Failed[0].Rank)
	} else {
		ranks := make([]string, len(e.Failed))
		for i, f := range e.Failed {
			ranks[i] = fmt.Sprint(f.Rank)
		}
		fmt.Fprintf(&b, "collective: ranks %s failed (%d of %d)", strings.Join(ranks, ", "), len(e.Failed), e.Size)
	}
	for i, f := range e.Failed {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "rank %d: %s", f.Rank, f.Msg)
	}
	return b.String()
}

// Unwrap returns this member's own error, so that errors.Is/As see through to it.
func (e *AgreementError) Unwrap() error { return e.Local }

// FailedRanks returns the world ranks that failed.
func (e *AgreementError) FailedRanks() []int {
	out := make([]int, len(e.Failed))
	for i, f := range e.Failed {
		out[i] = f.Rank
	}
	return out
}
