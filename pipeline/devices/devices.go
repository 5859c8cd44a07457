// Package devices finds the accelerators a rank can run on: NVIDIA GPUs
// through NVML (github.com/NVIDIA/go-nvml), filtered by CUDA_VISIBLE_DEVICES,
// or the CPU when there are none, with the reason why.
//
// Discover never fails for want of GPUs: where the NVIDIA driver library is
// missing (nvml.ERROR_LIBRARY_NOT_FOUND, the normal case on machines without
// NVIDIA drivers), where NVML finds no GPU or CUDA_VISIBLE_DEVICES hides them
// all, it returns an Inventory holding the CPU and a Reason the caller can
// print, and logs it once per process if asked to. Options.RequireGPU turns
// the fallback into an error. Both builds see GPUs: cgo builds load NVML
// through go-nvml, CGO_ENABLED=0 builds through purego (nvml_purego.go,
// searching where gpu/cuda searches for libcuda).
//
// Each rank then picks its device with ForLocalRank: local rank r gets
// visible GPU r mod n, or the CPU when there is no GPU.
//
// # CUDA_VISIBLE_DEVICES
//
// Unset, every GPU is visible. Otherwise it is a comma-separated list of GPU
// indices or UUIDs ("GPU-8d5f..."; any unique prefix, "GPU-" optional), and
// the visible GPUs are those listed, in the order listed: "cuda:0" is the
// first entry. As CUDA does, the list ends at the first entry that does not
// name a GPU (out of range, unknown or ambiguous UUID, repeated, malformed):
// the GPUs before it stay visible and Inventory.Warnings says which entry
// was ignored. "" hides every GPU, and so do "-1" and "none" (which also end
// a list quietly wherever they appear). Indices are NVML's, which number GPUs
// in PCI bus order; CUDA numbers them the same way when CUDA_DEVICE_ORDER is
// PCI_BUS_ID (its default order puts the fastest GPU first).
//
// The go-nvml code is in files built only with cgo; its entry point for
// tests and custom loaders, DiscoverWith, takes an nvml.Interface so that
// go-nvml's mock package can stand in for a machine's GPUs.
package devices

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/jobenv"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Kind is the kind of a Device.
type Kind int

const (
	// CPU is the host processor, used when no GPU is available.
	CPU Kind = iota
	// GPU is an NVIDIA GPU found through NVML.
	GPU
)

// String returns "cpu" or "gpu".
func (k Kind) String() string {
	switch k {
	case CPU:
		return "cpu"
	case GPU:
		return "gpu"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes the kind as its String.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// Device is one device a rank can run on.
type Device struct {
	Kind Kind
	// Index is the device's position among the visible GPUs, the N of
	// "cuda:N" (what CUDA calls the device ordinal). 0 for the CPU.
	Index int
	// NVMLIndex is the GPU's index in NVML's enumeration of all GPUs on the
	// machine, before CUDA_VISIBLE_DEVICES; -1 for the CPU.
	NVMLIndex int
	// Name is the product name ("NVIDIA H100 80GB HBM3"), or the processor
	// model and core count for the CPU. "unknown" when NVML cannot tell.
	Name string
	// UUID is the GPU's UUID ("GPU-..."); empty for the CPU or when unknown.
	UUID string
	// MemoryTotal and MemoryFree are in bytes (for the CPU: total and
	// available RAM where the OS says). 0 when unknown.
	MemoryTotal, MemoryFree uint64
	// PCIBusID is the GPU's PCI address ("00000000:3B:00.0"); empty for the
	// CPU or when unknown.
	PCIBusID string
}

// String names the device as frameworks do: "cuda:0", or "cpu".
func (d Device) String() string {
	if d.Kind == GPU {
		return "cuda:" + strconv.Itoa(d.Index)
	}
	return "cpu"
}

// Label names the device with its model, for plans and logs:
// "cuda:0 (NVIDIA H100 80GB HBM3)".
func (d Device) Label() string {
	if d.Name == "" {
		return d.String()
	}
	return d.String() + " (" + d.Name + ")"
}

// MarshalJSON writes the device with its String as "device" and
// snake_case field names.
func (d Device) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Device      string `json:"device"`
		Kind        Kind   `json:"kind"`
		Index       int    `json:"index"`
		NVMLIndex   int    `json:"nvml_index"`
		Name        string `json:"name"`
		UUID        string `json:"uuid,omitempty"`
		MemoryTotal uint64 `json:"memory_total_bytes"`
		MemoryFree  uint64 `json:"memory_free_bytes"`
		PCIBusID    string `json:"pci_bus_id,omitempty"`
	}{d.String(), d.Kind, d.Index, d.NVMLIndex, d.Name, d.UUID, d.MemoryTotal, d.MemoryFree, d.PCIBusID})
}

// Reasons for falling back to the CPU. Inventory.Err wraps one of them (and,
// from NVML, the nvml.Return it failed with), so callers can test with
// errors.Is.
var (
	// ErrNoCgo was the reason of CGO_ENABLED=0 builds when they could not
	// load NVML.
	//
	// Deprecated: no longer returned; such builds load NVML through purego.
	ErrNoCgo = errors.New("built without cgo")
	// ErrNoDriver: the NVIDIA driver (libnvidia-ml.so.1, or its kernel
	// module) is not there.
	ErrNoDriver = errors.New("NVIDIA driver not found")
	// ErrNoGPU: NVML works but reports no usable GPU.
	ErrNoGPU = errors.New("no NVIDIA GPU found")
	// ErrHidden: CUDA_VISIBLE_DEVICES leaves no GPU visible.
	ErrHidden = errors.New("CUDA_VISIBLE_DEVICES hides every GPU")
	// ErrNVML: NVML failed otherwise (permissions, a timeout, a driver
	// mismatch...).
	ErrNVML = errors.New("NVML failed")
)

// FallbackError says why Discover fell back to the CPU: one of the Err*
// reasons above, what exactly happened, and the underlying error if any
// (an nvml.Return, a *VisibleDevicesError, a context error).
type FallbackError struct {
	Reason error  // ErrNoDriver, ErrNoGPU, ErrHidden or ErrNVML
	Detail string // human explanation; may be empty
	Cause  error  // may be nil
}

func (e *FallbackError) Error() string {
	if e.Detail == "" {
		return e.Reason.Error()
	}
	return e.Reason.Error() + ": " + e.Detail
}

// Unwrap returns the reason and the cause, for errors.Is and errors.As.
func (e *FallbackError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Reason}
	}
	return []error{e.Reason, e.Cause}
}

// Inventory is what Discover found.
type Inventory struct {
	// GPUs are the visible GPUs in CUDA_VISIBLE_DEVICES order (GPUs[i] is
	// "cuda:i"); empty on fallback.
	GPUs []Device `json:"gpus"`
	// CPU describes the host processor; always filled in.
	CPU Device `json:"cpu"`
	// Reason says why there is no GPU, ready to print; "" when GPUs were
	// found. Err is the same as a typed *FallbackError.
	Reason string `json:"fallback_reason,omitempty"`
	Err    error  `json:"-"`
	// Warnings are problems that did not stop discovery: a GPU NVML could
	// not open or describe, a CUDA_VISIBLE_DEVICES entry that was ignored.
	Warnings []string `json:"warnings,omitempty"`
	// PhysicalGPUs is how many GPUs NVML reported before
	// CUDA_VISIBLE_DEVICES; 0 when NVML did not answer.
	PhysicalGPUs int `json:"physical_gpus"`
	// DriverVersion, NVMLVersion and CUDADriverVersion ("12.4") are as NVML
	// reports them; empty when unknown.
	DriverVersion     string `json:"driver_version,omitempty"`
	NVMLVersion       string `json:"nvml_version,omitempty"`
	CUDADriverVersion string `json:"cuda_driver_version,omitempty"`
	// VisibleDevices is CUDA_VISIBLE_DEVICES as read; nil when unset.
	VisibleDevices *string `json:"cuda_visible_devices"`
}

// Devices returns the devices ranks should use: the visible GPUs, or just
// the CPU when there are none.
func (inv *Inventory) Devices() []Device {
	if len(inv.GPUs) > 0 {
		return inv.GPUs
	}
	return []Device{inv.CPU}
}

// ForLocalRank returns the device of the rank with this local rank; see the
// function ForLocalRank.
func (inv *Inventory) ForLocalRank(localRank int) (Device, error) {
	return ForLocalRank(inv.Devices(), localRank)
}

// Options configures Discover. The zero value reads the process environment
// and logs nothing.
type Options struct {
	// LookupEnv reads CUDA_VISIBLE_DEVICES; nil means os.LookupEnv. Tests
	// and launchers set it to describe another process's environment.
	LookupEnv func(key string) (string, bool)
	// Logf, if not nil, is told the fallback reason and any warnings, once
	// per process: later Discover calls stay quiet, so a trainer that
	// rediscovers does not repeat itself. Nil: no logging (Inventory.Reason
	// and Warnings still hold everything).
	Logf func(format string, args ...any)
	// RequireGPU makes Discover return a non-nil error, wrapping the reason,
	// when it would fall back to the CPU. The Inventory is returned all the
	// same. False by default: fall back.
	RequireGPU bool
}

func (o Options) lookup(key string) (string, bool) {
	if o.LookupEnv != nil {
		return o.LookupEnv(key)
	}
	return os.LookupEnv(key)
}

// said records that this process has logged its discovery result.
var said atomic.Bool

// newInventory starts an inventory: the CPU, CUDA_VISIBLE_DEVICES as read.
func newInventory(o Options) *Inventory {
	inv := &Inventory{CPU: cpuDevice()}
	if v, ok := o.lookup("CUDA_VISIBLE_DEVICES"); ok {
		inv.VisibleDevices = &v
	}
	return inv
}

// fallBack records why the inventory has no GPU.
func (inv *Inventory) fallBack(reason error, cause error, format string, args ...any) {
	e := &FallbackError{Reason: reason, Detail: fmt.Sprintf(format, args...), Cause: cause}
	inv.GPUs = nil
	inv.Err = e
	inv.Reason = e.Error()
}

// finish logs the result once per process and applies RequireGPU.
func (inv *Inventory) finish(o Options) (*Inventory, error) {
	if o.Logf != nil && (inv.Err != nil || len(inv.Warnings) > 0) && !said.Swap(true) {
		for _, w := range inv.Warnings {
			o.Logf("devices: warning: %s", w)
		}
		if inv.Err != nil {
			o.Logf("devices: no GPUs, using the CPU: %s", inv.Reason)
		}
	}
	if o.RequireGPU && inv.Err != nil {
		return inv, fmt.Errorf("devices: a GPU is required: %w", inv.Err)
	}
	return inv, nil
}

// ErrLocalRank is wrapped by errors about a bad local rank.
var ErrLocalRank = errors.New("devices: bad local rank")

// ForLocalRank returns the device for the rank with this local rank (its
// index among the ranks on this machine): the GPUs among devs round-robin,
// local rank r getting GPU r mod n, so that ranks spread evenly and several
// share a GPU only when there are more ranks than GPUs. Without a GPU in
// devs, every rank gets the CPU (the CPU device in devs, else this
// machine's). A negative local rank is an error.
func ForLocalRank(devs []Device, localRank int) (Device, error) {
	if localRank < 0 {
		return Device{}, fmt.Errorf("%w: %d is negative", ErrLocalRank, localRank)
	}
	var gpus []Device
	for _, d := range devs {
		if d.Kind == GPU {
			gpus = append(gpus, d)
		}
	}
	if len(gpus) > 0 {
		return gpus[localRank%len(gpus)], nil
	}
	for _, d := range devs {
		if d.Kind == CPU {
			return d, nil
		}
	}
	return cpuDevice(), nil
}

// LocalRankFromEnv reads LOCAL_RANK (set by gorun and torchrun) through
// lookup (nil: os.LookupEnv). Unset means 0, a single-process run.
func LocalRankFromEnv(lookup func(string) (string, bool)) (int, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	v, ok := lookup(jobenv.LocalRank)
	if !ok {
		return 0, nil
	}
	r, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || r < 0 {
		return 0, fmt.Errorf("%w: LOCAL_RANK=%q is not a non-negative integer", ErrLocalRank, v)
	}
	return r, nil
}

// WriteTable prints the inventory for people: a summary line (GPU count and
// driver, or "no GPUs" and the reason), CUDA_VISIBLE_DEVICES if set, the
// devices as a table, and the warnings.
func (inv *Inventory) WriteTable(w io.Writer) error {
	var b strings.Builder
	if len(inv.GPUs) > 0 {
		fmt.Fprintf(&b, "%d GPU(s)", len(inv.GPUs))
		var about []string
		if inv.DriverVersion != "" {
			about = append(about, "driver "+inv.DriverVersion)
		}
		if inv.CUDADriverVersion != "" {
			about = append(about, "CUDA "+inv.CUDADriverVersion)
		}
		if inv.NVMLVersion != "" {
			about = append(about, "NVML "+inv.NVMLVersion)
		}
		if len(about) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(about, ", "))
		}
		b.WriteString("\n")
	} else {
		fmt.Fprintf(&b, "no GPUs: %s; using the CPU\n", inv.Reason)
	}
	if inv.VisibleDevices != nil {
		fmt.Fprintf(&b, "CUDA_VISIBLE_DEVICES=%q (%d GPU(s) on this machine)\n", *inv.VisibleDevices, inv.PhysicalGPUs)
	}
	rows := [][]string{{"device", "nvml", "name", "uuid", "memory free/total", "pci bus id"}}
	for _, d := range inv.Devices() {
		nv, uuid, pci := "-", d.UUID, d.PCIBusID
		if d.Kind == GPU {
			nv = strconv.Itoa(d.NVMLIndex)
		}
		if uuid == "" {
			uuid = "-"
		}
		if pci == "" {
			pci = "-"
		}
		rows = append(rows, []string{d.String(), nv, d.Name, uuid, memory(d.MemoryFree, d.MemoryTotal), pci})
	}
	writeRows(&b, rows)
	for _, x := range inv.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", x)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func memory(free, total uint64) string {
	if total == 0 {
		return "-"
	}
	const gib = 1 << 30
	return fmt.Sprintf("%.1f / %.1f GiB", float64(free)/gib, float64(total)/gib)
}

// writeRows writes rows in left-aligned columns two spaces apart.
func writeRows(b *strings.Builder, rows [][]string) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		for i, c := range r {
			if i == len(r)-1 {
				b.WriteString(c)
				break
			}
			b.WriteString(c)
			b.WriteString(strings.Repeat(" ", width[i]-len(c)+2))
		}
		b.WriteByte('\n')
	}
}

// SameBusID reports whether two PCI bus ids name the same device, across
// NVML's spelling ("00000000:19:00.0") and CUDA's ("0000:19:00.0"): the
// domain's width and the letters' case differ. Match GPUs by it, never by
// index: CUDA orders devices fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID.
func SameBusID(a, b string) bool {
	norm := func(s string) string {
		s = strings.ToLower(strings.TrimSpace(s))
		if dom, rest, ok := strings.Cut(s, ":"); ok {
			return strings.TrimLeft(dom, "0") + ":" + rest
		}
		return s
	}
	return a != "" && norm(a) == norm(b)
}
