package cuda

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorFormat(t *testing.T) {
	e := &Error{Call: "cuMemAlloc_v2", Code: 2, Name: "CUDA_ERROR_OUT_OF_MEMORY"}
	if got := e.Error(); got != "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2)" {
		t.Fatalf("got %q", got)
	}
	if !IsOutOfMemory(fmt.Errorf("wrapped: %w", e)) {
		t.Fatal("IsOutOfMemory false for a wrapped CUDA_ERROR_OUT_OF_MEMORY")
	}
}

func TestCublasError(t *testing.T) {
	if err := cublasError("cublasSgemm_v2", 0); err != nil {
		t.Fatalf("success gave %v", err)
	}
	for code, name := range map[int32]string{
		1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED", 7: "CUBLAS_STATUS_INVALID_VALUE",
		8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR", 13: "CUBLAS_STATUS_EXECUTION_FAILED",
		14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED", 16: "CUBLAS_STATUS_LICENSE_ERROR",
		99: "CUBLAS_STATUS_UNKNOWN",
	} {
		err := cublasError("cublasSgemm_v2", code)
		var e *Error
		if !errors.As(err, &e) || e.Name != name || e.Code != int(code) {
			t.Errorf("status %d: %v, want %s", code, err, name)
		}
	}
	if got := cublasError("cublasCreate_v2", 3).Error(); got != "cublasCreate_v2: CUBLAS_STATUS_ALLOC_FAILED (3)" {
		t.Errorf("got %q", got)
	}
	if !IsOutOfMemory(cublasError("cublasCreate_v2", 3)) || IsOutOfMemory(cublasError("cublasCreate_v2", 2)) {
		t.Error("IsOutOfMemory wrong for cuBLAS statuses")
	}
}

func TestErrorNameFallback(t *testing.T) {
	d := &Driver{} // no cuGetErrorName bound
	err := d.check("cuInit", 100)
	if got := err.Error(); got != "cuInit: CUDA_ERROR_100 (100)" {
		t.Fatalf("got %q", got)
	}
	if d.check("cuInit", 0) != nil {
		t.Fatal("success gave an error")
	}
}
