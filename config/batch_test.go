package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBatchConfig(t *testing.T) {
	model := writeModel(t)
	home := t.TempDir()
	env := mapEnv(map[string]string{"HOME": home, "M": model})
	base := "engines:\n  - name: a\n    model_path: ${M}\n"
	c, err := Parse([]byte(base), "t.yaml", env)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Batch
	if !b.On() || b.Dir != filepath.Join(home, ".local", "share", "sluice", "batch") || b.MaxFileBytes != 100<<20 ||
		b.MaxLines != 50000 || b.Concurrency != 4 || b.RetryBackoff != time.Second || b.MaxRetryBackoff != time.Minute {
		t.Errorf("defaults: %+v", b)
	}
	c, err = Parse([]byte(base+"batch: {enabled: false, dir: /srv/b, max_file_bytes: 1000, max_lines: 10, concurrency: 2, retry_backoff: 10ms, max_retry_backoff: 1s}\n"),
		"t.yaml", mapEnv(map[string]string{"HOME": home, "M": model, "SLUICE_DATA": "/data"}))
	if err != nil {
		t.Fatal(err)
	}
	if b = c.Batch; b.On() || b.Dir != "/srv/b" || b.MaxFileBytes != 1000 || b.MaxLines != 10 || b.Concurrency != 2 ||
		b.RetryBackoff != 10*time.Millisecond || b.MaxRetryBackoff != time.Second {
		t.Errorf("parsed: %+v", b)
	}
	if c, err = Parse([]byte(base), "t.yaml", mapEnv(map[string]string{"HOME": home, "M": model, "SLUICE_DATA": "/data"})); err != nil || c.Batch.Dir != "/data/batch" {
		t.Errorf("SLUICE_DATA: %v %v", c.Batch.Dir, err)
	}
	for _, tt := range []struct{ yaml, want string }{
		{"batch: {max_file_bytes: -1}\n", "batch.max_file_bytes"},
		{"batch: {max_lines: -2}\n", "batch.max_lines"},
		{"batch: {concurrency: 5000}\n", "batch.concurrency"},
		{"batch: {retry_backoff: 1us}\n", "batch.retry_backoff"},
		{"batch: {retry_backoff: 2s, max_retry_backoff: 1s}\n", "batch.max_retry_backoff"},
		{"batch: {concurency: 2}\n", "unknown key batch.concurency"},
	} {
		_, err := Parse([]byte(base+tt.yaml), "t.yaml", env)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: error %v, want %q", tt.yaml, err, tt.want)
		}
	}
}
