package pipeline

import (
	"math"
	"reflect"
	"testing"
	"time"
)

// FuzzStatsWire feeds arbitrary bytes, as a peer's Gather message could arrive, to the
// decoder: it must not panic, and the encoding must round-trip every StepStats exactly.
func FuzzStatsWire(f *testing.F) {
	f.Add([]byte{}, int64(0), int64(0), 0.0)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 0, 0, 0x80, 0xff}, int64(123456789), int64(-5), 2.5)
	f.Add(make([]byte, 8*statFields), int64(math.MaxInt64), int64(math.MinInt64), math.Inf(1))
	f.Fuzz(func(t *testing.T, raw []byte, a, b int64, loss float64) {
		// Decoding arbitrary values (NaN, negative, huge, any length) must not panic.
		if _, err := decodeStats(raw); err != nil && len(raw) == 8*statFields {
			t.Fatalf("a message of the right length was refused: %v", err)
		}

		// Round trip of representable stats.
		s := StepStats{Step: int(a % (1 << 40)), Steps: int(b % (1 << 40)), Rank: 3, Stage: 1, Replica: 2,
			Wall: time.Duration(a), Busy: time.Duration(b), RecvWait: time.Duration(a / 3), Sync: time.Duration(b / 7),
			Optim: 5, PeakLive: 4, PeakLiveBytes: a, PeakSendQueue: 2, Loss: loss, Correct: 17, Samples: 64,
			ForwardBusy: time.Duration(a / 2), BackwardBusy: time.Duration(b / 2), MicroBatches: 8}
		got, err := decodeStats(encodeStats(s))
		if err != nil {
			t.Fatal(err)
		}
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
