package netcluster

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// TestHelperProcess is not a test: TestHostsReachEachOther re-executes the test binary inside a
// namespace with NETCLUSTER_HELPER set, to serve or ask over TCP there.
func TestHelperProcess(t *testing.T) {
	addr := os.Getenv("NETCLUSTER_ADDR")
	switch os.Getenv("NETCLUSTER_HELPER") {
	case "serve":
		l, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("listening")
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(1)
			}
			line, _ := bufio.NewReader(c).ReadString('\n')
			fmt.Fprintf(c, "echo:%s", line)
			c.Close()
		}
	case "ask":
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		c.SetDeadline(time.Now().Add(2 * time.Second))
		fmt.Fprintln(c, "hello from host 0")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Print(line)
		os.Exit(0)
	}
}
