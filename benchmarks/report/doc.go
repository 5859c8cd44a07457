// Package report turns the measurements of the ringtrain benchmarks into a report: the
// numbers behind it (results.json), the text (report.md) and the plots (SVG and PNG).
//
// It holds the arithmetic that a reader should be able to check on their own:
//
//   - [Summarize]: median, quartiles and extremes of repeated measurements;
//   - [Efficiency]: scaling efficiency, throughput(N) / (N × throughput(1));
//   - [FitAlphaBeta]: the α-β cost of a ring AllReduce, T(n, N) = 2(N−1)·α + 2(N−1)/N·n·β,
//     fitted by least squares to a measured sweep;
//   - [Project]: the scaling efficiency that model predicts for N ranks on a given link,
//     from a measured compute time and gradient size.
//
// and the rendering ([WriteMarkdown], [WritePlots]) of a [Results] document. The package
// runs nothing: package main of benchmarks/scaling measures, this package reports.
package report
