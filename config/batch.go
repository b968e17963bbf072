package config

import (
	"path/filepath"
	"time"
)

// Batch configures the Batch API: /v1/files and /v1/batches (package batch;
// docs/batch.md). It is on unless enabled is false.
type Batch struct {
	Enabled *bool `yaml:"enabled"`
	// Dir holds the batch store (batch.db) and the uploaded and output files (default
	// $SLUICE_DATA/batch; see DataDir).
	Dir string `yaml:"dir"`
	// MaxFileBytes caps an uploaded file (default 100 MiB).
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxLines caps the requests of one batch (default 50000).
	MaxLines int `yaml:"max_lines"`
	// Concurrency is how many batch lines are in flight at once, over all batches
	// (default 4). They run at batch priority: only on slots interactive work leaves idle.
	Concurrency int `yaml:"concurrency"`
	// RetryBackoff is the first wait before a line that found no capacity runs again;
	// it doubles up to MaxRetryBackoff (defaults 1s and 1m).
	RetryBackoff    time.Duration `yaml:"retry_backoff"`
	MaxRetryBackoff time.Duration `yaml:"max_retry_backoff"`
}

// On reports whether the Batch API is served.
func (b *Batch) On() bool { return b.Enabled == nil || *b.Enabled }

func (b *Batch) applyDefaults(env Env) {
	if b.Dir == "" {
		b.Dir = filepath.Join(DataDir(env), "batch")
	}
	if b.MaxFileBytes == 0 {
		b.MaxFileBytes = 100 << 20
	}
	if b.MaxLines == 0 {
		b.MaxLines = 50000
	}
	if b.Concurrency == 0 {
		b.Concurrency = 4
	}
	if b.RetryBackoff == 0 {
		b.RetryBackoff = time.Second
	}
	if b.MaxRetryBackoff == 0 {
		b.MaxRetryBackoff = time.Minute
	}
}

func (b *Batch) validate(bad func(path, format string, args ...any)) {
	if b.MaxFileBytes < 1 {
		bad("batch.max_file_bytes", "must be at least 1, got %d", b.MaxFileBytes)
	}
	if b.MaxLines < 1 || b.MaxLines > 1_000_000 {
		bad("batch.max_lines", "must be between 1 and 1000000, got %d", b.MaxLines)
	}
	if b.Concurrency < 1 || b.Concurrency > 4096 {
		bad("batch.concurrency", "must be between 1 and 4096, got %d", b.Concurrency)
	}
	if b.RetryBackoff < time.Millisecond {
		bad("batch.retry_backoff", "must be at least 1ms, got %v", b.RetryBackoff)
	}
	if b.MaxRetryBackoff < b.RetryBackoff {
		bad("batch.max_retry_backoff", "must be at least batch.retry_backoff (%v), got %v", b.RetryBackoff, b.MaxRetryBackoff)
	}
}
