package pipeline

import (
	"errors"
	"fmt"
)

// ErrLayout is wrapped by every error about how stages and replicas are
// placed on ranks (NewLayout, and Executor configuration that contradicts
// the group's size).
var ErrLayout = errors.New("pipeline: bad layout")

// Layout places K pipeline stages × D data-parallel replicas on K·D ranks:
//
//	rank = replica·K + stage        (stage = rank mod K, replica = rank / K)
//
// so each replica's pipeline occupies K consecutive ranks. Consecutive ranks
// usually share a host (gorun numbers a node's ranks together), which keeps
// the per-micro-batch activation and gradient hand-offs, the traffic that is
// on the critical path, between neighbours on the same host, while the
// once-per-step gradient AllReduce among a stage's replicas (ranks s, s+K,
// s+2K, ...) is the traffic allowed to cross hosts. With 4 ranks, 2 stages
// and 2 replicas: ranks 0→1 are replica 0's pipeline, ranks 2→3 replica 1's,
// and {0, 2} and {1, 3} are the stages' data-parallel groups.
type Layout struct {
	Stages   int // K, at least 1
	Replicas int // D, at least 1
}

// NewLayout returns the layout of stages × replicas for a job of world
// ranks. A zero stages means world/replicas and a zero replicas means 1;
// the product must equal world.
func NewLayout(world, stages, replicas int) (Layout, error) {
	if world < 1 {
		return Layout{}, fmt.Errorf("%w: world size %d: need at least 1 rank", ErrLayout, world)
	}
	if replicas == 0 {
		replicas = 1
	}
	if replicas < 0 {
		return Layout{}, fmt.Errorf("%w: %d replicas: need at least 1", ErrLayout, replicas)
	}
	if stages == 0 {
		if world%replicas != 0 {
			return Layout{}, fmt.Errorf("%w: %d ranks do not split into %d data-parallel replicas (world size must be a multiple of the replica count)", ErrLayout, world, replicas)
		}
		stages = world / replicas
	}
	if stages < 0 {
		return Layout{}, fmt.Errorf("%w: %d stages: need at least 1", ErrLayout, stages)
	}
	if stages*replicas != world {
		return Layout{}, fmt.Errorf("%w: %d stages × %d replicas = %d ranks, but the world has %d", ErrLayout, stages, replicas, stages*replicas, world)
	}
	return Layout{Stages: stages, Replicas: replicas}, nil
}

// Size is the number of ranks, Stages·Replicas.
func (l Layout) Size() int { return l.Stages * l.Replicas }

// Rank returns the rank that runs stage of replica.
func (l Layout) Rank(stage, replica int) int { return replica*l.Stages + stage }

// Coords returns the stage and replica that rank runs.
func (l Layout) Coords(rank int) (stage, replica int) { return rank % l.Stages, rank / l.Stages }

// StageRanks returns the ranks of every replica of stage, in replica order:
// the members of the stage's data-parallel group.
func (l Layout) StageRanks(stage int) []int {
	out := make([]int, l.Replicas)
	for r := range out {
		out[r] = l.Rank(stage, r)
	}
	return out
}

// PipelineRanks returns the ranks of replica's pipeline, stage 0 first.
func (l Layout) PipelineRanks(replica int) []int {
	out := make([]int, l.Stages)
	for s := range out {
		out[s] = l.Rank(s, replica)
	}
	return out
}
