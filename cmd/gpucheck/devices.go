package main

import (
	"context"
	"flag"
	"strings"

	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/pipeline/devices"
)

func init() { commands["devices"] = devicesCmd }

// devicesCmd checks that NVML (pipeline/devices) and the CUDA driver
// (gpu/cuda) describe the same GPUs, matched by PCI bus id (their orders may
// differ), and that --device auto picks a GPU.
func devicesCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	inv, err := devices.Discover(ctx, devices.Options{})
	if err != nil {
		return err
	}
	drv, err := cuda.Load()
	if err != nil {
		out.Report(map[string]any{"check": "devices", "ok": false, "nvml": inv, "error": err.Error()})
		return nil
	}
	cdevs, err := drv.Devices()
	if err != nil {
		return err
	}
	ok := len(inv.GPUs) > 0 && len(inv.GPUs) == len(cdevs)
	var pairs []map[string]any
	for _, g := range inv.GPUs {
		var c cuda.DeviceInfo
		found := false
		for _, d := range cdevs {
			if devices.SameBusID(d.PCIBusID, g.PCIBusID) {
				c, found = d, true
			}
		}
		// NVML's total counts the memory the driver reserves for itself;
		// CUDA's excludes it (on an H200: 140.4 vs 139.8 GiB), so the
		// totals agree only to within that reserve.
		memRatio := float64(c.TotalMem) / float64(max(g.MemoryTotal, 1))
		match := found && c.Name == g.Name && memRatio > 0.98 && memRatio <= 1
		ok = ok && match
		pairs = append(pairs, map[string]any{
			"pci_bus_id": g.PCIBusID, "nvml_name": g.Name, "nvml_memory": g.MemoryTotal, "nvml_index": g.NVMLIndex,
			"cuda_found": found, "cuda_ordinal": c.Ordinal, "cuda_name": c.Name, "cuda_memory": c.TotalMem,
			"cuda_pci_bus_id": c.PCIBusID, "sm": c.Major*10 + c.Minor, "sms": c.SMs, "cuda_over_nvml_memory": memRatio, "match": match,
		})
	}
	dev, note, err := gpu.Select("auto", 0)
	picked := ""
	if dev != nil {
		picked = dev.Name()
		if c, ok := dev.(*gpu.CUDADevice); ok {
			c.Close()
		}
	}
	autoOK := err == nil && strings.HasPrefix(picked, "cuda:")
	out.Report(map[string]any{
		"check": "devices", "ok": ok && autoOK,
		"nvml_gpus": len(inv.GPUs), "cuda_devices": len(cdevs), "pairs": pairs,
		"nvml_fallback": inv.Reason, "driver": inv.DriverVersion, "cuda_driver_api": drv.Version(),
		"cublas": drv.CublasVersion(), "libraries": drv.Libraries(),
		"auto_picked": picked, "auto_note": note,
	})
	return nil
}
