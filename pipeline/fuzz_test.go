package pipeline

import (
	"testing"
)

// FuzzSplits feeds arbitrary --split flag values: parsing and validation
// must not panic, and whatever validates must build a plan whose stages
// cover the layers exactly once, in order, none empty.
func FuzzSplits(f *testing.F) {
	for _, s := range []string{"", "3,7", "0", "10", "5,3", "3,3", " 1 , 2 ", "x", "-1", "1,2,3,4,5,6,7,8,9,10"} {
		f.Add(s, 10)
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		if n < 0 || n > 1000 {
			return
		}
		splits, err := ParseSplits(s)
		if err != nil {
			return
		}
		layers := make([]Layer, n)
		for i := range layers {
			layers[i] = Layer{Params: int64(i), Cost: float64(i % 3)}
		}
		p, err := NewPlan(layers, splits)
		if err != nil {
			return
		}
		next := 0
		for i, st := range p.Stages {
			if st.Index != i || st.Start != next || st.End <= st.Start {
				t.Fatalf("%q n=%d: stage %+v", s, n, st)
			}
			next = st.End
		}
		if next != n || len(p.Stages) != len(splits)+1 {
			t.Fatalf("%q n=%d: stages end at %d", s, n, next)
		}
		_ = p.String()
	})
}
