package models

import (
	"fmt"
	"math"
)

// SoftmaxCrossEntropy is the softmax cross-entropy of logits [B, C] against
// integer labels, scaled:
//
//	loss     = scale · Σ_i ( log Σ_c exp(logits[i,c]) − logits[i,labels[i]] )
//	dlogits  = ∂loss/∂logits = scale · (softmax(logits) − onehot(labels))
//
// Pass scale = 1/globalBatch: then each rank (data parallel) or micro-batch
// (pipeline) contributes its exact share and the summed gradients equal the
// full-batch mean gradient, in exact arithmetic. With scale = 1/B on a batch
// of B, loss is the mean loss.
//
// Computed in Go with float64 accumulation rather than with gorgonia's
// LogSoftMax: in gorgonia.org/tensor v0.9.24 the float32 kernel
// (softMaxLastDimF32) starts every row's maximum from the first element of
// the whole batch instead of the row's own first element (and never compares
// that element), so rows whose largest logit sits in column 0 can overflow
// exp to +Inf and produce NaN; it also starts a goroutine per row. The
// operation is O(B·C), negligible next to the layers.
func SoftmaxCrossEntropy(logits Tensor, labels []int, scale float32) (loss float64, dlogits Tensor, err error) {
	if err := logits.Validate(); err != nil {
		return 0, Tensor{}, fmt.Errorf("softmax cross-entropy: logits: %w", err)
	}
	if len(logits.Shape) != 2 {
		return 0, Tensor{}, &ShapeError{Layer: "softmax-cross-entropy", What: "logits", Got: logits.Shape, Want: "[batch classes]"}
	}
	b, c := logits.Shape[0], logits.Shape[1]
	if len(labels) != b {
		return 0, Tensor{}, &ShapeError{Layer: "softmax-cross-entropy", What: "labels", Got: []int{len(labels)}, Want: fmt.Sprintf("[%d] (one per logits row)", b)}
	}
	dlogits = NewTensor(b, c)
	var total float64
	for i := 0; i < b; i++ {
		lab := labels[i]
		if lab < 0 || lab >= c {
			return 0, Tensor{}, fmt.Errorf("softmax cross-entropy: label %d of sample %d out of range [0, %d)", lab, i, c)
		}
		row := logits.Data[i*c : (i+1)*c]
		m := math.Inf(-1)
		for _, v := range row {
			if float64(v) > m {
				m = float64(v)
			}
		}
		if math.IsInf(m, 0) || math.IsNaN(m) {
			return 0, Tensor{}, fmt.Errorf("softmax cross-entropy: sample %d has non-finite logits", i)
		}
		var sum float64
		for _, v := range row {
			sum += math.Exp(float64(v) - m)
		}
		lse := m + math.Log(sum)
		total += lse - float64(row[lab])
		drow := dlogits.Data[i*c : (i+1)*c]
		for j, v := range row {
			p := math.Exp(float64(v) - lse)
			if j == lab {
				p--
			}
			drow[j] = float32(float64(scale) * p)
		}
	}
	return float64(scale) * total, dlogits, nil
}

// Argmax returns each row's index of the largest value (the first on ties)
// for logits [B, C].
func Argmax(logits Tensor) ([]int, error) {
	if err := logits.Validate(); err != nil {
		return nil, fmt.Errorf("argmax: %w", err)
	}
	if len(logits.Shape) != 2 {
		return nil, &ShapeError{Layer: "argmax", What: "logits", Got: logits.Shape, Want: "[batch classes]"}
	}
	b, c := logits.Shape[0], logits.Shape[1]
	out := make([]int, b)
	for i := range out {
		row := logits.Data[i*c : (i+1)*c]
		best := 0
		for j, v := range row {
			if v > row[best] {
				best = j
			}
		}
		out[i] = best
	}
	return out, nil
}

// CountCorrect is the number of rows whose argmax equals the label.
func CountCorrect(logits Tensor, labels []int) (int, error) {
	pred, err := Argmax(logits)
	if err != nil {
		return 0, err
	}
	if len(labels) != len(pred) {
		return 0, &ShapeError{Layer: "accuracy", What: "labels", Got: []int{len(labels)}, Want: fmt.Sprintf("[%d]", len(pred))}
	}
	n := 0
	for i, p := range pred {
		if p == labels[i] {
			n++
		}
	}
	return n, nil
}

// Accuracy is CountCorrect divided by the batch size.
func Accuracy(logits Tensor, labels []int) (float64, error) {
	n, err := CountCorrect(logits, labels)
	if err != nil || len(labels) == 0 {
		return 0, err
	}
	return float64(n) / float64(len(labels)), nil
}

// Evaluate runs the model in inference mode over x [N, …] in batches of
// batch samples and returns the mean loss and the accuracy (argmax of the
// outputs) against labels. A nil loss means SoftmaxCrossEntropy.
func Evaluate(m Model, loss Loss, x Tensor, labels []int, batch int) (meanLoss, accuracy float64, err error) {
	if m == nil {
		return 0, 0, fmt.Errorf("evaluate: nil model")
	}
	if loss == nil {
		loss = SoftmaxCrossEntropy
	}
	if err := x.Validate(); err != nil {
		return 0, 0, fmt.Errorf("evaluate: %w", err)
	}
	n := x.Shape[0]
	if len(labels) != n {
		return 0, 0, fmt.Errorf("evaluate: %d labels for %d samples", len(labels), n)
	}
	if batch <= 0 {
		return 0, 0, fmt.Errorf("evaluate: batch size must be positive, got %d", batch)
	}
	per := numElems(x.Shape[1:])
	var lossSum float64
	correct := 0
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		xb := Tensor{Shape: append([]int{hi - lo}, x.Shape[1:]...), Data: x.Data[lo*per : hi*per]}
		logits, _, err := m.Forward(xb, false)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		l, _, err := loss(logits, labels[lo:hi], 1)
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		lossSum += l
		c, err := CountCorrect(logits, labels[lo:hi])
		if err != nil {
			return 0, 0, fmt.Errorf("evaluate: %w", err)
		}
		correct += c
	}
	return lossSum / float64(n), float64(correct) / float64(n), nil
}
