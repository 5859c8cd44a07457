package launcher

import (
	"bufio"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// handshakeTimeout bounds the authentication exchange on a new agent connection.
const handshakeTimeout = 10 * time.Second

// Handshake (client = a node > 0, server = node 0):
//
//	client → hello:     magic, version, client nonce Nc
//	server → challenge: server nonce Ns, proof HMAC(token, "server proof" | Nc | Ns)
//	client              checks the proof in constant time (is this node 0 of *our* job?)
//	client → join:      the first tagged frame; its tag under the session key
//	                    K = HMAC(token, "session key" | Nc | Ns) proves the client knows the token
//	server → welcome or reject (tagged)
//
// Fresh nonces on both sides make every session key new, so nothing recorded from one
// connection helps on another. On a bad tag the server answers authFailed (untagged) and
// hangs up, so a node with the wrong token learns why instead of timing out.

func deriveKey(token, label string, cn, sn []byte) []byte {
	h := hmac.New(sha256.New, []byte(token))
	h.Write([]byte("gorun-agent-v1 " + label))
	h.Write(cn)
	h.Write(sn)
	return h.Sum(nil)
}

// ErrTokenMismatch means the other node's agent does not hold the same job token.
var ErrTokenMismatch = errors.New("the nodes' job tokens differ (give every node the same --token-file)")

// agentConn is an authenticated agent connection with a writer and a reader goroutine.
// Incoming messages (other than pings) arrive on in; in is closed when the connection ends,
// after which err says why.
type agentConn struct {
	c    net.Conn
	peer string
	in   chan *message
	out  chan *message // nil message: flush and close

	hbInterval, hbTimeout time.Duration

	mu       sync.Mutex
	err      error
	closed   chan struct{}
	once     sync.Once
	writerGo chan struct{} // closed when the writer has exited
}

// clientHandshake authenticates to node 0 and sends join; it returns the session MAC states
// and node 0's answer (welcome or reject).
// Bytes that follow the answer stay in br, which the connection's reader must go on using.
func clientHandshake(c net.Conn, br *bufio.Reader, token string, join *message) (rmac, wmac *macState, answer *message, err error) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})

	hello := &message{typ: msgHello, version: agentVersion}
	if _, err := rand.Read(hello.nonce[:]); err != nil {
		return nil, nil, nil, err
	}
	if _, err := c.Write(appendFrame(nil, hello, nil)); err != nil {
		return nil, nil, nil, err
	}
	ch, err := readFrame(br, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading node 0's challenge: %w", err)
	}
	switch ch.typ {
	case msgChallenge:
	case msgAuthFailed:
		return nil, nil, nil, fmt.Errorf("node 0 refused us: %s", printable(ch.text))
	default:
		return nil, nil, nil, badf("expected a challenge, got %s", ch.typ)
	}
	want := deriveKey(token, "server proof", hello.nonce[:], ch.nonce[:])
	if !hmac.Equal(want, ch.proof[:]) {
		return nil, nil, nil, fmt.Errorf("node 0's agent could not prove it holds our token: %w", ErrTokenMismatch)
	}
	key := deriveKey(token, "session key", hello.nonce[:], ch.nonce[:])
	wmac, rmac = &macState{key: key, dir: 'c'}, &macState{key: key, dir: 's'}
	if _, err := c.Write(appendFrame(nil, join, wmac)); err != nil {
		return nil, nil, nil, err
	}
	// The answer is tagged unless node 0 rejected our tag, in which case it sends an
	// untagged authFailed: peek at the type first.
	t, err := br.Peek(1)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("waiting for node 0's answer: %w", err)
	}
	if msgType(t[0]) == msgAuthFailed {
		m, err := readFrame(br, nil)
		if err != nil {
			return nil, nil, nil, err
		}
		return nil, nil, nil, fmt.Errorf("node 0 refused us: %s: %w", printable(m.text), ErrTokenMismatch)
	}
	answer, err = readFrame(br, rmac)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading node 0's answer: %w", err)
	}
	if answer.typ != msgWelcome && answer.typ != msgReject {
		return nil, nil, nil, badf("expected welcome or reject, got %s", answer.typ)
	}
	return rmac, wmac, answer, nil
}

// serverHandshake authenticates a client; it returns the MAC states and the client's join.
func serverHandshake(c net.Conn, token string) (rmac, wmac *macState, join *message, err error) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	defer c.SetDeadline(time.Time{})
	// Unbuffered reads: after the join frame the connection's reader goroutine takes over,
	// and a client sends nothing more before our answer.
	hello, err := readFrame(c, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading hello: %w", err)
	}
	if hello.typ != msgHello {
		return nil, nil, nil, badf("expected hello, got %s", hello.typ)
	}
	if hello.version != agentVersion {
		reason := fmt.Sprintf("agent protocol version %d, node 0 speaks %d: use the same gorun on every node", hello.version, agentVersion)
		_, _ = c.Write(appendFrame(nil, &message{typ: msgAuthFailed, text: reason}, nil))
		return nil, nil, nil, errors.New(reason)
	}
	ch := &message{typ: msgChallenge}
	if _, err := rand.Read(ch.nonce[:]); err != nil {
		return nil, nil, nil, err
	}
	copy(ch.proof[:], deriveKey(token, "server proof", hello.nonce[:], ch.nonce[:]))
	if _, err := c.Write(appendFrame(nil, ch, nil)); err != nil {
		return nil, nil, nil, err
	}
	key := deriveKey(token, "session key", hello.nonce[:], ch.nonce[:])
	rmac, wmac = &macState{key: key, dir: 'c'}, &macState{key: key, dir: 's'}
	join, err = readFrame(c, rmac)
	if errors.Is(err, errBadTag) {
		_, _ = c.Write(appendFrame(nil, &message{typ: msgAuthFailed, text: "its token differs from node 0's"}, nil))
		return nil, nil, nil, fmt.Errorf("join from %s: %w", c.RemoteAddr(), ErrTokenMismatch)
	}
	if err != nil {
		return nil, nil, nil, fmt.Errorf("reading join: %w", err)
	}
	if join.typ != msgJoin {
		return nil, nil, nil, badf("expected join, got %s", join.typ)
	}
	return rmac, wmac, join, nil
}

// newAgentConn starts the reader (on br, which reads c) and writer of an authenticated
// connection.
func newAgentConn(c net.Conn, br *bufio.Reader, rmac, wmac *macState, hbInterval, hbTimeout time.Duration) *agentConn {
	a := &agentConn{
		c: c, peer: c.RemoteAddr().String(),
		in: make(chan *message, 16), out: make(chan *message, 64),
		hbInterval: hbInterval, hbTimeout: hbTimeout,
		closed: make(chan struct{}), writerGo: make(chan struct{}),
	}
	go a.readLoop(br, rmac)
	go a.writeLoop(wmac)
	return a
}

func (a *agentConn) fail(err error) {
	a.mu.Lock()
	if a.err == nil {
		a.err = err
	}
	a.mu.Unlock()
	a.once.Do(func() {
		close(a.closed)
		a.c.Close()
	})
}

// Err is why the connection ended (nil while it is up).
func (a *agentConn) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

func (a *agentConn) readLoop(br *bufio.Reader, mac *macState) {
	defer close(a.in)
	for {
		_ = a.c.SetReadDeadline(time.Now().Add(a.hbTimeout))
		m, err := readFrame(br, mac)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				err = fmt.Errorf("no message from %s for %v: %w", a.peer, a.hbTimeout, err)
			}
			a.fail(err)
			return
		}
		if m.typ == msgPing {
			continue
		}
		select {
		case a.in <- m:
		case <-a.closed:
			return
		}
	}
}

func (a *agentConn) writeLoop(mac *macState) {
	defer close(a.writerGo)
	tick := time.NewTicker(a.hbInterval)
	defer tick.Stop()
	var buf []byte
	write := func(m *message) bool {
		buf = appendFrame(buf[:0], m, mac)
		_ = a.c.SetWriteDeadline(time.Now().Add(a.hbTimeout))
		if _, err := a.c.Write(buf); err != nil {
			a.fail(fmt.Errorf("writing to %s: %w", a.peer, err))
			return false
		}
		return true
	}
	for {
		select {
		case m := <-a.out:
			if m == nil { // flush-and-close marker
				a.fail(errClosedByUs)
				return
			}
			if !write(m) {
				return
			}
		case <-tick.C:
			if !write(&message{typ: msgPing}) {
				return
			}
		case <-a.closed:
			return
		}
	}
}

var errClosedByUs = errors.New("connection closed")

// send queues m. It never blocks: a peer so slow that 64 messages pile up is treated as lost.
func (a *agentConn) send(m *message) {
	select {
	case <-a.closed:
	case a.out <- m:
	default:
		a.fail(fmt.Errorf("%s is not reading its messages", a.peer))
	}
}

// closeAfterFlush sends what is queued, then closes, waiting at most timeout.
func (a *agentConn) closeAfterFlush(timeout time.Duration) {
	select {
	case a.out <- nil:
	default:
	}
	select {
	case <-a.writerGo:
	case <-time.After(timeout):
	}
	a.fail(errClosedByUs)
}

// close ends the connection at once.
func (a *agentConn) close() { a.fail(errClosedByUs) }
