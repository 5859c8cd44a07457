// Command relay is the lossy, slow link of the multi-host tests: a UDP relay (quic-go's own
// test proxy) that forwards datagrams from --listen to --to and back, dropping each one with
// probability --loss and holding each one --delay, in both directions. This kernel has no
// netem, so loss and latency come from here. Ranks are steered through it by advertising the
// relay's address instead of their own (mhtrain's MULTIHOST_ADVERTISE).
//
// It prints "relay: ready LISTEN -> TO" once serving and, on SIGTERM or SIGINT, one line of
// counters ("relay: stats forwarded=N dropped=M") before it exits 0.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	quicproxy "github.com/quic-go/quic-go/integrationtests/tools/proxy"
)

func main() {
	listen := flag.String("listen", "", "UDP address to serve (host:port)")
	to := flag.String("to", "", "UDP address to forward to (host:port)")
	loss := flag.Float64("loss", 0, "probability of dropping each datagram, each direction")
	delay := flag.Duration("delay", 0, "delay of each datagram, each direction")
	flag.Parse()
	if err := run(*listen, *to, *loss, *delay); err != nil {
		fmt.Fprintln(os.Stderr, "relay:", err)
		os.Exit(1)
	}
}

func run(listen, to string, loss float64, delay time.Duration) error {
	if loss < 0 || loss >= 1 {
		return fmt.Errorf("--loss %g: want a probability in [0, 1)", loss)
	}
	if delay < 0 {
		return fmt.Errorf("--delay %v: want 0 or more", delay)
	}
	la, err := net.ResolveUDPAddr("udp", listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	ta, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return fmt.Errorf("--to: %w", err)
	}
	conn, err := net.ListenUDP("udp", la)
	if err != nil {
		return err
	}
	var forwarded, dropped atomic.Int64
	p := &quicproxy.Proxy{
		Conn:       conn,
		ServerAddr: ta,
		DropPacket: func(quicproxy.Direction, net.Addr, net.Addr, []byte) bool {
			if rand.Float64() < loss { // math/rand/v2's top-level functions are goroutine-safe
				dropped.Add(1)
				return true
			}
			forwarded.Add(1)
			return false
		},
		DelayPacket: func(quicproxy.Direction, net.Addr, net.Addr, []byte) time.Duration { return delay },
	}
	if err := p.Start(); err != nil {
		return err
	}
	fmt.Printf("relay: ready %s -> %s (loss %g, delay %v)\n", conn.LocalAddr(), ta, loss, delay)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	<-sigs
	fmt.Printf("relay: stats forwarded=%d dropped=%d\n", forwarded.Load(), dropped.Load())
	p.Close()
	return nil
}
