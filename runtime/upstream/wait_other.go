//go:build !linux

package upstream

import "syscall"

// waitReadable returns at once where a non-blocking peek is not wired up: the next Read
// waits instead.
func waitReadable(syscall.RawConn) {}
