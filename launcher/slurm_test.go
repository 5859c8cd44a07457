package launcher

import (
	"reflect"
	"strings"
	"testing"
)

func TestExpandHostlist(t *testing.T) {
	cases := []struct {
		in   string
		want []string
	}{
		{"node01", []string{"node01"}},
		{"node[01-04,07],gpu3", []string{"node01", "node02", "node03", "node04", "node07", "gpu3"}},
		{"a,b,c", []string{"a", "b", "c"}},
		{"n[8-11]", []string{"n8", "n9", "n10", "n11"}},
		{"n[098-101]", []string{"n098", "n099", "n100", "n101"}},
		{"r[1-2]n[1-2]", []string{"r1n1", "r1n2", "r2n1", "r2n2"}},
		{"rack-[1,3]-gpu", []string{"rack-1-gpu", "rack-3-gpu"}},
		{"host.example.com,h[1-1].x", []string{"host.example.com", "h1.x"}},
	}
	for _, tc := range cases {
		got, err := ExpandHostlist(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ExpandHostlist(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		first, err := FirstHost(tc.in)
		if err != nil || first != tc.want[0] {
			t.Errorf("FirstHost(%q) = %q, %v; want %q", tc.in, first, err, tc.want[0])
		}
	}
}

func TestHostlistErrors(t *testing.T) {
	for _, in := range []string{"", "  ", "a,,b", ",a", "a,", "n[1-", "n[]", "n[3-1]", "n]", "n[a-b]", "n[1-2-3]",
		"a b", "n[1,]", "n[-1]", "n[1234567890123456789]"} {
		if _, err := FirstHost(in); err == nil {
			t.Errorf("FirstHost(%q) accepted a malformed list", in)
		}
		if _, err := ExpandHostlist(in); err == nil {
			t.Errorf("ExpandHostlist(%q) accepted a malformed list", in)
		}
	}
	if _, err := ExpandHostlist("n[0-999999999]"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("a huge range was expanded: %v", err)
	}
	if h, err := FirstHost("n[0-999999999]"); err != nil || h != "n0" {
		t.Errorf("FirstHost of a huge range = %q, %v", h, err)
	}
}

// FuzzHostlist: never panics; whenever the full expansion succeeds, FirstHost agrees with it.
func FuzzHostlist(f *testing.F) {
	for _, s := range []string{"node[01-04,07],gpu3", "a", "r[1-2]n[1-2]", "n[", "x[9-10]", "a,b", "[1-3]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		first, ferr := FirstHost(s)
		all, err := ExpandHostlist(s)
		if err == nil {
			if ferr != nil || len(all) == 0 || all[0] != first {
				t.Fatalf("FirstHost(%q) = %q, %v but ExpandHostlist gives %q", s, first, ferr, all)
			}
		}
		if ferr == nil && first == "" {
			t.Fatalf("FirstHost(%q) is empty without an error", s)
		}
	})
}
