// Command ptxgen compiles gpu/kernels/kernels.cu to gpu/kernels/kernels.ptx
// with NVRTC (loaded at run time, no cgo, no GPU). It is run by
// `go generate ./gpu/kernels`, from that directory; -in and -out override the
// paths. The output depends only on the source, the options in
// internal/nvrtc and the NVRTC version, so regenerating with the same NVRTC
// is a no-op (TestPTXUpToDate checks that).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/ringtrain/ringtrain/gpu/kernels/internal/nvrtc"
)

func main() {
	in := flag.String("in", "kernels.cu", "CUDA C source")
	out := flag.String("out", "kernels.ptx", "PTX file to write")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "ptxgen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	src, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	lib, err := nvrtc.Load()
	if err != nil {
		return err
	}
	file, log, err := lib.Build(src)
	if log != "" {
		fmt.Fprintf(os.Stderr, "ptxgen: NVRTC log for %s:\n%s\n", in, log)
	}
	if err != nil {
		var ce *nvrtc.CompileError
		if errors.As(err, &ce) {
			return ce.Err // the log is printed above
		}
		return err
	}
	if old, err := os.ReadFile(out); err == nil && string(old) == string(file) {
		return nil // unchanged: keep the file's modification time
	}
	if err := os.WriteFile(out, file, 0o644); err != nil {
		return err
	}
	major, minor, _ := lib.Version()
	fmt.Fprintf(os.Stderr, "ptxgen: wrote %s (%d bytes, NVRTC %d.%d from %s)\n", out, len(file), major, minor, lib.Path())
	return nil
}
