//go:build !linux

package bench

import (
	"errors"
	"time"
)

// peakRSS is not measured off Linux.
func peakRSS() (int64, error) { return 0, errors.New("bench: peak RSS is only read on Linux") }

// processCPU is not measured off Linux.
func processCPU() time.Duration { return 0 }
