package report

import (
	"encoding/json"
	"fmt"
	"os"
)

// SchemaVersion is the version of the results.json layout written by this package.
const SchemaVersion = 1

// Results is everything one benchmark session measured and derived: the content of
// results.json, from which report.md and the plots are rendered.
type Results struct {
	Schema   int      `json:"schema"`
	Machine  Machine  `json:"machine"`
	Settings Settings `json:"settings"`
	// Runs are the raw training runs, one per launched job and repetition.
	Runs []Run `json:"runs"`
	// Scaling aggregates Runs over repetitions, one point per configuration.
	Scaling []ScalingPoint `json:"scaling"`
	// AllReduce holds the collective sweep as the allreduce benchmark reported it.
	AllReduce []SweepRow `json:"allreduce"`
	// Fits are the α-β fits of the sweep, one per dtype.
	Fits []Fit `json:"fits"`
	// Projection is the modelled scaling at large N; nil when it could not be made.
	Projection *Projection `json:"projection,omitempty"`
	// Notes are caveats a reader must see (oversubscription, failed runs...).
	Notes []string `json:"notes"`
	// ElapsedS is the wall time of the whole session.
	ElapsedS float64 `json:"elapsed_s"`
}

// Settings records what the session was asked to measure. Repetitions, batches and steps
// may differ per model (a 20 M-parameter model cannot afford the small ones' budget): the
// Model* maps, when set, hold each model's value and the plain fields the default.
type Settings struct {
	NProc       []int    `json:"nproc"`
	Models      []string `json:"models"`
	Modes       []string `json:"modes"`    // "weak", "strong"
	Compress    []string `json:"compress"` // "none", "fp16"
	Reps        int      `json:"reps"`
	Batch       int      `json:"batch_per_rank"` // weak scaling
	GlobalBatch int      `json:"global_batch"`   // strong scaling
	// Steps is the number of measured steps per run; each run trains as many warm-up
	// steps first.
	Steps            int            `json:"steps"`
	ModelReps        map[string]int `json:"model_reps,omitempty"`
	ModelBatch       map[string]int `json:"model_batch_per_rank,omitempty"`
	ModelGlobalBatch map[string]int `json:"model_global_batch,omitempty"`
	ModelSteps       map[string]int `json:"model_steps,omitempty"`
	ThreadsPerRank   int            `json:"threads_per_rank"`
	Transport        string         `json:"transport,omitempty"`
	Quick            bool           `json:"quick"`
	SweepMinBytes    int64          `json:"sweep_min_bytes"`
	SweepMaxBytes    int64          `json:"sweep_max_bytes"`
	SweepFactor      int            `json:"sweep_factor"`
	SweepIters       int            `json:"sweep_iters"`
	Command          string         `json:"command"`
}

func ofModel(m map[string]int, model string, def int) int {
	if v, ok := m[model]; ok {
		return v
	}
	return def
}

// BatchOf is model's per-rank batch for weak scaling.
func (s Settings) BatchOf(model string) int { return ofModel(s.ModelBatch, model, s.Batch) }

// GlobalBatchOf is model's global batch for strong scaling.
func (s Settings) GlobalBatchOf(model string) int {
	return ofModel(s.ModelGlobalBatch, model, s.GlobalBatch)
}

// StepsOf is model's number of measured steps per run.
func (s Settings) StepsOf(model string) int { return ofModel(s.ModelSteps, model, s.Steps) }

// RepsOf is model's number of repetitions.
func (s Settings) RepsOf(model string) int { return ofModel(s.ModelReps, model, s.Reps) }

// uniform reports whether every model has the same value of f.
func (s Settings) uniform(f func(string) int) bool {
	for _, m := range s.Models {
		if f(m) != f(s.Models[0]) {
			return false
		}
	}
	return true
}

// Run is one training job on Ranks ranks, measured.
type Run struct {
	Model        string `json:"model"`
	Mode         string `json:"mode"`     // "weak" (fixed per-rank batch) or "strong" (fixed global batch)
	Compress     string `json:"compress"` // "none" or "fp16"
	Ranks        int    `json:"ranks"`
	Rep          int    `json:"rep"`
	BatchPerRank int    `json:"batch_per_rank"`
	GlobalBatch  int    `json:"global_batch"`
	// SamplesPerS is the throughput of all ranks together.
	SamplesPerS float64 `json:"samples_per_s"`
	// StepMS is the mean wall time of one step; ComputeMS, CommMS and ExposedCommMS its
	// breakdown as the trainer reported it (rank 0, or the slowest rank).
	StepMS        float64 `json:"step_ms"`
	ComputeMS     float64 `json:"compute_ms"`
	CommMS        float64 `json:"comm_ms"`
	ExposedCommMS float64 `json:"exposed_comm_ms"`
	// Buckets is the number of gradient AllReduce ops per step the trainer reported
	// (0 when it did not say).
	Buckets int `json:"buckets,omitempty"`
	// WallS is the whole job's wall time, start-up included.
	WallS float64 `json:"wall_s"`
}

// ScalingPoint is one configuration summarised over its repetitions.
type ScalingPoint struct {
	Model        string `json:"model"`
	Mode         string `json:"mode"`
	Compress     string `json:"compress"`
	Ranks        int    `json:"ranks"`
	BatchPerRank int    `json:"batch_per_rank"`
	GlobalBatch  int    `json:"global_batch"`
	// Oversubscribed is set when the ranks' threads outnumber the machine's cores.
	Oversubscribed bool    `json:"oversubscribed"`
	SamplesPerS    Summary `json:"samples_per_s"`
	StepMS         Summary `json:"step_ms"`
	ComputeMS      Summary `json:"compute_ms"`
	CommMS         Summary `json:"comm_ms"`
	ExposedCommMS  Summary `json:"exposed_comm_ms"`
	// Efficiency is each repetition's throughput against the median single-rank
	// throughput of the same model and mode; its median is the headline figure.
	Efficiency Summary `json:"efficiency"`
}

// SweepRow is one line of the AllReduce benchmark (see benchmarks/allreduce): an op on
// Ranks ranks over Bytes of payload. Op "ring-exchange" rows are the raw link ceiling.
type SweepRow struct {
	Op        string  `json:"op"`
	Ranks     int     `json:"ranks"`
	Bytes     int64   `json:"bytes"`
	Dtype     string  `json:"dtype"`
	TimeUS    float64 `json:"time_us"`
	AlgBWGBs  float64 `json:"algbw_gbs"`
	BusBWGBs  float64 `json:"busbw_gbs"`
	LinkGBs   float64 `json:"link_gbs,omitempty"`
	MaxRelErr float64 `json:"max_rel_err"`
	Transport string  `json:"transport,omitempty"`
}

// Fit is the α-β fit of the AllReduce rows of one dtype.
type Fit struct {
	Dtype string `json:"dtype"`
	AlphaBeta
	// Ranks are the rank counts whose timings were fitted: those with a core per rank
	// when the sweep has any (oversubscribed runs measure time-slicing), else all.
	Ranks []int `json:"ranks"`
	// CeilingGBs is the ring-exchange link bandwidth at the sweep's largest size (median
	// over rank counts; 0 when the sweep had none): a perfect ring would reach
	// β = 1/CeilingGBs.
	CeilingGBs float64 `json:"ceiling_gbs"`
}

// Projection is the α-β model's scaling at large N for the measured workloads.
type Projection struct {
	// AlphaS is the per-step latency used for every link, and AlphaSource where it came
	// from (the fit, or a stated figure).
	AlphaS      float64 `json:"alpha_s"`
	AlphaSource string  `json:"alpha_source"`
	// Workloads are the measured single-rank steps projected.
	Workloads []Workload `json:"workloads"`
	// Curves holds one line per workload, link rate and variant.
	Curves []Curve `json:"curves"`
	// Reference is the published figure shown beside the model.
	Reference Reference `json:"reference"`
}

// Curve is the projected efficiency of one workload on one link for one variant.
type Curve struct {
	Workload string     `json:"workload"`
	LinkGbps float64    `json:"link_gbps"`
	Variant  Variant    `json:"variant"`
	Points   []Estimate `json:"points"`
}

// Reference is a published scaling result to set beside the model.
type Reference struct {
	Label      string  `json:"label"`
	Ranks      int     `json:"ranks"`
	Efficiency float64 `json:"efficiency"`
	Source     string  `json:"source"`
}

// HorovodReference is Horovod's published figure: about 90% scaling efficiency on 128
// GPUs for Inception V3 and ResNet-101 (Sergeev & Del Balso, "Horovod: fast and easy
// distributed deep learning in TensorFlow", 2018).
var HorovodReference = Reference{
	Label:      "Horovod, ResNet-101 / Inception V3 (published)",
	Ranks:      128,
	Efficiency: 0.90,
	Source:     "Sergeev & Del Balso, Horovod (2018), arXiv:1802.05799: ~90% at 128 GPUs",
}

// WriteJSON writes r to path, indented.
func (r *Results) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing results: %w", err)
	}
	return nil
}

// ReadJSON reads a results.json written by WriteJSON.
func ReadJSON(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this reader knows %d", path, r.Schema, SchemaVersion)
	}
	return &r, nil
}
