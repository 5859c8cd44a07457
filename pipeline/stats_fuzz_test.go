package pipeline

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"
	"time"
)

// FuzzStatsWire feeds arbitrary float32 blocks, as a peer's Gather block or
// fingerprint could arrive, to the decoders: they must not panic, and the
// encoding must round-trip every StepStats exactly.
func FuzzStatsWire(f *testing.F) {
	f.Add([]byte{}, int64(0), int64(0), 0.0)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0x80, 0xff}, int64(123456789), int64(-5), 2.5)
	f.Add(make([]byte, 4*4*statFields), int64(math.MaxInt64), int64(math.MinInt64), math.Inf(1))
	f.Fuzz(func(t *testing.T, raw []byte, a, b int64, loss float64) {
		// Decoding arbitrary values (NaN, negative, huge) must not panic.
		blk := make([]float32, 4*statFields)
		for i := 0; i+4 <= len(raw) && i/4 < len(blk); i += 4 {
			blk[i/4] = math.Float32frombits(binary.LittleEndian.Uint32(raw[i:]))
		}
		fs := make([]float64, statFields)
		for i := range fs {
			fs[i] = math.Float64frombits(getU64(blk[4*i:]))
		}
		_ = statsFromFields(fs)

		// Round trip of representable stats.
		s := StepStats{Step: int(a % (1 << 40)), Steps: int(b % (1 << 40)), Rank: 3, Stage: 1, Replica: 2,
			Wall: time.Duration(a), Busy: time.Duration(b), RecvWait: time.Duration(a / 3), Sync: time.Duration(b / 7),
			Optim: 5, PeakLive: 4, PeakLiveBytes: a, PeakSendQueue: 2, Loss: loss, Correct: 17, Samples: 64,
			ForwardBusy: time.Duration(a / 2), BackwardBusy: time.Duration(b / 2), MicroBatches: 8}
		enc := make([]float32, 4*statFields)
		for i, v := range s.fields() {
			putU64(enc[4*i:], math.Float64bits(v))
		}
		for _, v := range enc {
			if v != float32(int32(v)) || v < 0 || v > 0xffff {
				t.Fatalf("encoded value %v is not an integer in [0, 65535]", v)
			}
		}
		dec := make([]float64, statFields)
		for i := range dec {
			dec[i] = math.Float64frombits(getU64(enc[4*i:]))
		}
		got := statsFromFields(dec)
		want := statsFromFields(s.fields()) // the float64 view loses int64 precision the same way
		if math.IsNaN(loss) {
			if !math.IsNaN(got.Loss) {
				t.Fatalf("NaN loss decoded as %v", got.Loss)
			}
			got.Loss, want.Loss = 0, 0
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip: got %+v, want %+v", got, want)
		}
	})
}

// TestU64RoundTrip checks the 4×16-bit float32 encoding of 64-bit words on
// edge values.
func TestU64RoundTrip(t *testing.T) {
	for _, v := range []uint64{0, 1, 0xffff, 0x10000, math.MaxUint64, 0x8000000000000000, math.Float64bits(math.NaN()), math.Float64bits(-0.0)} {
		b := make([]float32, 4)
		putU64(b, v)
		if got := getU64(b); got != v {
			t.Errorf("%#x came back as %#x", v, got)
		}
	}
}
