package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"4096": 4096, "4KiB": 4096, "4k": 4096, "4KB": 4096, "64MiB": 64 << 20, "1GiB": 1 << 30, "8b": 8, " 2 MiB ": 2 << 20,
	} {
		got, err := parseSize(in)
		if err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0", "-4", "3", "4XB", "KiB", "99999999999999999GiB"} {
		if _, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) accepted", bad)
		}
	}
}

func TestFlagErrorsNameTheFlag(t *testing.T) {
	for args, flagName := range map[string]string{
		"--min 3":                          "--min",
		"--max 1x":                         "--max",
		"--min 8KiB --max 4KiB":            "--min",
		"--dtype int8":                     "--dtype",
		"--compress fp8":                   "--compress",
		"--compress bf16 --dtype fp16":     "--compress",
		"--collective allsum":              "--collective",
		"--collective gather --dtype fp16": "--dtype",
		"--collective gather --dtype bf16": "--dtype",
		"--op prod":                        "--op",
		"--iters 0":                        "--iters",
		"--mem":                            "--mem",
		"--factor 1":                       "--factor",
	} {
		_, err := parseFlags(strings.Fields(args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%s: error %v does not name %s", args, err, flagName)
		}
	}
}

// TestSweepJSON runs a small sweep over both transports and checks every line: the fields
// the report generator reads, busbw = algbw·2(N−1)/N, an exact result for fp32 and a small
// error for fp16.
func TestSweepJSON(t *testing.T) {
	for _, args := range []string{
		"--local 3 --mem --min 4KiB --max 64KiB --factor 4 --iters 3 --warmup 1 --json --baseline",
		"--local 2 --min 4KiB --max 256KiB --factor 8 --iters 3 --warmup 1 --json --baseline --dtype fp32,fp16",
		"--local 2 --mem --min 64KiB --max 64KiB --iters 2 --warmup 1 --json --baseline --compress none,bf16",
	} {
		cfg, err := parseFlags(strings.Fields(args), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := run(context.Background(), cfg, &out); err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		var ar, ex int
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			var r row
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatalf("%s: bad line %q: %v", args, sc.Text(), err)
			}
			if r.Ranks != cfg.local || r.Bytes < cfg.min || r.Bytes > cfg.max || !(r.TimeUS > 0) {
				t.Fatalf("%s: implausible row %+v", args, r)
			}
			switch r.Op {
			case "allreduce":
				ar++
				n := float64(r.Ranks)
				if want := r.AlgBWGBs * 2 * (n - 1) / n; abs(r.BusBWGBs-want) > 1e-9*want {
					t.Fatalf("busbw %g, want %g", r.BusBWGBs, want)
				}
				if r.Dtype == "fp32" && r.MaxRelErr != 0 {
					t.Fatalf("fp32 sum of exact inputs has error %g", r.MaxRelErr)
				}
				if r.Dtype == "fp16" && !(r.MaxRelErr > 0 && r.MaxRelErr < 1e-3) {
					t.Fatalf("fp16 error %g outside (0, 1e-3)", r.MaxRelErr)
				}
				// bf16: 2 roundings of at most 2^-8 relative at 2 ranks.
				if r.Dtype == "bf16" && !(r.MaxRelErr > 0 && r.MaxRelErr < 2*0x1p-8) {
					t.Fatalf("bf16 error %g outside (0, 2^-7)", r.MaxRelErr)
				}
			case "ring-exchange":
				ex++
				if !(r.LinkGBs > 0) {
					t.Fatalf("ring exchange without link_gbs: %+v", r)
				}
			default:
				t.Fatalf("unknown op %q", r.Op)
			}
		}
		if ar == 0 || ar != ex*len(cfg.dtypes) {
			t.Fatalf("%s: %d allreduce and %d ring-exchange rows", args, ar, ex)
		}
	}
}

// TestCollectivesJSON runs every collective for every non-fp16 dtype on 3 ranks and checks
// each line's op, dtype and busbw factor (the run itself checks every result exactly).
func TestCollectivesJSON(t *testing.T) {
	args := "--local 3 --mem --min 4KiB --max 16KiB --factor 4 --iters 2 --warmup 1 --json --dtype fp32,fp64,int32,int64 --collective " + strings.Join(collectives, ",")
	cfg, err := parseFlags(strings.Fields(args), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r row
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad line %q: %v", sc.Text(), err)
		}
		n := float64(r.Ranks)
		factor := (n - 1) / n
		switch r.Op {
		case "allreduce":
			factor = 2 * (n - 1) / n
		case "broadcast", "reduce":
			factor = 1
		}
		if want := r.AlgBWGBs * factor; abs(r.BusBWGBs-want) > 1e-9*want || !(r.TimeUS > 0) || r.Bytes <= 0 || r.Bytes > cfg.max {
			t.Fatalf("implausible row %+v (busbw factor %g)", r, factor)
		}
		seen[r.Op+"/"+r.Dtype]++
	}
	for _, c := range collectives {
		for _, dt := range cfg.dtypes {
			if seen[c+"/"+dt] != 2 {
				t.Errorf("%s %s: %d rows, want 2 (one per size)", c, dt, seen[c+"/"+dt])
			}
		}
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
