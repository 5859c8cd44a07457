package launcher

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleMessages() []*message {
	hello := &message{typ: msgHello, version: agentVersion}
	copy(hello.nonce[:], bytes.Repeat([]byte{7}, nonceSize))
	ch := &message{typ: msgChallenge}
	copy(ch.nonce[:], bytes.Repeat([]byte{1}, nonceSize))
	copy(ch.proof[:], bytes.Repeat([]byte{2}, tagSize))
	return []*message{
		hello, ch,
		{typ: msgAuthFailed, text: "token differs"},
		{typ: msgJoin, nodeRank: 3, nnodes: 4, nproc: 8, text: "gpu07"},
		{typ: msgWelcome},
		{typ: msgReject, text: "bad --nproc"},
		{typ: msgReady},
		{typ: msgStart, attempt: 2, text: "run-1"},
		{typ: msgFailed, attempt: 1, fatal: true, text: "rank 3 exit code 7\n[3] boom"},
		{typ: msgExited, attempt: 5, ok: true},
		{typ: msgStop, attempt: 9, text: "node 1 failed"},
		{typ: msgFinish, code: 1, text: "job failed"},
		{typ: msgPing},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	key := []byte("k")
	w := &macState{key: key, dir: 'c'}
	r := &macState{key: key, dir: 'c'}
	var stream []byte
	msgs := sampleMessages()
	for _, m := range msgs {
		stream = appendFrame(stream, m, w)
	}
	br := bytes.NewReader(stream)
	for _, want := range msgs {
		got, err := readFrame(br, r)
		if err != nil {
			t.Fatalf("%s: %v", want.typ, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", want.typ, got, want)
		}
	}
	if _, err := readFrame(br, r); err == nil {
		t.Error("read past the end")
	}
}

// TestFrameAuthentication: a changed byte, a replayed or reordered frame, a frame reflected
// back in the other direction, or a different key all fail the tag check.
func TestFrameAuthentication(t *testing.T) {
	key := []byte("session")
	mk := func(dir byte) *macState { return &macState{key: key, dir: dir} }
	one := appendFrame(nil, &message{typ: msgStart, attempt: 1, text: "r"}, mk('s'))
	w := mk('s')
	appendFrame(nil, &message{typ: msgStop, attempt: 1}, w)        // seq 0, dropped
	two := appendFrame(nil, &message{typ: msgStop, attempt: 1}, w) // seq 1, read as if first

	tampered := append([]byte(nil), one...)
	tampered[7] ^= 1
	cases := map[string]struct {
		frames []byte
		mac    *macState
	}{
		"tampered":  {tampered, mk('s')},
		"reordered": {two, mk('s')},
		"reflected": {one, mk('c')},
		"wrong key": {one, &macState{key: []byte("other"), dir: 's'}},
		"replayed":  {append(append([]byte(nil), one...), one...), mk('s')},
	}
	for name, tc := range cases {
		br := bytes.NewReader(tc.frames)
		var err error
		for err == nil {
			_, err = readFrame(br, tc.mac)
		}
		if !errors.Is(err, errBadTag) {
			t.Errorf("%s: got %v, want errBadTag", name, err)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good := (&message{typ: msgFailed, attempt: 1, text: "x"}).encode()
	cases := map[string]struct {
		typ     msgType
		payload []byte
	}{
		"unknown type":   {99, nil},
		"short":          {msgJoin, []byte{0, 0, 0, 1}},
		"trailing bytes": {msgWelcome, []byte{0}},
		"bad bool":       {msgExited, []byte{0, 0, 0, 1, 2}},
		"bad utf8":       {msgReject, []byte{0, 2, 0xff, 0xfe}},
		"text too long":  {msgReject, []byte{0xff, 0xff}},
		"bad magic":      {msgHello, make([]byte, 4+2+nonceSize)},
		"cut text":       {msgFailed, good[:len(good)-1]},
	}
	for name, tc := range cases {
		if _, err := decodeMessage(tc.typ, tc.payload); !errors.Is(err, errBadMessage) {
			t.Errorf("%s: got %v, want errBadMessage", name, err)
		}
	}
	huge := []byte{byte(msgReject), 0xff, 0xff, 0xff, 0xff}
	if _, err := readFrame(bytes.NewReader(huge), nil); !errors.Is(err, errBadMessage) {
		t.Errorf("a 4 GiB length was not refused: %v", err)
	}
}

func TestAppendTextCutsOnRuneBoundary(t *testing.T) {
	s := strings.Repeat("é", maxText) // 2 bytes each
	m, err := decodeMessage(msgReject, (&message{typ: msgReject, text: s}).encode())
	if err != nil || len(m.text) > maxText || !strings.HasPrefix(s, m.text) {
		t.Errorf("long text: %v, %d bytes", err, len(m.text))
	}
}

func TestPrintable(t *testing.T) {
	if got := printable("ok\tline\n\x1b[31mred\x00\u009b"); got != "ok\tline\n?[31mred??" {
		t.Errorf("printable = %q", got)
	}
}

// handshakePair runs a client and a server handshake over a real TCP connection.
func handshakePair(t *testing.T, clientTok, serverTok string) (cErr, sErr error, answer *message) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sDone := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			sDone <- err
			return
		}
		defer c.Close()
		_, wmac, join, err := serverHandshake(c, serverTok)
		if err == nil {
			if join.nodeRank != 1 || join.nproc != 4 {
				err = errors.New("join fields lost")
			} else {
				_, err = c.Write(appendFrame(nil, &message{typ: msgWelcome}, wmac))
			}
		}
		sDone <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _, answer, cErr = clientHandshake(c, bufio.NewReader(c), clientTok, &message{typ: msgJoin, nodeRank: 1, nnodes: 2, nproc: 4, text: "h"})
	c.Close() // as dialNode0 does: the server then sees the end at once
	select {
	case sErr = <-sDone:
	case <-time.After(15 * time.Second):
		t.Fatal("server handshake hung")
	}
	return cErr, sErr, answer
}

func TestHandshake(t *testing.T) {
	cErr, sErr, answer := handshakePair(t, "same-secret", "same-secret")
	if cErr != nil || sErr != nil || answer == nil || answer.typ != msgWelcome {
		t.Fatalf("same token: client %v, server %v, answer %+v", cErr, sErr, answer)
	}
	cErr, sErr, _ = handshakePair(t, "client-secret", "server-secret")
	if !errors.Is(cErr, ErrTokenMismatch) {
		t.Errorf("different tokens: client got %v, want ErrTokenMismatch", cErr)
	}
	if sErr == nil {
		t.Errorf("different tokens: server accepted the client")
	}
}

// TestServerRefusesJunk: a peer that is not a gorun agent gets a prompt error, not a hang.
func TestServerRefusesJunk(t *testing.T) {
	for _, junk := range [][]byte{
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		appendFrame(nil, &message{typ: msgJoin, nodeRank: 1}, nil), // join before hello
		{byte(msgHello), 0, 0, 0, 6, 'G', 'R', 'U', 'N', 0, 9},     // short hello
	} {
		a, b := net.Pipe()
		go func() { a.Write(junk); time.Sleep(100 * time.Millisecond); a.Close() }()
		done := make(chan error, 1)
		go func() { _, _, _, err := serverHandshake(b, "tok"); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("junk %q accepted", junk)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("server hung on junk %q", junk)
		}
		b.Close()
	}
}

// FuzzReadFrame feeds arbitrary bytes to the frame reader, with and without a session key:
// it must never panic, and whatever it accepts must re-encode to the same bytes.
func FuzzReadFrame(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(appendFrame(nil, m, nil), false)
		f.Add(appendFrame(nil, m, &macState{key: []byte("fuzz"), dir: 's'}), true)
	}
	f.Add([]byte{byte(msgReject), 0xff, 0xff, 0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, data []byte, keyed bool) {
		var mac *macState
		if keyed {
			mac = &macState{key: []byte("fuzz"), dir: 's'}
		}
		br := bytes.NewReader(data)
		for i := 0; i < 64; i++ {
			start := len(data) - br.Len()
			var seq uint64
			if mac != nil {
				seq = mac.seq
			}
			m, err := readFrame(br, mac)
			if err != nil {
				return
			}
			consumed := data[start : len(data)-br.Len()]
			var again []byte
			if mac != nil {
				again = appendFrame(nil, m, &macState{key: mac.key, dir: mac.dir, seq: seq})
			} else {
				again = appendFrame(nil, m, nil)
			}
			if !bytes.Equal(again, consumed) {
				t.Fatalf("accepted %x but it re-encodes as %x", consumed, again)
			}
		}
	})
}

// FuzzDecodeMessage checks the payload decoder alone on every type.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(uint8(m.typ), m.encode())
	}
	f.Fuzz(func(t *testing.T, typ uint8, payload []byte) {
		m, err := decodeMessage(msgType(typ), payload)
		if err != nil {
			if !errors.Is(err, errBadMessage) {
				t.Fatalf("error %v does not wrap errBadMessage", err)
			}
			return
		}
		if !bytes.Equal(m.encode(), payload) {
			t.Fatalf("type %d: accepted %x, re-encodes as %x", typ, payload, m.encode())
		}
	})
}
