package multihost

import (
	"strings"
	"testing"
)

func TestParseRows(t *testing.T) {
	in := `gorun: node 0 of 4: 1 rank(s) here
[0] {"op":"allreduce","ranks":4,"bytes":67108864,"dtype":"fp32","time_us":1000,"busbw_gbs":0.1}
[1] {"op":"allreduce","ranks":4,"bytes":1,"dtype":"fp32"}
[0] not json
[0] {"op":"ring-exchange","ranks":4,"bytes":67108864,"dtype":"raw","link_gbs":0.12}
`
	rows, err := parseRows(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Bytes != 64<<20 || rows[0].TimeUS != 1000 || rows[1].Op != "ring-exchange" || rows[1].LinkGBs != 0.12 {
		t.Fatalf("got %+v", rows)
	}
	if r, ok := pick(rows, "ring-exchange", "raw"); !ok || r.LinkGBs != 0.12 {
		t.Fatalf("pick: %+v %v", r, ok)
	}
	if _, err := parseRows(strings.NewReader("[0] {\"op\":\n")); err == nil {
		t.Fatal("a broken JSON line from rank 0 was accepted")
	}
}

func TestLinkRateBytes(t *testing.T) {
	for _, c := range []struct {
		in   string
		want float64
	}{{"1gbit", 125e6}, {"100mbit", 12.5e6}, {"2.5Gbit", 312.5e6}, {"800kbit", 1e5}} {
		if got, err := linkRateBytes(c.in); err != nil || got != c.want {
			t.Errorf("linkRateBytes(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "fast", "-1gbit", "1gb"} {
		if _, err := linkRateBytes(bad); err == nil {
			t.Errorf("linkRateBytes(%q) accepted", bad)
		}
	}
}
