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

func statusBytes(string) (int64, error) { return 0, errors.New("bench: /proc is only read on Linux") }

// currentRSS is not measured off Linux.
func currentRSS() (int64, error) { return 0, errors.New("bench: RSS is only read on Linux") }
