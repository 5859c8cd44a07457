package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/models"
)

// ErrNoGPU is matched (errors.Is) by Select's error when "cuda" was asked
// for and no usable CUDA device exists (no driver, no cuBLAS, no device).
var ErrNoGPU = errors.New("no usable CUDA device")

// Specs is the help text of a --device flag.
const Specs = "auto|cpu|cuda|cuda:N|emu"

// Select resolves a --device value for the rank with local rank localRank:
//
//	cpu     the CPU (gorgonia); dev is nil
//	cuda    CUDA device localRank mod count, as torchrun's LOCAL_RANK picks a GPU
//	cuda:N  CUDA device N
//	auto    cuda when the CUDA backend loads and finds a device, else the CPU
//	emu     the emulator (Go twins of the kernels on the CPU; for tests)
//
// N is CUDA's device ordinal, which honours CUDA_VISIBLE_DEVICES; CUDA
// orders devices fastest first unless CUDA_DEVICE_ORDER=PCI_BUS_ID, which
// makes its order NVML's (the device's Describe gives its PCI bus id, to
// match the two). Several ranks may share one device.
//
// note says what was chosen and, for auto on the CPU, why: print it once.
// An explicit cuda request that cannot be met is an error (ErrNoGPU
// wrapping the loader's or driver's message).
func Select(spec string, localRank int) (dev Device, note string, err error) {
	switch s := strings.TrimSpace(spec); {
	case s == "cpu":
		return nil, "cpu (--device cpu)", nil
	case s == "emu":
		return NewEmulator(), "emu: the kernels' Go twins on the CPU (a test device, slow)", nil
	case s == "auto" || s == "":
		d, err := openCUDA(-1, localRank)
		if err != nil {
			return nil, "cpu (--device auto: " + err.Error() + ")", nil
		}
		return d, d.Describe() + " (--device auto)", nil
	case s == "cuda":
		d, err := openCUDA(-1, localRank)
		if err != nil {
			return nil, "", fmt.Errorf("--device cuda: %w", err)
		}
		return d, d.Describe(), nil
	case strings.HasPrefix(s, "cuda:"):
		n, perr := strconv.Atoi(s[len("cuda:"):])
		if perr != nil || n < 0 {
			return nil, "", fmt.Errorf("--device %q: want %s", spec, Specs)
		}
		d, err := openCUDA(n, localRank)
		if err != nil {
			return nil, "", fmt.Errorf("--device %s: %w", s, err)
		}
		return d, d.Describe(), nil
	default:
		return nil, "", fmt.Errorf("--device %q: want %s", spec, Specs)
	}
}

// openCUDA opens ordinal, or localRank mod count when ordinal < 0.
func openCUDA(ordinal, localRank int) (*CUDADevice, error) {
	drv, err := cuda.Load()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGPU, err)
	}
	devs, err := drv.Devices()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGPU, err)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("%w: the CUDA driver sees no device (CUDA_VISIBLE_DEVICES?)", ErrNoGPU)
	}
	if ordinal < 0 {
		ordinal = max(localRank, 0) % len(devs)
	}
	if ordinal >= len(devs) {
		return nil, fmt.Errorf("%w: cuda:%d asked for, the driver sees %d device(s)", ErrNoGPU, ordinal, len(devs))
	}
	d, err := OpenCUDA(ordinal)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoGPU, err)
	}
	return d, nil
}

// Place puts seq on the device a --device value names (Select) and returns
// the model to train: seq itself on the CPU, a compiled *Model elsewhere.
// With auto, a model holding a layer the device backend does not support
// stays on the CPU and note says why; with an explicit device it is an
// error naming the layer.
func Place(seq *models.Sequential, spec string, localRank int) (m models.Model, note string, err error) {
	dev, note, err := Select(spec, localRank)
	if err != nil || dev == nil {
		return seq, note, err
	}
	cm, err := Compile(seq, dev)
	if err != nil {
		if c, ok := dev.(*CUDADevice); ok {
			c.Close()
		}
		if s := strings.TrimSpace(spec); (s == "auto" || s == "") && errors.Is(err, ErrUnsupportedLayer) {
			return seq, "cpu (--device auto: " + err.Error() + ")", nil
		}
		return nil, "", err
	}
	return cm, note, nil
}
