// Command devices prints the devices ringtrain ranks would run on: the
// NVIDIA GPUs NVML finds (index, name, UUID, free/total memory, PCI bus id),
// filtered by CUDA_VISIBLE_DEVICES, or the CPU and the reason there is no
// GPU (no driver, GPUs hidden...). It sees GPUs in CGO_ENABLED=0 builds
// too (NVML is then loaded through purego).
//
// It also says whether the CUDA backend that trains on GPUs (gpu/cuda:
// libcuda and cuBLAS, loaded at run time) loads in this process, and if not
// why, every path tried included: "CUDA backend: loaded (driver API 13000,
// cuBLAS 130100, libraries: ...), 1 device(s)" or "CUDA backend: not
// available: ..." (--json: the field cuda_backend). NVML seeing a GPU while
// the backend does not load means ranks with --device auto train on the CPU.
// The backend reads the process's own environment (RINGTRAIN_CUDA_LIBS,
// CUDA_VISIBLE_DEVICES).
//
// Usage:
//
//	devices [--json] [--local-ranks N] [--require-gpu] [--timeout 30s]
//
// --local-ranks N also prints which device each of N ranks on this machine
// would pick (round-robin over the GPUs, as ranks do with LOCAL_RANK).
// --require-gpu exits with status 1 when there is no GPU. Bad flags exit 2.
//
// NVML is initialised and shut down inside discovery (devices.Discover), so
// the command never leaves it initialised, whatever path it takes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/pipeline/devices"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv))
}

// rankDevice is one line of the --local-ranks listing.
type rankDevice struct {
	LocalRank int            `json:"local_rank"`
	Device    devices.Device `json:"device"`
}

// cudaBackend says whether the CUDA backend (gpu/cuda) loads: the --json
// field cuda_backend.
type cudaBackend struct {
	Loaded    bool     `json:"loaded"`
	DriverAPI int      `json:"driver_api,omitempty"` // cuDriverGetVersion, e.g. 13000
	Cublas    int      `json:"cublas,omitempty"`     // CUBLAS_VERSION, e.g. 130100 (0: unknown)
	Libraries []string `json:"libraries,omitempty"`  // the files loaded, driver first
	Devices   int      `json:"devices"`              // CUDA devices the driver sees
	Error     string   `json:"error,omitempty"`      // why it is not available (or the devices could not be listed)
	// Ordinals lists the CUDA devices in CUDA's order (the N of --device
	// cuda:N, and what LOCAL_RANK picks), each matched to NVML's GPU by PCI
	// bus id: the two orders differ unless CUDA_DEVICE_ORDER=PCI_BUS_ID.
	Ordinals []cudaOrdinal `json:"ordinals,omitempty"`
}

// cudaOrdinal is one CUDA device and the NVML GPU with the same PCI bus id.
type cudaOrdinal struct {
	Ordinal   int    `json:"ordinal"`
	Name      string `json:"name"`
	PCIBusID  string `json:"pci_bus_id"`
	NVMLIndex int    `json:"nvml_index"` // -1: no NVML GPU has this bus id
}

// matchNVML fills each ordinal's NVMLIndex from the NVML inventory.
func (b *cudaBackend) matchNVML(gpus []devices.Device) {
	for i := range b.Ordinals {
		b.Ordinals[i].NVMLIndex = -1
		for _, g := range gpus {
			if devices.SameBusID(g.PCIBusID, b.Ordinals[i].PCIBusID) {
				b.Ordinals[i].NVMLIndex = g.NVMLIndex
			}
		}
	}
}

// loadCUDA is cuda.Load; tests replace it.
var loadCUDA = cuda.Load

// probeCUDA loads the CUDA backend (once per process) and describes it,
// giving up when ctx ends (a driver that hangs in cuInit).
func probeCUDA(ctx context.Context) cudaBackend {
	done := make(chan cudaBackend, 1)
	go func() { done <- describeCUDA() }()
	select {
	case b := <-done:
		return b
	case <-ctx.Done():
		return cudaBackend{Error: "loading it did not finish: " + ctx.Err().Error()}
	}
}

func describeCUDA() cudaBackend {
	drv, err := loadCUDA()
	if err != nil {
		return cudaBackend{Error: err.Error()}
	}
	b := cudaBackend{Loaded: true, DriverAPI: drv.Version(), Cublas: drv.CublasVersion(), Libraries: drv.Libraries()}
	devs, err := drv.Devices()
	if err != nil {
		b.Error = "listing the devices: " + err.Error()
	}
	b.Devices = len(devs)
	for _, d := range devs {
		b.Ordinals = append(b.Ordinals, cudaOrdinal{Ordinal: d.Ordinal, Name: d.Name, PCIBusID: d.PCIBusID})
	}
	return b
}

// String is the text line.
func (b cudaBackend) String() string {
	if !b.Loaded {
		return "CUDA backend: not available: " + b.Error
	}
	libs := "none"
	if len(b.Libraries) > 0 {
		libs = strings.Join(b.Libraries, ", ")
	}
	cublas := "cuBLAS version unknown"
	if b.Cublas > 0 {
		cublas = fmt.Sprintf("cuBLAS %d", b.Cublas)
	}
	s := fmt.Sprintf("CUDA backend: loaded (driver API %d, %s, libraries: %s), %d device(s)", b.DriverAPI, cublas, libs, b.Devices)
	if b.Error != "" {
		s += "; " + b.Error
	}
	return s
}

// run is the command with its inputs and outputs passed in; it returns the
// exit status.
func run(args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	fs := flag.NewFlagSet("devices", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	ranks := fs.Int("local-ranks", 0, "also show which device each of this many local ranks would use")
	require := fs.Bool("require-gpu", false, "exit with status 1 if no GPU is usable")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on NVML after this long and report the CPU")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "devices: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *ranks < 0 {
		fmt.Fprintf(stderr, "devices: --local-ranks=%d: want a count >= 0\n", *ranks)
		return 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "devices: --timeout=%v: want a positive duration\n", *timeout)
		return 2
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	inv, err := devices.Discover(ctx, devices.Options{LookupEnv: lookup, RequireGPU: *require})
	if err != nil && !errors.Is(err, inv.Err) {
		fmt.Fprintf(stderr, "devices: %v\n", err)
		return 1
	}

	backend := probeCUDA(ctx)
	backend.matchNVML(inv.GPUs)

	var mapping []rankDevice
	for r := 0; r < *ranks; r++ {
		d, derr := inv.ForLocalRank(r)
		if derr != nil {
			fmt.Fprintf(stderr, "devices: %v\n", derr)
			return 1
		}
		mapping = append(mapping, rankDevice{r, d})
	}

	if *asJSON {
		out := struct {
			*devices.Inventory
			CUDABackend cudaBackend  `json:"cuda_backend"`
			LocalRanks  []rankDevice `json:"local_ranks,omitempty"`
		}{inv, backend, mapping}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(out); werr != nil {
			fmt.Fprintf(stderr, "devices: %v\n", werr)
			return 1
		}
	} else {
		if werr := inv.WriteTable(stdout); werr != nil {
			fmt.Fprintf(stderr, "devices: %v\n", werr)
			return 1
		}
		fmt.Fprintln(stdout, backend)
		for _, o := range backend.Ordinals {
			nvml := "no NVML GPU with this bus id"
			if o.NVMLIndex >= 0 {
				nvml = fmt.Sprintf("NVML GPU %d", o.NVMLIndex)
			}
			fmt.Fprintf(stdout, "  cuda:%d  %s  PCI %s = %s\n", o.Ordinal, o.Name, o.PCIBusID, nvml)
		}
		if len(mapping) > 0 {
			fmt.Fprintln(stdout, "\nlocal rank  device")
			for _, m := range mapping {
				fmt.Fprintf(stdout, "%-10d  %s\n", m.LocalRank, m.Device.Label())
			}
		}
	}
	if err != nil { // RequireGPU and no GPU
		fmt.Fprintf(stderr, "devices: %v\n", err)
		return 1
	}
	return 0
}
