//go:build !linux

package bench

import "time"

// pacer sleeps until a send time. Off Linux it uses time.Sleep, which can overshoot
// short sleeps by up to a millisecond when the process is idle: figures from such a run
// are coarser than Linux ones.
type pacer struct{}

func newPacer() (*pacer, error) { return &pacer{}, nil }

func (p *pacer) wait(due time.Time) error {
	time.Sleep(time.Until(due))
	return nil
}

func (p *pacer) close() error { return nil }
