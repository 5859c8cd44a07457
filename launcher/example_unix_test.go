//go:build unix

package launcher

import (
	"context"
	"fmt"
	"os"
)

// ExampleRun runs one rank of a command found in PATH; its output comes back prefixed.
func ExampleRun() {
	err := Run(context.Background(), &Config{
		Target:     "echo",
		Args:       []string{"hello from rank 0"},
		NProc:      1,
		Standalone: true,
		Stdout:     os.Stdout,
	})
	fmt.Println("error:", err)
	// Output:
	// [0] hello from rank 0
	// error: <nil>
}
