package cuda

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"unsafe"
)

// Module is a loaded PTX (or cubin/fatbin) image.
type Module struct {
	ctx *Context
	h   uintptr // CUmodule
}

// Function is a kernel in a Module.
type Function struct {
	ctx  *Context
	h    uintptr // CUfunction
	name string
}

// Name is the kernel's (mangled) name as looked up.
func (f Function) Name() string { return f.name }

// CUjit_option values (cuda.h).
const (
	jitErrorLogBuffer          = 5
	jitErrorLogBufferSizeBytes = 6
)

// jitLogSize bounds the JIT error log kept for the error message.
const jitLogSize = 16 << 10

// LoadModule loads a PTX image (cuModuleLoadDataEx), which the driver
// JIT-compiles for the device; a trailing NUL is appended when missing, as
// PTX must be a C string. On failure the error carries the JIT's log,
// which names the offending PTX line.
func (c *Context) LoadModule(ptx []byte) (*Module, error) {
	if len(ptx) == 0 {
		return nil, argError("LoadModule", "empty image")
	}
	image := ptx
	if image[len(image)-1] != 0 {
		image = append(bytes.Clone(ptx), 0)
	}
	m := &Module{ctx: c}
	err := c.do(func(api *driverAPI) error {
		logBuf := make([]byte, jitLogSize)
		opts := []int32{jitErrorLogBuffer, jitErrorLogBufferSizeBytes}
		// Option values are pointer-sized words: the buffer's address, and
		// its size as an integer. Held as uintptr so that the garbage
		// collector never sees the size as a pointer; the buffer is pinned.
		vals := []uintptr{uintptr(unsafe.Pointer(&logBuf[0])), uintptr(len(logBuf))}
		var pin runtime.Pinner
		pin.Pin(&logBuf[0])
		pin.Pin(&image[0])
		pin.Pin(&opts[0])
		pin.Pin(&vals[0])
		defer pin.Unpin()
		code := api.cuModuleLoadDataEx(&m.h, unsafe.Pointer(&image[0]), uint32(len(opts)), &opts[0], &vals[0])
		if err := c.drv.check("cuModuleLoadDataEx", code); err != nil {
			if log := strings.TrimSpace(goString(logBuf)); log != "" {
				return fmt.Errorf("%w; JIT log: %s", err, log)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// Function looks a kernel up by name (an extern "C" name, or the mangled
// one).
func (m *Module) Function(name string) (Function, error) {
	if name == "" {
		return Function{}, argError("Function", "empty name")
	}
	f := Function{ctx: m.ctx, name: name}
	err := m.ctx.do(func(api *driverAPI) error {
		if err := m.ctx.drv.check("cuModuleGetFunction", api.cuModuleGetFunction(&f.h, m.h, name)); err != nil {
			return fmt.Errorf("kernel %q: %w", name, err)
		}
		return nil
	})
	if err != nil {
		return Function{}, err
	}
	return f, nil
}

// Unload unloads the module (cuModuleUnload); its Functions must not be
// launched after. Modules not unloaded go with the context.
func (m *Module) Unload() error {
	return m.ctx.do(func(api *driverAPI) error {
		if api.cuModuleUnload == nil {
			return nil
		}
		return m.ctx.drv.check("cuModuleUnload", api.cuModuleUnload(m.h))
	})
}
