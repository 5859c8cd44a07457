package devices

import (
	"fmt"
	"runtime"
)

// cpuDevice describes this machine's processor: its model and core count,
// and its memory where the OS tells (see cpuInfo).
func cpuDevice() Device {
	model, total, avail := cpuInfo()
	if model == "" {
		model = runtime.GOARCH + " CPU"
	}
	return Device{
		Kind:        CPU,
		NVMLIndex:   -1,
		Name:        fmt.Sprintf("%s (%d cores)", model, runtime.NumCPU()),
		MemoryTotal: total,
		MemoryFree:  avail,
	}
}
