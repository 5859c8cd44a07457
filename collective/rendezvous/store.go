package rendezvous

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// kvStore is the server's in-memory map. Waiters sleep on changed, a channel that is closed
// and replaced on every write, so one write wakes every waiter without per-key bookkeeping.
type kvStore struct {
	mu      sync.Mutex
	m       map[string][]byte
	changed chan struct{}
}

func newKVStore() *kvStore {
	return &kvStore{m: make(map[string][]byte), changed: make(chan struct{})}
}

func (s *kvStore) set(key string, value []byte) {
	if value == nil {
		value = []byte{} // nil means "absent" on the wire
	}
	s.mu.Lock()
	s.m[key] = value
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// add treats the value of key as a decimal integer (absent = 0), adds delta and returns the
// sum. Decimal keeps the value readable through Get, as PyTorch's store does.
func (s *kvStore) add(key string, delta int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cur int64
	if v, ok := s.m[key]; ok {
		var err error
		if cur, err = strconv.ParseInt(string(v), 10, 64); err != nil {
			return 0, fmt.Errorf("key %q holds %q, not an integer", key, v)
		}
	}
	cur += delta
	s.m[key] = []byte(strconv.FormatInt(cur, 10))
	close(s.changed)
	s.changed = make(chan struct{})
	return cur, nil
}

// snapshot returns the values of keys (nil where absent), how many are absent, and the channel
// that will be closed on the next write.
func (s *kvStore) snapshot(keys []string) ([][]byte, int, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	vals := make([][]byte, len(keys))
	missing := 0
	for i, k := range keys {
		v, ok := s.m[k]
		if !ok {
			missing++
			continue
		}
		vals[i] = v
	}
	return vals, missing, s.changed
}

// wait blocks until every key is present, wait elapses (waitForever: never) or ctx ends, and
// returns the values seen last (nil where absent). Values are never mutated in place, so
// handing out the stored slices is safe.
func (s *kvStore) wait(ctx context.Context, keys []string, waitMS uint32) [][]byte {
	var timeout <-chan time.Time
	if waitMS != waitForever {
		t := time.NewTimer(time.Duration(waitMS) * time.Millisecond)
		defer t.Stop()
		timeout = t.C
	}
	for {
		vals, missing, changed := s.snapshot(keys)
		if missing == 0 {
			return vals
		}
		select {
		case <-changed:
		case <-timeout:
			vals, _, _ = s.snapshot(keys)
			return vals
		case <-ctx.Done():
			return vals
		}
	}
}
