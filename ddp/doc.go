// Package ddp trains a models.Model (a models.Sequential, or one compiled onto a device)
// data-parallel over a collective.Group, as
// PyTorch's DistributedDataParallel does: every rank holds a full replica of the model,
// computes gradients on its own shard of each global batch, and the gradients are
// averaged across ranks before every optimizer step, so that all replicas take the same
// step and stay bit-identical.
//
// # How a step runs
//
// Wrap checks that every rank has the same parameters (names and shapes) and the same
// bucket options, then broadcasts rank 0's parameter values to everyone. It assigns the
// parameters to buckets in reverse layer order, the order in which backward produces
// their gradients, each bucket holding up to Options.BucketCapMB (the first one only
// Options.FirstBucketCapMB, so that communication starts early). Each parameter's Grad is
// re-pointed into its bucket's flat buffer (PyTorch's gradient_as_bucket_view), so no
// copy is needed before or after the reduction.
//
// Backward runs the model's backward layer by layer. As soon as the last layer of a
// bucket has produced its gradients, the bucket's AllReduce (Avg) is launched
// asynchronously, and the backward of the earlier layers goes on while it travels around
// the ring. Wait then waits for all buckets; afterwards every rank's Param.Grad holds the
// average of all ranks' gradients and the optimizer may step. TrainStep does all of this
// (forward, loss, backward, wait, optimizer step) for one or more micro-batches.
//
// # Models on a device
//
// A model whose parameters and gradients live on a device implements
// models.DeviceResident; ddp keeps the host copies (Param.Value, Param.Grad), which the
// buckets, the broadcast and the checkpoints use, in step with the device: Wrap ends with
// PushParams (rank 0's values, after the broadcast); with more than one rank, Backward
// passes the per-layer hook, so each layer's gradients are on the host when its bucket
// launches, and Wait uploads the reduced gradients (PushGrads) before the optimizer
// steps; alone and untraced, Backward passes no hook and the gradients never leave the
// device. SaveCheckpoint downloads the parameters (PullParams) on rank 0 and
// LoadCheckpoint uploads the loaded ones (PushParams). TrainStep refuses an optimizer
// placed on another device than the model (models.DevicePlacement).
//
// # Equivalence with one large batch
//
// With the loss scaled by 1/(local samples) on each rank (TrainStep does so) and the same
// number of samples on every rank (data.DistributedSampler guarantees it), the averaged
// gradient equals the gradient of the mean loss over the global batch: N ranks with batch
// B take the same steps as one process with batch N·B, up to float32 rounding of the
// different summation order. Gradient accumulation (BackwardNoSync, or TrainStep with
// several micro-batches) adds micro-batch gradients locally and communicates once.
//
// # Communication hooks and compression
//
// How a bucket is averaged is a CommHook (PyTorch's register_comm_hook): Options.CommHook,
// or, when nil, CompressHook(Options.Compression, Options.ErrorFeedback). The built-in
// hooks are AllReduceHook (float32, the default) and CompressHook with collective.FP16
// (binary16 with a power-of-two scale per chunk; FP16Bound) or collective.BF16 (bfloat16, no
// scale; BF16Bound), each optionally with error feedback (Options.ErrorFeedback), whose
// residuals the hook owns. A user's hook implements CommHook (and FinishingHook for work
// after its reduction completes, StatefulHook for state that checkpoints must carry);
// package ddp/powersgd is one, a low-rank PowerSGD hook written against this API alone.
// Wrap checks that every rank's hook has the same Name.
//
// Migration: Options.Compression and ErrorFeedback keep working unchanged (they are
// shorthand for CompressHook); setting them together with CommHook is an error.
// Checkpoints written before hooks carry fp16 residuals that a CompressHook with error
// feedback loads (fp16 or bf16: both hold what rounding withheld).
//
// # Checkpoints
//
// SaveCheckpoint (all ranks call it; rank 0 writes) stores parameters, optimizer state,
// the training position (step, sampler epoch and batch), the CommHook state of every rank
// (error-feedback residuals, PowerSGD's factors) and the state of seeded layers (dropout) in a versioned, checksummed file
// written atomically. LoadCheckpoint (all ranks) has rank 0 read the newest complete
// checkpoint and broadcast it, so that only rank 0 needs to see the directory, and every
// rank restores the same state: a run resumed from a checkpoint continues exactly as the
// uninterrupted run would have.
//
// # Timeline
//
// With a timeline (Options.Timeline, or the group's: gorun --timeline), every step records
// its phases on the "ddp train" row: forward, loss, backward per layer, each bucket's launch,
// the wait for each bucket, the optimizer (see stepTrace). Beside the group's row of
// AllReduces it shows which communication backward hid and which it did not. Options.Trace
// is the same points as a callback, for tests and tools.
//
// # Failures
//
// A DDP is used by one goroutine (the training loop). If a step fails on one rank, that
// rank's collective ops no longer match its peers'; the DDP refuses further steps and the
// program should exit (the launcher then stops the other ranks, or restarts the job from
// the last checkpoint with --max-restarts).
package ddp
