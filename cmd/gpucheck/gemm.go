package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/gpu"
)

func init() {
	commands["gemm"] = gemmCmd
	commands["kernels"] = kernelsCmd
}

// openDevice opens the device named by spec, which must not be the CPU.
func openDevice(spec string) (gpu.Device, error) {
	dev, _, err := gpu.Select(spec, 0)
	if err != nil {
		return nil, err
	}
	if dev == nil {
		return nil, fmt.Errorf("--device %s: the CPU has no device kernels to check", spec)
	}
	return dev, nil
}

func randFloats(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

func upload(dev gpu.Device, v []float32) (gpu.Mem, error) {
	m, err := dev.Alloc(4 * max(len(v), 1))
	if err != nil {
		return gpu.Mem{}, err
	}
	return m, gpu.UploadFloats(dev, m, v)
}

func download(dev gpu.Device, m gpu.Mem, n int) ([]float32, error) {
	v := make([]float32, n)
	return v, gpu.DownloadFloats(dev, v, m)
}

// gemmCmd checks Device.Gemm (the row-major mapping onto cuBLAS) against a
// float64 reference for every transpose combination on odd and model sizes.
func gemmCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("gemm", flag.ContinueOnError)
	spec := fs.String("device", "cuda", "device to check ("+gpu.Specs+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dev, err := openDevice(*spec)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(1, 2))
	shapes := [][3]int{{1, 1, 1}, {7, 13, 5}, {33, 17, 65}, {64, 512, 784}, {129, 257, 63}, {256, 1024, 784}}
	for _, s := range shapes {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			m, n, k := s[0], s[1], s[2]
			a, b, c := randFloats(rng, m*k), randFloats(rng, k*n), randFloats(rng, m*n)
			const alpha, beta = 1.5, 0.5
			am, err := upload(dev, a)
			if err != nil {
				return err
			}
			bm, _ := upload(dev, b)
			cm, _ := upload(dev, c)
			if err := dev.Gemm(tr[0], tr[1], m, n, k, alpha, am, bm, beta, cm); err != nil {
				return fmt.Errorf("gemm %dx%dx%d trans %v: %w", m, n, k, tr, err)
			}
			got, err := download(dev, cm, m*n)
			if err != nil {
				return err
			}
			dev.Free(am)
			dev.Free(bm)
			dev.Free(cm)
			// Error relative to Σ|a·b| (the scale of the rounding error), worst over C.
			worst := 0.0
			for i := 0; i < m; i++ {
				for j := 0; j < n; j++ {
					var sum, mag float64
					for p := 0; p < k; p++ {
						av := a[i*k+p]
						if tr[0] {
							av = a[p*m+i]
						}
						bv := b[p*n+j]
						if tr[1] {
							bv = b[j*k+p]
						}
						sum += float64(av) * float64(bv)
						mag += math.Abs(float64(av) * float64(bv))
					}
					want := alpha*sum + beta*float64(c[i*n+j])
					rel := math.Abs(float64(got[i*n+j])-want) / (alpha*mag + beta*math.Abs(float64(c[i*n+j])) + 1e-30)
					worst = max(worst, rel)
				}
			}
			out.Report(map[string]any{"check": "gemm", "device": dev.Name(), "m": m, "n": n, "k": k,
				"trans_a": tr[0], "trans_b": tr[1], "max_rel_err": worst, "ok": worst < 1e-5})
		}
	}
	return dev.Sync()
}
