package data

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ringtrain/ringtrain/models"
)

// Source is anything a sampler can draw batches from.
type Source interface {
	// Len is the number of samples.
	Len() int
	// SampleShape is the per-sample shape, e.g. [1 28 28].
	SampleShape() []int
	// NumClasses is the number of label values (labels are 0…NumClasses−1).
	NumClasses() int
	// Gather returns the samples at idx as a fresh batch [len(idx), SampleShape…]
	// and their labels. The result shares no memory with the source, so
	// it may be held (e.g. in a layer's Saved) while later batches are made.
	Gather(idx []int) (models.Tensor, []int, error)
}

// Split is one in-memory part of a dataset (train or test).
type Split struct {
	shape   []int     // per-sample shape [1 H W]
	images  []float32 // Len()·H·W pixels in [0, 1]
	labels  []int
	classes int
}

var _ Source = (*Split)(nil)

// NewSplit wraps images (n·∏shape values) and labels (n of them, each in
// [0, classes)).
func NewSplit(shape []int, images []float32, labels []int, classes int) (*Split, error) {
	per := 1
	for _, d := range shape {
		if d <= 0 {
			return nil, fmt.Errorf("split: bad sample shape %v", shape)
		}
		per *= d
	}
	if len(images) != len(labels)*per {
		return nil, fmt.Errorf("split: %d pixel values for %d samples of shape %v", len(images), len(labels), shape)
	}
	for i, l := range labels {
		if l < 0 || l >= classes {
			return nil, fmt.Errorf("split: label %d of sample %d out of range [0, %d)", l, i, classes)
		}
	}
	return &Split{shape: append([]int(nil), shape...), images: images, labels: labels, classes: classes}, nil
}

// Len implements Source.
func (s *Split) Len() int { return len(s.labels) }

// SampleShape implements Source.
func (s *Split) SampleShape() []int { return append([]int(nil), s.shape...) }

// NumClasses implements Source.
func (s *Split) NumClasses() int { return s.classes }

// Labels returns all labels (a copy).
func (s *Split) Labels() []int { return append([]int(nil), s.labels...) }

// All returns the whole split as one batch (sharing the split's memory: do
// not modify it) and its labels.
func (s *Split) All() (models.Tensor, []int) {
	return models.Tensor{Shape: append([]int{len(s.labels)}, s.shape...), Data: s.images}, s.Labels()
}

// Gather implements Source.
func (s *Split) Gather(idx []int) (models.Tensor, []int, error) {
	per := len(s.images) / max(1, len(s.labels))
	x := models.NewTensor(append([]int{len(idx)}, s.shape...)...)
	labels := make([]int, len(idx))
	for j, i := range idx {
		if i < 0 || i >= len(s.labels) {
			return models.Tensor{}, nil, fmt.Errorf("gather: index %d out of range [0, %d)", i, len(s.labels))
		}
		copy(x.Data[j*per:(j+1)*per], s.images[i*per:(i+1)*per])
		labels[j] = s.labels[i]
	}
	return x, labels, nil
}

// Dataset is a train and a test split and where they came from.
type Dataset struct {
	Train, Test *Split
	Source      string // a directory, or "embedded …"
}

// File names of the four IDX files, as distributed (each may also be
// present without the .gz suffix, uncompressed).
const (
	TrainImages = "train-images-idx3-ubyte.gz"
	TrainLabels = "train-labels-idx1-ubyte.gz"
	TestImages  = "t10k-images-idx3-ubyte.gz"
	TestLabels  = "t10k-labels-idx1-ubyte.gz"
)

// NumClasses of (Fashion-)MNIST.
const NumClasses = 10

// DefaultDir is where Debian's dataset-fashion-mnist package installs the data.
const DefaultDir = "/usr/share/datasets/fashion-mnist"

// ErrNotFound is matched (errors.Is) when a directory lacks the IDX files.
var ErrNotFound = errors.New("dataset files not found")

// Load reads the four IDX files from dir (each as NAME.gz or NAME without
// .gz).
func Load(dir string) (*Dataset, error) {
	return loadFS(os.DirFS(dir), dir)
}

// Open picks the data source: dir when non-empty (the user asked for it, so
// any problem there is an error), else DefaultDir when it holds the files,
// else the embedded subset. Dataset.Source says which was used.
func Open(dir string) (*Dataset, error) {
	if dir != "" {
		return Load(dir)
	}
	ds, _, err := Default()
	return ds, err
}

// Default loads DefaultDir if it holds the dataset, else the embedded subset,
// and returns a description of the source used. A DefaultDir whose files
// exist but are corrupt is an error, not a silent fallback.
func Default() (*Dataset, string, error) {
	ds, err := Load(DefaultDir)
	if errors.Is(err, ErrNotFound) {
		ds, err = Embedded()
	}
	if err != nil {
		return nil, "", err
	}
	return ds, ds.Source, nil
}

func loadFS(fsys fs.FS, where string) (*Dataset, error) {
	train, err := loadSplit(fsys, where, TrainImages, TrainLabels)
	if err != nil {
		return nil, err
	}
	test, err := loadSplit(fsys, where, TestImages, TestLabels)
	if err != nil {
		return nil, err
	}
	return &Dataset{Train: train, Test: test, Source: where}, nil
}

// readFS opens name or, failing that, name without ".gz".
func readFS(fsys fs.FS, where, name string) (*IDX, error) {
	path := name
	f, err := fsys.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		path = name[:len(name)-len(".gz")]
		f, err = fsys.Open(path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has neither %s nor %s", ErrNotFound, where, name, path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeIDX(f, filepath.Join(where, path))
}

func loadSplit(fsys fs.FS, where, imagesName, labelsName string) (*Split, error) {
	imgs, err := readFS(fsys, where, imagesName)
	if err != nil {
		return nil, err
	}
	labs, err := readFS(fsys, where, labelsName)
	if err != nil {
		return nil, err
	}
	imgFile, labFile := filepath.Join(where, imagesName), filepath.Join(where, labelsName)
	if len(imgs.Dims) != 3 {
		return nil, &FormatError{File: imgFile, Offset: 3, Msg: fmt.Sprintf("images have dimensions %v, want [N H W]", imgs.Dims)}
	}
	if len(labs.Dims) != 1 {
		return nil, &FormatError{File: labFile, Offset: 3, Msg: fmt.Sprintf("labels have dimensions %v, want [N]", labs.Dims)}
	}
	if imgs.Dims[0] != labs.Dims[0] {
		return nil, &FormatError{File: labFile, Offset: -1, Msg: fmt.Sprintf("%d labels for %d images in %s", labs.Dims[0], imgs.Dims[0], imgFile)}
	}
	if imgs.Dims[1] == 0 || imgs.Dims[2] == 0 {
		return nil, &FormatError{File: imgFile, Offset: -1, Msg: fmt.Sprintf("empty image size %v", imgs.Dims[1:])}
	}
	labels := make([]int, len(labs.Data))
	for i, l := range labs.Data {
		if int(l) >= NumClasses {
			return nil, &FormatError{File: labFile, Offset: 8 + int64(i), Msg: fmt.Sprintf("label %d of sample %d out of range [0, %d)", l, i, NumClasses)}
		}
		labels[i] = int(l)
	}
	pixels := make([]float32, len(imgs.Data))
	for i, p := range imgs.Data {
		pixels[i] = float32(p) / 255
	}
	return NewSplit([]int{1, imgs.Dims[1], imgs.Dims[2]}, pixels, labels, NumClasses)
}
