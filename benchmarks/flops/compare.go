package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

// load returns, per measurement key, the best (shortest) time over every run
// in a JSON-lines file, and every time (for the spread).
func load(path string) (map[string]Record, map[string][]float64, []string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil, err
	}
	defer f.Close()
	bestRec := map[string]Record{}
	all := map[string][]float64{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		key := r.Kind + " " + r.Model + " " + r.Name
		if _, ok := bestRec[key]; !ok {
			order = append(order, key)
		}
		all[key] = append(all[key], r.Ms)
		if b, ok := bestRec[key]; !ok || (r.Kind == "peak" && r.GFLOPs > b.GFLOPs) || (r.Kind != "peak" && r.Ms < b.Ms) {
			bestRec[key] = r
		}
	}
	return bestRec, all, order, sc.Err()
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// compareFiles prints old/new for every measurement both files have: best
// times, the speed-up best-vs-best, and the median speed-up over the runs.
func compareFiles(w io.Writer, oldPath, newPath string) error {
	oldB, oldAll, _, err := load(oldPath)
	if err != nil {
		return err
	}
	newB, newAll, order, err := load(newPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%-34s %10s %10s %9s %9s %9s %6s\n", "measurement", "old ms", "new ms", "old GF/s", "new GF/s", "speed-up", "median")
	for _, key := range order {
		n := newB[key]
		if n.Kind == "peak" || n.Kind == "gemm" {
			if n.Kind == "peak" {
				fmt.Fprintf(w, "%-34s %10s %10s %9s %9.1f\n", key, "", "", "", n.GFLOPs)
			}
			continue
		}
		o, ok := oldB[key]
		if !ok {
			continue
		}
		fmt.Fprintf(w, "%-34s %10.3f %10.3f %9.1f %9.1f %8.2fx %5.2fx\n", key, o.Ms, n.Ms, o.GFLOPs, n.GFLOPs, o.Ms/n.Ms, median(oldAll[key])/median(newAll[key]))
	}
	return nil
}
