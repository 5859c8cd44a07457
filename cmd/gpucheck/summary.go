package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
)

func init() { commands["vs-torch"] = vsTorchCmd }

// torchTargets are the GPU issue's targets: our samples/s over PyTorch's on
// the same GPU, model, batch and precision.
var torchTargets = map[string]float64{"mlp-wide:4096": 0.8, "cnn:512": 0.5}

// vsTorchCmd reads a JSON-lines file holding bench records (ours) and
// torch-throughput records (scripts/gpu_torch.py, same run) and reports the
// ratio for every model:batch measured by both.
func vsTorchCmd(_ context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("vs-torch", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("usage: vs-torch FILE.jsonl")
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	ours, torch, torchPinned := map[string]float64{}, map[string]map[string]any{}, map[string]float64{}
	var order []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) != nil {
			continue
		}
		key := fmt.Sprintf("%v:%v", rec["model"], rec["batch"])
		switch rec["check"] {
		case "bench":
			if v, ok := rec["device_samples_per_s"].(float64); ok {
				if _, seen := ours[key]; !seen {
					order = append(order, key)
				}
				ours[key] = v
			}
		case "torch-throughput":
			// Our program's batches live in ordinary Go memory, so the like-for-like
			// baseline is PyTorch copying from pageable memory; its pinned-memory
			// time (a DataLoader with pin_memory=True) is reported beside it.
			if rec["input"] == "pinned" {
				torchPinned[key], _ = rec["samples_per_s"].(float64)
			} else {
				torch[key] = rec
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	for _, key := range order {
		t, ok := torch[key]
		if !ok {
			continue
		}
		ts, _ := t["samples_per_s"].(float64)
		ratio := ours[key] / ts
		rec := map[string]any{"check": "vs-torch", "config": key, "ours_samples_per_s": ours[key],
			"torch_samples_per_s": ts, "ratio": ratio, "torch": t["torch"], "ok": ts > 0}
		if tp := torchPinned[key]; tp > 0 {
			rec["torch_pinned_samples_per_s"], rec["ratio_vs_torch_pinned"] = tp, ours[key]/tp
		}
		if target, ok := torchTargets[key]; ok {
			rec["target"] = target
			rec["ok"] = ratio >= target
		}
		out.Report(rec)
	}
	return nil
}
