// Command mksubset writes the class-balanced Fashion-MNIST subset that
// package data embeds: the first -train-per-class images of each class from
// the training file and the first -test-per-class of each class from the
// test file, keeping file order, as gzip IDX files with reproducible bytes.
//
//	go run ./internal/mksubset -src /usr/share/datasets/fashion-mnist -out embedded
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/models/data"
)

func main() {
	src := flag.String("src", data.DefaultDir, "directory with the full IDX files")
	out := flag.String("out", "embedded", "output directory")
	trainPer := flag.Int("train-per-class", 1000, "training images per class")
	testPer := flag.Int("test-per-class", 200, "test images per class")
	flag.Parse()
	if err := run(*src, *out, *trainPer, *testPer); err != nil {
		fmt.Fprintln(os.Stderr, "mksubset:", err)
		os.Exit(1)
	}
}

func run(src, out string, trainPer, testPer int) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, s := range []struct {
		images, labels string
		per            int
	}{{data.TrainImages, data.TrainLabels, trainPer}, {data.TestImages, data.TestLabels, testPer}} {
		imgs, err := data.ReadIDXFile(filepath.Join(src, s.images))
		if err != nil {
			return err
		}
		labs, err := data.ReadIDXFile(filepath.Join(src, s.labels))
		if err != nil {
			return err
		}
		if len(imgs.Dims) != 3 || len(labs.Dims) != 1 || imgs.Dims[0] != labs.Dims[0] {
			return fmt.Errorf("%s: unexpected dimensions %v / %v", src, imgs.Dims, labs.Dims)
		}
		per := imgs.Dims[1] * imgs.Dims[2]
		count := make([]int, data.NumClasses)
		var subImgs, subLabs []byte
		for i, l := range labs.Data {
			if int(l) >= data.NumClasses || count[l] >= s.per {
				continue
			}
			count[l]++
			subLabs = append(subLabs, l)
			subImgs = append(subImgs, imgs.Data[i*per:(i+1)*per]...)
		}
		for c, n := range count {
			if n < s.per {
				return fmt.Errorf("%s: class %d has only %d images, want %d", s.labels, c, n, s.per)
			}
		}
		n := len(subLabs)
		if err := write(filepath.Join(out, s.images), []int{n, imgs.Dims[1], imgs.Dims[2]}, subImgs); err != nil {
			return err
		}
		if err := write(filepath.Join(out, s.labels), []int{n}, subLabs); err != nil {
			return err
		}
		fmt.Printf("%s: %d images (%d per class)\n", s.images, n, s.per)
	}
	return nil
}

func write(path string, dims []int, b []byte) error {
	var buf bytes.Buffer
	if err := data.EncodeIDX(&buf, dims, b, true); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
