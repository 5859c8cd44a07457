// Package models holds the neural-network building blocks of ringtrain: dense
// tensors and parameters, layers whose forward and backward passes are gorgonia
// graphs, a Sequential container, the softmax cross-entropy loss, ready-made
// models (Build) and optimizers (SGD, Adam) with checkpointable state.
//
// A model is a sequence of layers. Each layer owns its parameters and has a
// Forward and a Backward that takes the upstream gradient, so that
//
//   - data parallelism (package ddp) can run Backward layer by layer and start
//     the AllReduce of a layer's gradients as soon as Sequential.Backward reports
//     the layer done through its hook, while earlier layers are still computing;
//   - pipeline parallelism can give a contiguous slice of layers
//     (Sequential.Slice) to each rank and keep several micro-batches in flight:
//     everything Backward needs travels in the per-call Saved value, never in the
//     layer, and Backward ADDS into Param.Grad so micro-batch gradients accumulate.
//
// The package knows nothing about distribution: it moves []float32.
//
// Layers are not safe for concurrent use by several goroutines (a mutex turns
// misuse into serialisation, not corruption); separate models are independent
// and may run concurrently.
package models
