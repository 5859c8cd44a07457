package kernels

//go:generate go run ./internal/ptxgen
