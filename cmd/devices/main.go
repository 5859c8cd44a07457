// Command devices prints the devices ringtrain ranks would run on: the
// NVIDIA GPUs NVML finds (index, name, UUID, free/total memory, PCI bus id),
// filtered by CUDA_VISIBLE_DEVICES, or the CPU and the reason there is no
// GPU (no driver, GPUs hidden...). It sees GPUs in CGO_ENABLED=0 builds
// too (NVML is then loaded through purego).
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
	"time"

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
			LocalRanks []rankDevice `json:"local_ranks,omitempty"`
		}{inv, mapping}
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
