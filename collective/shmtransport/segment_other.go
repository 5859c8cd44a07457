//go:build !linux

package shmtransport

import (
	"errors"
	"fmt"
)

const shmSupported = false

var errUnsupported = errors.New("shmtransport: shared memory links need Linux")

type segment struct {
	mem  []byte
	path string
}

func createSegment(dir, job string, h *header) (*segment, error) { return nil, errUnsupported }

func openSegment(dir, name string, ringBytes uint64, nonce [16]byte, creatorRank, openerRank int) (*segment, error) {
	return nil, errUnsupported
}

func (s *segment) unlink() error { return nil }
func (s *segment) unmap() error  { return nil }

func sizeString(n int64) string { return fmt.Sprintf("%d bytes", n) }
