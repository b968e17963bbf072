//go:build !linux

package gateway

import "context"

// hangups is Linux-only (epoll); elsewhere a client that leaves is noticed when a write
// of its answer fails, and a request that waits or runs non-streamed lasts until its
// deadline.
type hangups struct{}

type watched struct{}

func newHangups() *hangups                                       { return nil }
func (h *hangups) run(func())                                    {}
func (h *hangups) stop()                                         {}
func (h *hangups) watch(*limitConn, context.CancelFunc) *watched { return nil }
func (h *hangups) forget(*limitConn)                             {}
func (w *watched) unwatch()                                      {}
