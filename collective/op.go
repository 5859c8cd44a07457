package collective

import "fmt"

// Op is the reduction a collective applies element-wise across the members of a group.
type Op uint8

const (
	// Sum adds the members' values.
	Sum Op = iota + 1
	// Avg adds the members' values and divides the sum by the group size (in float32, once,
	// on the rank that completes each segment of the ring).
	Avg
	// Max keeps the largest value. A NaN on any member makes the result NaN.
	Max
	// Min keeps the smallest value. A NaN on any member makes the result NaN.
	Min
)

func (o Op) String() string {
	switch o {
	case Sum:
		return "sum"
	case Avg:
		return "avg"
	case Max:
		return "max"
	case Min:
		return "min"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

func (o Op) valid() bool { return o >= Sum && o <= Min }

// Compression selects how AllReduce and ReduceScatter encode values on the wire. It is a
// ReduceOption, so it can be passed directly: g.AllReduce(ctx, buf, collective.Avg, collective.FP16).
type Compression uint8

const (
	// NoCompression sends float32 values unchanged (the default).
	NoCompression Compression = iota
	// FP16 sends IEEE binary16 values with a power-of-two scale per chunk and accumulates in
	// float32. It halves the bytes on the wire; see AllReduce for the error bound.
	FP16
	// BF16 sends bfloat16 values (float32 rounded to nearest even to 8 significant bits; no
	// scale, as bfloat16 has float32's exponent range) and accumulates in float32. It halves
	// the bytes on the wire; each rounding errs by at most 2^-8 of the value (see bf16.go).
	BF16
	compressionMax = BF16
)

func (c Compression) String() string {
	switch c {
	case NoCompression:
		return "none"
	case FP16:
		return "fp16"
	case BF16:
		return "bf16"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

// ReduceOption adjusts one AllReduce or ReduceScatter call: a Compression, or Feedback.
type ReduceOption interface {
	applyReduce(*reduceConfig)
}

type reduceConfig struct {
	compression Compression
	residual    []float32
	feedback    bool
}

// Feedback is error feedback for FP16 or BF16 compression (a ReduceOption): residual, owned
// by the caller and as long as the op's buffer, carries what this rank's encodings lost from one
// op to the next. Pass the same residual with every op over the same buffer layout (ddp keeps
// one per bucket) and zeros the first time; only this rank reads or writes it, and only while
// the op runs.
//
// Every value a rank encodes (to binary16 or bfloat16) is one it is responsible for: its reduce-scatter
// partial sums at every hop, and, in AllReduce, the fully reduced chunks it owns when it
// starts the all-gather. A rank encodes each position of the buffer at most once per op (in
// the reduce-scatter it sends every segment but its own, in the all-gather only its own), so
// one residual per position suffices: before encoding position i the rank adds residual[i]
// into the value, and afterwards stores what the encoding lost, value − decoded (exact in
// float32). Each op then delivers
//
//	result_t = exact_t + Σ_(encodings of i) (r_(t−1) − r_t)
//
// and over T ops the corrections telescope: Σ_t result_t = Σ_t exact_t − Σ r_T, where the
// last residuals are bounded by one op's quantization error (the bound documented at
// AllReduce). Without feedback each op's error stays in the sum: it drifts.
//
// Feedback needs FP16 or BF16 and Sum or Avg (a residual of Max or Min has no meaning). Non-finite
// residuals (from Inf or NaN values) are reset to zero rather than carried.
func Feedback(residual []float32) ReduceOption { return feedbackOpt(residual) }

type feedbackOpt []float32

func (f feedbackOpt) applyReduce(rc *reduceConfig) { rc.residual, rc.feedback = f, true }

func (c Compression) applyReduce(rc *reduceConfig) { rc.compression = c }

// dtype is the element type of an op's buffer, carried in every op header; how values are
// encoded on the wire is the header's compression.
type dtype uint8

const (
	dtNone  dtype = iota // no payload (Barrier)
	dtF32                // []float32
	dtBytes              // []byte (BroadcastBytes, AllGatherBytes)
	dtF64                // []float64
	dtI32                // []int32
	dtI64                // []int64
	dtMax   = dtI64
)

func (d dtype) String() string {
	switch d {
	case dtNone:
		return "none"
	case dtF32:
		return "fp32"
	case dtBytes:
		return "bytes"
	case dtF64:
		return "fp64"
	case dtI32:
		return "int32"
	case dtI64:
		return "int64"
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// opKind names the operation an op header announces.
type opKind uint8

const (
	kindAllReduce opKind = iota + 1
	kindReduceScatter
	kindAllGather
	kindBroadcast
	kindBarrier
	kindSend
	kindClose // the goodbye of Close (see Group.Close)
	kindBroadcastBytes
	kindAllGatherBytes
	kindReduce    // ring.go: a chain ending at the root
	kindGather    // peerops.go: direct to the root
	kindScatter   // peerops.go: direct from the root
	kindAllToAll  // peerops.go: pairwise exchange
	kindAllToAllV // peerops.go: pairwise exchange, per-peer counts
	kindMax       = kindAllToAllV
)

// peerOp reports whether the kind runs over the group's peer links (peerops.go) rather than
// its ring.
func (k opKind) peerOp() bool {
	return k == kindGather || k == kindScatter || k == kindAllToAll || k == kindAllToAllV
}

func (k opKind) String() string {
	switch k {
	case kindAllReduce:
		return "AllReduce"
	case kindReduceScatter:
		return "ReduceScatter"
	case kindAllGather:
		return "AllGather"
	case kindBroadcast:
		return "Broadcast"
	case kindBarrier:
		return "Barrier"
	case kindSend:
		return "Send"
	case kindClose:
		return "Close"
	case kindBroadcastBytes:
		return "BroadcastBytes"
	case kindAllGatherBytes:
		return "AllGatherBytes"
	case kindReduce:
		return "Reduce"
	case kindGather:
		return "Gather"
	case kindScatter:
		return "Scatter"
	case kindAllToAll:
		return "AllToAll"
	case kindAllToAllV:
		return "AllToAllV"
	}
	return fmt.Sprintf("opKind(%d)", uint8(k))
}
