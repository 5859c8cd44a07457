package shmtransport

import (
	"fmt"
	"os"
	"testing"
)

// envChild selects, in a re-executed test binary, which child role to play instead of
// running the tests. Child roles register themselves in children.
const envChild = "SHMTRANSPORT_TEST_CHILD"

var children = map[string]func() error{}

func TestMain(m *testing.M) {
	if role := os.Getenv(envChild); role != "" {
		f, ok := children[role]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown child role %q\n", role)
			os.Exit(2)
		}
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "child %s: %v\n", role, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}
