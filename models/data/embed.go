package data

import (
	"embed"
	"fmt"
	"io/fs"
)

// The embedded subset is generated from the Debian files by
//
//	go generate ./models/data
//
// which runs internal/mksubset: the first 1,000 images of each class from
// the training file and the first 200 of each class from the test file, in
// file order, written as gzip IDX (reproducible bytes).
//
//go:generate go run ./internal/mksubset -src /usr/share/datasets/fashion-mnist -out embedded -train-per-class 1000 -test-per-class 200

//go:embed embedded/*.gz
var embedded embed.FS

// Embedded loads the subset compiled into the binary.
func Embedded() (*Dataset, error) {
	sub, err := fs.Sub(embedded, "embedded")
	if err != nil {
		return nil, err
	}
	ds, err := loadFS(sub, "embedded")
	if err != nil {
		return nil, fmt.Errorf("embedded subset: %w", err)
	}
	ds.Source = fmt.Sprintf("embedded Fashion-MNIST subset (%d train, %d test images)", ds.Train.Len(), ds.Test.Len())
	return ds, nil
}
