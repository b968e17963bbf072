//go:build !linux

package cache

import "time"

// threadCPU runs fn; CPU time is not measured on this system.
func threadCPU(fn func()) time.Duration {
	fn()
	return 0
}
