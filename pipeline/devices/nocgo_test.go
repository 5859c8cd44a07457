//go:build !cgo

package devices

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Without cgo, Discover reports no GPU with the reason "built without cgo",
// even with CUDA_VISIBLE_DEVICES unset.
func TestDiscoverWithoutCgo(t *testing.T) {
	inv, err := Discover(context.Background(), Options{LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.GPUs) != 0 || !errors.Is(inv.Err, ErrNoCgo) || !strings.HasPrefix(inv.Reason, "built without cgo") {
		t.Fatalf("got %+v", inv)
	}
	var b strings.Builder
	inv.WriteTable(&b)
	if !strings.HasPrefix(b.String(), "no GPUs: built without cgo") {
		t.Fatalf("table:\n%s", b.String())
	}
}
