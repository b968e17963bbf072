//go:build !cgo

package gpu

import (
	"context"
	"fmt"
)

// NewSource returns the Source for this box. This binary was built without
// cgo, which NVML needs, so the source reports no GPUs and says why.
func NewSource() Source { return noNVML{} }

var _ Source = noNVML{}

type noNVML struct{}

func (noNVML) Read(context.Context) ([]Device, error) {
	return nil, fmt.Errorf("%w: nvml: built without cgo (CGO_ENABLED=0)", ErrUnavailable)
}

func (noNVML) Close() error { return nil }
