package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Manager. Dir is required.
type Options struct {
	// Dir holds batch.db and files/ (created if missing).
	Dir string
	// MaxFileBytes caps an upload (default 100 MiB).
	MaxFileBytes int64
	// MaxLines caps the requests of one batch (default 50,000, OpenAI's limit).
	MaxLines int
	// MaxLineBytes caps one line, as server.max_body_bytes caps a request over HTTP
	// (default 8 MiB): a longer line is an error-file entry (request_too_large).
	MaxLineBytes int
	// Concurrency is how many lines of all batches are in flight at once (default 4).
	// Each runs at batch priority, so the scheduler gives it only slots interactive work
	// leaves idle; this bound keeps batch work from filling the scheduler's queue.
	Concurrency int
	// RetryBackoff is the first wait before a line that found no capacity (429, 503,
	// 504) runs again; it doubles up to MaxRetryBackoff (defaults 1s and 1m).
	RetryBackoff    time.Duration
	MaxRetryBackoff time.Duration
	// DrainTimeout is how long Run waits for lines in flight when it stops (default
	// 30s); lines still running then are run again after a restart.
	DrainTimeout time.Duration
	// Now is the clock (default time.Now).
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Executor runs one line's request the way the HTTP endpoint at url would (the
// gateway: router, stages, scheduler, usage recording) and returns the answer's status,
// request id and body. cred is what CreateBatch was given to act for the batch's owner;
// feature names the batch for reports ("batch:<id>").
type Executor interface {
	Execute(ctx context.Context, cred []byte, url string, body []byte, feature string) (status int, requestID string, answer []byte)
}

// Manager serves the Batch API and runs batches (Run).
type Manager struct {
	opts Options
	st   *store
	m    *metrics
	log  *slog.Logger
	now  func() time.Time
	wake chan struct{} // a batch was created or cancelled

	mu      sync.Mutex
	changed chan struct{} // closed at the next change (Changed)

	// crashAt makes the runner stop dead at a named point, as a crash would; crashed is
	// closed when it does (tests).
	crashAt string
	crashed chan struct{}
}

// crash reports whether the runner is to stop dead at point (tests).
func (m *Manager) crash(point string) bool {
	if m.crashAt != point {
		return false
	}
	select {
	case <-m.crashed:
	default:
		close(m.crashed)
	}
	return true
}

// errCrash is returned at Manager.crashAt.
var errCrash = errors.New("batch: simulated crash")

// Open opens the store in o.Dir, removing what a crash left half-written.
func Open(ctx context.Context, o Options) (*Manager, error) {
	if o.Dir == "" {
		return nil, errors.New("batch: Options.Dir is required")
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 100 << 20
	}
	if o.MaxLines <= 0 {
		o.MaxLines = 50000
	}
	if o.MaxLineBytes <= 0 {
		o.MaxLineBytes = 8 << 20
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = time.Second
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = max(time.Minute, o.RetryBackoff)
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	st, err := openStore(o.Dir)
	if err != nil {
		return nil, err
	}
	m := &Manager{opts: o, st: st, log: o.Logger, now: o.Now, wake: make(chan struct{}, 1), changed: make(chan struct{})}
	m.m = newMetrics(o.Registerer, m)
	if err := m.sweep(ctx); err != nil {
		st.close()
		return nil, fmt.Errorf("batch: sweep %s: %w", st.files, err)
	}
	return m, nil
}

// Close closes the store. Call it after Run has returned.
func (m *Manager) Close() error { return m.st.close() }

// MaxFileBytes is the upload limit.
func (m *Manager) MaxFileBytes() int64 { return m.opts.MaxFileBytes }

// Changed returns a channel closed at the next change the runner makes: a batch
// validated or ended, or lines committed.
func (m *Manager) Changed() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

func (m *Manager) signal() {
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
}

// notify wakes the runner (a batch was created or cancelled).
func (m *Manager) notify() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// internal wraps a store failure; clients see a server error, the log the cause.
func (m *Manager) internal(op string, err error) error {
	m.log.Error("batch: "+op, "err", err)
	return fmt.Errorf("batch: %s: %w", op, err)
}
