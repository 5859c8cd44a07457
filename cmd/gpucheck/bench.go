package main

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/models"
)

func init() { commands["bench"] = benchCmd }

// counting wraps a Device to count what a step issues, and can skip either
// the GEMMs or everything else, so that timing the same step three ways
// says where its time goes: all of it, GEMMs alone (plus copies), and
// everything but the GEMMs (launches, small kernels, copies).
type counting struct {
	gpu.Device
	gemms, launches int
	skipGemm        bool
	skipKernels     bool
}

func (c *counting) Gemm(ta, tb bool, m, n, k int, alpha float32, a, b gpu.Mem, beta float32, cm gpu.Mem) error {
	c.gemms++
	if c.skipGemm {
		return nil
	}
	return c.Device.Gemm(ta, tb, m, n, k, alpha, a, b, beta, cm)
}

func (c *counting) kernel(f func() error) error {
	c.launches++
	if c.skipKernels {
		return nil
	}
	return f()
}

func (c *counting) ReluFwd(x, y gpu.Mem, n int) error {
	return c.kernel(func() error { return c.Device.ReluFwd(x, y, n) })
}
func (c *counting) ReluBwd(x, dy, dx gpu.Mem, n int) error {
	return c.kernel(func() error { return c.Device.ReluBwd(x, dy, dx, n) })
}
func (c *counting) AddBiasRows(y, b gpu.Mem, r, k int) error {
	return c.kernel(func() error { return c.Device.AddBiasRows(y, b, r, k) })
}
func (c *counting) ColSum(x, o gpu.Mem, r, k int, acc bool) error {
	return c.kernel(func() error { return c.Device.ColSum(x, o, r, k, acc) })
}
func (c *counting) RowSum(x, o gpu.Mem, r, k int, acc bool) error {
	return c.kernel(func() error { return c.Device.RowSum(x, o, r, k, acc) })
}
func (c *counting) ConvOut(s, b, d gpu.Mem, n, ch, hw int) error {
	return c.kernel(func() error { return c.Device.ConvOut(s, b, d, n, ch, hw) })
}
func (c *counting) ConvGradIn(dy, d gpu.Mem, n, ch, hw int) error {
	return c.kernel(func() error { return c.Device.ConvGradIn(dy, d, n, ch, hw) })
}
func (c *counting) Im2col(x, col gpu.Mem, g gpu.ConvGeom) error {
	return c.kernel(func() error { return c.Device.Im2col(x, col, g) })
}
func (c *counting) Col2im(col, dx gpu.Mem, g gpu.ConvGeom) error {
	return c.kernel(func() error { return c.Device.Col2im(col, dx, g) })
}
func (c *counting) MaxPoolFwd(x, y, a gpu.Mem, g gpu.ConvGeom) error {
	return c.kernel(func() error { return c.Device.MaxPoolFwd(x, y, a, g) })
}
func (c *counting) MaxPoolBwd(dy, a, dx gpu.Mem, g gpu.ConvGeom) error {
	return c.kernel(func() error { return c.Device.MaxPoolBwd(dy, a, dx, g) })
}
func (c *counting) SGDStep(w, g, v gpu.Mem, n int, lr, mu, wd float32, nes bool) error {
	return c.kernel(func() error { return c.Device.SGDStep(w, g, v, n, lr, mu, wd, nes) })
}
func (c *counting) Zero(m gpu.Mem, n int) error {
	return c.kernel(func() error { return c.Device.Zero(m, n) })
}

// timeSteps runs warm steps, then reps timed runs of n steps each, and
// returns the per-step times (the device is synchronised around each run).
func timeSteps(ctx context.Context, t *trainer, dev gpu.Device, x models.Tensor, labels []int, warm, n, reps int) ([]time.Duration, error) {
	for i := 0; i < warm; i++ {
		if _, err := t.step(ctx, x, labels); err != nil {
			return nil, err
		}
	}
	sync := func() error {
		if dev != nil {
			return dev.Sync()
		}
		return nil
	}
	var per []time.Duration
	for r := 0; r < reps; r++ {
		if err := sync(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		for i := 0; i < n; i++ {
			if _, err := t.step(ctx, x, labels); err != nil {
				return nil, err
			}
		}
		if err := sync(); err != nil {
			return nil, err
		}
		per = append(per, time.Since(t0)/time.Duration(n))
	}
	sort.Slice(per, func(i, j int) bool { return per[i] < per[j] })
	return per, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// benchCmd measures training samples/s for each model:batch on the device
// and on the CPU path, in the same process, and breaks the device step down.
func benchCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	spec := fs.String("device", "cuda", "device ("+gpu.Specs+")")
	configs := fs.String("configs", "mlp-wide:4096,cnn:512,mlp:512", "comma-separated model:batch")
	steps := fs.Int("steps", 20, "timed steps per repeat on the device")
	cpuBudget := fs.Duration("cpu-budget", 20*time.Second, "rough time allowed for each CPU-path measurement")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dev, err := openDevice(*spec)
	if err != nil {
		return err
	}
	for _, cfg := range strings.Split(*configs, ",") {
		name, bs, ok := strings.Cut(cfg, ":")
		batch, err := strconv.Atoi(bs)
		if !ok || err != nil || batch <= 0 {
			return fmt.Errorf("--configs: %q is not model:batch", cfg)
		}
		x, labels := batchFor(3, 0, batch)
		rec := map[string]any{"check": "bench", "model": name, "batch": batch, "device": dev.Name(),
			"precision": "fp32 (cuBLAS default math: no TF32)", "step": "host batch uploaded, forward, host softmax-CE on downloaded logits, backward, device SGD momentum"}

		if c, ok := dev.(*gpu.CUDADevice); ok {
			pageable, pinned, err := uploadTimes(c, x.Data)
			if err != nil {
				return err
			}
			rec["input_upload_pageable_ms"], rec["input_upload_pinned_ms"] = pageable, pinned
		}

		// The device, three ways: all, GEMMs only, everything but GEMMs.
		var full []time.Duration
		for _, mode := range []string{"full", "gemm_only", "no_gemm"} {
			cd := &counting{Device: dev, skipKernels: mode == "gemm_only", skipGemm: mode == "no_gemm"}
			t, err := newTrainer(ctx, name, 1, cd)
			if err != nil {
				return fmt.Errorf("%s on %s: %w", name, dev.Name(), err)
			}
			per, err := timeSteps(ctx, t, dev, x, labels, 5, *steps, 3)
			if err != nil {
				return fmt.Errorf("%s on %s (%s): %w", name, dev.Name(), mode, err)
			}
			gm := t.model.(*gpu.Model)
			_, cached, peak := gm.MemoryStats()
			if mode == "full" {
				full = per
				n := 5 + 3**steps
				rec["gemms_per_step"] = cd.gemms / n
				rec["kernel_launches_per_step"] = cd.launches / n
				rec["pool_peak_bytes"], rec["pool_cached_bytes"] = peak, cached
			}
			rec[mode+"_step_ms"] = ms(per[len(per)/2])
			t.close()
		}
		rec["device_step_ms_min"], rec["device_step_ms_max"] = ms(full[0]), ms(full[len(full)-1])
		devSPS := float64(batch) / full[len(full)/2].Seconds()
		rec["device_samples_per_s"] = devSPS

		// The CPU path (gorgonia), same model and batch: as many steps as fit the budget.
		cpu, err := newTrainer(ctx, name, 1, nil)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if _, err := cpu.step(ctx, x, labels); err != nil {
			return err
		}
		first := time.Since(t0)
		n := max(1, min(5, int(*cpuBudget/max(first, time.Millisecond))-1))
		per, err := timeSteps(ctx, cpu, nil, x, labels, 0, n, 1)
		if err != nil {
			return err
		}
		rec["cpu_step_ms"], rec["cpu_timed_steps"] = ms(per[0]), n
		rec["cpu_samples_per_s"] = float64(batch) / per[0].Seconds()
		rec["device_vs_cpu"] = devSPS / (float64(batch) / per[0].Seconds())
		rec["ok"] = true
		out.Report(rec)
	}
	return nil
}

// uploadTimes measures one input batch's host-to-device copy from Go
// memory (pageable: what Forward does) and from pinned memory
// (cuMemAllocHost: what a loader filling pinned buffers would give), the
// median of 5 each, in milliseconds.
func uploadTimes(c *gpu.CUDADevice, data []float32) (pageable, pinned float64, err error) {
	m, err := c.Alloc(4 * len(data))
	if err != nil {
		return 0, 0, err
	}
	defer c.Free(m)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(data))), 4*len(data))
	host, err := c.Context().AllocHost(len(raw))
	if err != nil {
		return 0, 0, err
	}
	defer c.Context().FreeHost(host)
	copy(host, raw)
	median := func(src []byte) (float64, error) {
		var ts []time.Duration
		for i := 0; i < 5; i++ {
			t0 := time.Now()
			if err := c.Context().HtoD(cuda.DevicePtr(m.Ptr()), unsafe.Pointer(&src[0]), len(src)); err != nil {
				return 0, err
			}
			if err := c.Sync(); err != nil {
				return 0, err
			}
			ts = append(ts, time.Since(t0))
		}
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		return float64(ts[2].Microseconds()) / 1000, nil
	}
	if pageable, err = median(raw); err != nil {
		return 0, 0, err
	}
	pinned, err = median(host)
	return pageable, pinned, err
}
