package cuda

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a failed CUDA driver or cuBLAS call.
type Error struct {
	Call string // the C function, e.g. "cuMemAlloc_v2"
	Code int    // the CUresult or cublasStatus_t
	Name string // e.g. "CUDA_ERROR_OUT_OF_MEMORY"
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, e.Code)
}

// Driver error codes callers may want to test for (cuda.h CUresult).
const (
	ErrorInvalidValue      = 1
	ErrorOutOfMemory       = 2
	ErrorNotInitialized    = 3
	ErrorNoDevice          = 100
	ErrorInvalidDevice     = 101
	ErrorInvalidPTX        = 218
	ErrorNotFound          = 500
	ErrorLaunchOutOfRes    = 701
	ErrorIllegalAddress    = 700
	ErrorLaunchFailed      = 719
	ErrorUnsupportedPTXVer = 222
)

// IsOutOfMemory reports whether err is (or wraps) CUDA_ERROR_OUT_OF_MEMORY
// or CUBLAS_STATUS_ALLOC_FAILED.
func IsOutOfMemory(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	if strings.HasPrefix(e.Call, "cublas") {
		return e.Code == 3
	}
	return e.Code == ErrorOutOfMemory
}

// cublasStatusNames maps cublasStatus_t values (cublas_api.h) to names.
var cublasStatusNames = map[int]string{
	0:  "CUBLAS_STATUS_SUCCESS",
	1:  "CUBLAS_STATUS_NOT_INITIALIZED",
	3:  "CUBLAS_STATUS_ALLOC_FAILED",
	7:  "CUBLAS_STATUS_INVALID_VALUE",
	8:  "CUBLAS_STATUS_ARCH_MISMATCH",
	11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED",
	14: "CUBLAS_STATUS_INTERNAL_ERROR",
	15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// cublasError turns a cublasStatus_t into an *Error, nil on success.
func cublasError(call string, status int32) error {
	if status == 0 {
		return nil
	}
	name, ok := cublasStatusNames[int(status)]
	if !ok {
		name = "CUBLAS_STATUS_UNKNOWN"
	}
	return &Error{Call: call, Code: int(status), Name: name}
}

// argError is a Go-side argument check that failed before any C call.
func argError(call, format string, args ...any) error {
	return fmt.Errorf("cuda: %s: %s", call, fmt.Sprintf(format, args...))
}

// errClosed is returned by methods of a closed (or zero) Context.
var errClosed = errors.New("cuda: context is closed")
