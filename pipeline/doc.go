// Package pipeline trains a model with pipeline parallelism, optionally
// times data parallelism. Its pure parts need neither the network nor a
// model: how to cut a model's layers into stages (Balance, Plan) and in what
// order each stage runs its micro-batches (GPipe, OneFOneB, Simulate). The
// Executor (New, Step) carries a schedule out: each rank runs one stage's
// slice of a models.Sequential, hands activations and gradients to its
// neighbours with tagged collective Send/Recv, and AllReduces its gradients
// with the other replicas of its stage (see Layout); it measures each
// step's busy time, bubble and stored activations (StepStats, Summarize).
//
// # Pipeline parallelism
//
// A model that is a sequence of layers is cut into K contiguous stages, one
// per rank (or per group of data-parallel replicas). A mini-batch is split
// into M micro-batches. Stage s receives a micro-batch's activation from
// stage s-1, runs its layers forward and sends the result to stage s+1; on
// the way back it receives the gradient from s+1, runs backward and sends the
// input gradient to s-1. Gradients accumulate over the M micro-batches and
// every stage takes one optimizer step per mini-batch, so training computes
// exactly what one process would on the whole mini-batch.
//
// # Schedules
//
// A schedule says in which order each stage runs its 2M actions. It is a
// pure function of (K, M), kept apart from the executor that carries it out
// with Send/Recv, so it can be printed, checked and simulated on its own.
//
// GPipe runs all M forwards, then all M backwards:
//
//	stage 0: F0 F1 F2 F3 B0 B1 B2 B3
//	stage 1: F0 F1 F2 F3 B0 B1 B2 B3
//
// 1F1B (PipeDream-Flush) lets stage s run only K-s-1 forwards ahead (the
// warmup), then alternate one forward with one backward, then finish the
// remaining backwards (the cooldown):
//
//	stage 0: F0 B0 F1 B1 F2 B2 F3 B3   (K=1)
//	stage 0: F0 F1 B0 F2 B1 F3 B2 B3   (stage 0 of K=2)
//	stage 1: F0 B0 F1 B1 F2 B2 F3 B3   (stage 1 of K=2)
//
// # The bubble
//
// With equal stages and free communication, a micro-batch's forward reaches
// the last stage K-1 steps after it left the first, and its gradient needs
// as long to come back: every stage idles for (K-1) forward plus (K-1)
// backward times per mini-batch, against M of each spent computing. The idle
// share, the bubble, is therefore
//
//	bubble = (K-1) / (M+K-1),   efficiency = 1 - bubble = M / (M+K-1)
//
// for both schedules and any backward/forward time ratio: 1F1B only reorders
// the work inside the same critical path. More micro-batches shrink the
// bubble (K=4: M=4 idles 43%, M=16 idles 16%), at the cost of smaller
// matrices per step and more messages.
//
// # Memory
//
// The schedules differ in memory. A stage must keep each micro-batch's
// activations from its forward until its backward. GPipe runs all forwards
// first, so every stage holds M micro-batches at its peak; 1F1B frees one
// for each one it admits after the warmup, so stage s holds at most
// min(K-s, M) (stage 0 the most: K). 1F1B is the better default; GPipe is
// simpler and equal when M <= K. Simulate reports both the makespan and
// bubble of a schedule under given costs and each stage's peak number of
// stored activations, and proves the schedule deadlock-free.
//
// # Partitioning
//
// Balance cuts a layer sequence into K stages, minimising the cost of the
// most expensive stage (the pipeline runs at the pace of its slowest stage).
// Costs are per layer and the caller's choice: estimated FLOPs, parameter
// counts, or measured times. Plan adds parameter counts and devices for
// printing, and NewPlan takes explicit split points from a user instead.
//
// # Devices
//
// A stage computes on the CPU with its slice of the model unless
// Config.Compile turns the slice into a models.Model placed elsewhere (a
// GPU); Executor.Device says where. For a models.DeviceResident stage, New
// uploads the parameters (PushParams) and, with Replicas > 1, Step downloads
// the gradients for the replicas' AllReduce (PullGrads) and uploads the sums
// (PushGrads); otherwise they stay on the device. The optimizer given to Step
// must be placed where the stage computes.
//
// Device discovery (NVML GPUs or the CPU fallback) lives in the subpackage
// pipeline/devices, which keeps cgo out of this one: what it finds is not
// where a stage computes (a stage the caller did not compile runs on the CPU
// whatever GPUs exist).
//
// When the group has a timeline (collective.Group.Timeline: gorun --timeline), every
// action is recorded on the stage's row (forward and backward per micro-batch, receives,
// the optimizer) and every message on its sender's row.
package pipeline
