// Command stranger plays a host on the job's network that does not hold the job token. It
// throws random datagrams at the rendezvous store and at ranks' data ports, then tries each
// service properly and with garbage:
//
//   - the node agent (TCP master port): connect and send random bytes;
//   - the rendezvous store (UDP master port): a QUIC connection with the store's ALPN that
//     sends random bytes as its authentication, and rendezvous.Dial with a wrong token;
//   - each rank's data port: a QUIC handshake with the ring's ALPN and a certificate no rank
//     published, and one without a certificate, then random bytes on a stream if a
//     handshake were ever accepted.
//
// It prints one line per attempt, "stranger: WHAT: refused: ERR" or "stranger: WHAT: ACCEPTED
// ...", and exits 1 if anything accepted it.
package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
)

func main() {
	store := flag.String("store", "", "rendezvous store, UDP host:port (MASTER_ADDR:MASTER_PORT)")
	agent := flag.String("agent", "", "node 0's agent, TCP host:port")
	data := flag.String("data", "", "comma-separated UDP host:port of ranks' data endpoints")
	flag.Parse()
	accepted := false
	report := func(what string, ok bool, detail string) {
		if ok {
			accepted = true
			fmt.Printf("stranger: %s: ACCEPTED %s\n", what, detail)
		} else {
			fmt.Printf("stranger: %s: refused: %s\n", what, detail)
		}
	}
	targets := []string{*store}
	if *data != "" {
		targets = append(targets, strings.Split(*data, ",")...)
	}
	for _, t := range targets {
		n, err := sprayUDP(t, 50)
		fmt.Printf("stranger: %d random datagrams to %s (err %v)\n", n, t, err)
	}
	if *agent != "" {
		ok, detail := garbageTCP(*agent)
		report("agent "+*agent+" garbage", ok, detail)
	}
	if *store != "" {
		ok, detail := garbageQUIC(*store, rendezvous.ALPN, nil)
		report("store "+*store+" garbage", ok, detail)
		ok, detail = wrongToken(*store)
		report("store "+*store+" wrong token", ok, detail)
	}
	if *data != "" {
		cert, err := rendezvous.EphemeralCertificate()
		if err != nil {
			fmt.Fprintln(os.Stderr, "stranger:", err)
			os.Exit(2)
		}
		for _, d := range strings.Split(*data, ",") {
			ok, detail := garbageQUIC(d, "ringtrain-link/1", &cert)
			report("data "+d+" handshake", ok, detail)
			ok, detail = garbageQUIC(d, "ringtrain-link/1", nil)
			report("data "+d+" handshake without certificate", ok, detail)
		}
	}
	if accepted {
		os.Exit(1)
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// sprayUDP sends n random datagrams (1 to 1400 bytes) to addr.
func sprayUDP(addr string, n int) (int, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	sent := 0
	for i := 0; i < n; i++ {
		size := 1 + int(random(2)[0])*5
		if _, err := c.Write(random(size)); err != nil {
			return sent, err
		}
		sent++
	}
	return sent, nil
}

// garbageTCP connects, sends random bytes and waits for the server to hang up. Any answer
// that is not a hang-up (or a refusal frame followed by one) within the deadline counts as
// accepted.
func garbageTCP(addr string) (bool, string) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, "could not connect: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(random(512)); err != nil {
		return false, "write failed: " + err.Error()
	}
	got, err := io.ReadAll(c)
	if err == nil || errors.Is(err, io.EOF) || strings.Contains(err.Error(), "reset") {
		return false, fmt.Sprintf("connection closed by the server after %d bytes of answer", len(got))
	}
	return true, fmt.Sprintf("connection still open after 20s (%d bytes of answer): %v", len(got), err)
}

// garbageQUIC opens a QUIC connection with alpn (presenting cert, if any), sends random bytes
// on a stream and waits for the server to close it.
func garbageQUIC(addr, alpn string, cert *tls.Certificate) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	tc := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{alpn}, MinVersion: tls.VersionTLS13, ServerName: "ringtrain"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	conn, err := quic.DialAddr(ctx, addr, tc, &quic.Config{HandshakeIdleTimeout: 5 * time.Second, MaxIdleTimeout: 10 * time.Second})
	if err != nil {
		return false, "handshake failed: " + err.Error()
	}
	defer conn.CloseWithError(0, "")
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return false, "no stream: " + err.Error()
	}
	if _, err := str.Write(random(300)); err != nil {
		return false, "write failed: " + err.Error()
	}
	str.Close()
	got, err := io.ReadAll(str)
	if err != nil {
		return false, fmt.Sprintf("closed by the server after %d bytes of answer: %v", len(got), err)
	}
	select {
	case <-conn.Context().Done():
		return false, fmt.Sprintf("closed by the server after %d bytes of answer: %v", len(got), context.Cause(conn.Context()))
	case <-ctx.Done():
		return true, fmt.Sprintf("connection still open after 20s (%d bytes of answer)", len(got))
	}
}

// wrongToken tries the real client with a token that is not the job's.
func wrongToken(addr string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := rendezvous.Dial(ctx, addr, rendezvous.ClientConfig{Token: "not-the-job-token"})
	if err != nil {
		return false, err.Error()
	}
	c.Close()
	return true, "rendezvous.Dial succeeded with a wrong token"
}
