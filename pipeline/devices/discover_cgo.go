//go:build cgo

package devices

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// Discover finds this machine's GPUs through the NVIDIA driver's NVML
// library, loaded at run time (libnvidia-ml.so.1), and falls back to the CPU
// where it cannot; see the package doc. NVML is initialised and shut down
// within the call. If ctx ends before NVML answers (a wedged driver can make
// nvmlInit hang), Discover returns the CPU fallback with ErrNVML at once;
// the abandoned NVML call still shuts NVML down when it returns.
func Discover(ctx context.Context, opts Options) (*Inventory, error) {
	return DiscoverWith(ctx, nvml.New(), opts)
}

// DiscoverWith is Discover over a given NVML, such as a mock.Interface from
// github.com/NVIDIA/go-nvml/pkg/nvml/mock or nvml.New with a library path.
// It calls lib.Init and, when Init succeeded, lib.Shutdown exactly once.
func DiscoverWith(ctx context.Context, lib nvml.Interface, opts Options) (*Inventory, error) {
	inv := newInventory(opts)
	done := make(chan *Inventory, 1)
	// The probe works on its own copy so that a probe abandoned by ctx
	// never writes to the inventory the caller got.
	p := *inv
	go func() {
		probe(lib, &p)
		done <- &p
	}()
	select {
	case p := <-done:
		return p.finish(opts)
	case <-ctx.Done():
		inv.fallBack(ErrNVML, ctx.Err(), "NVML did not answer before %v", ctx.Err())
		return inv.finish(opts)
	}
}

// probe fills inv from NVML.
func probe(lib nvml.Interface, inv *Inventory) {
	defer func() {
		// A broken binding or an incomplete mock panics; report it as an
		// NVML failure rather than taking the trainer down.
		if r := recover(); r != nil {
			inv.fallBack(ErrNVML, nil, "NVML call panicked: %v", r)
		}
	}()
	if ret := lib.Init(); ret != nvml.SUCCESS {
		switch ret {
		case nvml.ERROR_LIBRARY_NOT_FOUND:
			inv.fallBack(ErrNoDriver, ret, "libnvidia-ml.so.1 could not be loaded (%v)", ret)
		case nvml.ERROR_DRIVER_NOT_LOADED:
			inv.fallBack(ErrNoDriver, ret, "NVML is installed but the kernel driver is not loaded (%v)", ret)
		default:
			inv.fallBack(ErrNVML, ret, "nvmlInit: %v", ret)
		}
		return
	}
	defer func() {
		if ret := lib.Shutdown(); ret != nvml.SUCCESS {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("nvmlShutdown: %v", ret))
		}
	}()

	if v, ret := lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
		inv.DriverVersion = v
	}
	if v, ret := lib.SystemGetNVMLVersion(); ret == nvml.SUCCESS {
		inv.NVMLVersion = v
	}
	if v, ret := lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS && v > 0 {
		inv.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}

	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		inv.fallBack(ErrNVML, ret, "nvmlDeviceGetCount: %v", ret)
		return
	}
	inv.PhysicalGPUs = count
	if count == 0 {
		inv.fallBack(ErrNoGPU, nil, "NVML reports 0 devices")
		return
	}

	// Open every GPU and read its UUID (CUDA_VISIBLE_DEVICES may name any of
	// them by UUID); describe only the visible ones.
	handles := make([]nvml.Device, count)
	uuids := make([]string, count)
	for i := range handles {
		d, ret := lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS || d == nil {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: cannot open it: %v", i, ret))
			continue
		}
		handles[i] = d
		if u, ret := d.GetUUID(); ret == nvml.SUCCESS {
			uuids[i] = u
		} else {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: UUID unknown: %v", i, ret))
		}
	}

	sel := make([]int, count)
	for i := range sel {
		sel[i] = i
	}
	if inv.VisibleDevices != nil {
		var err error
		sel, err = ResolveVisible(*inv.VisibleDevices, uuids)
		if err != nil {
			inv.Warnings = append(inv.Warnings, err.Error())
		}
		if len(sel) == 0 {
			var cause error
			var ve *VisibleDevicesError
			if errors.As(err, &ve) {
				cause = ve
			}
			inv.fallBack(ErrHidden, cause, "CUDA_VISIBLE_DEVICES=%q, %s", *inv.VisibleDevices, countGPUs(count))
			return
		}
	}

	var bad []string
	for _, i := range sel {
		h := handles[i]
		if h == nil {
			bad = append(bad, fmt.Sprint(i))
			continue // already warned: cannot open it
		}
		dev := Device{Kind: GPU, Index: len(inv.GPUs), NVMLIndex: i, UUID: uuids[i]}
		warn := func(what string, ret nvml.Return) {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: %s unknown: %v", i, what, ret))
		}
		if name, ret := h.GetName(); ret == nvml.SUCCESS {
			dev.Name = name
		} else {
			dev.Name = "unknown"
			warn("name", ret)
		}
		if m, ret := h.GetMemoryInfo(); ret == nvml.SUCCESS {
			dev.MemoryTotal, dev.MemoryFree = m.Total, m.Free
		} else {
			warn("memory", ret)
		}
		if p, ret := h.GetPciInfo(); ret == nvml.SUCCESS {
			dev.PCIBusID = pciBusID(p)
		} else {
			warn("PCI bus id", ret)
		}
		inv.GPUs = append(inv.GPUs, dev)
	}
	if len(inv.GPUs) == 0 {
		inv.fallBack(ErrNoGPU, nil, "NVML could not open GPU(s) %s", strings.Join(bad, ", "))
	}
}

// pciBusID returns the bus id NVML wrote (a NUL-terminated string), or
// builds it from the domain/bus/device numbers when that is empty.
func pciBusID(p nvml.PciInfo) string {
	b := p.BusId[:]
	if n := indexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	if len(b) > 0 {
		return string(b)
	}
	if p.Domain == 0 && p.Bus == 0 && p.Device == 0 {
		return ""
	}
	return fmt.Sprintf("%08X:%02X:%02X.0", p.Domain, p.Bus, p.Device)
}

func indexByte(b []uint8, c uint8) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
