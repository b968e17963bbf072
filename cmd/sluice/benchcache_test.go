package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
)

// TestBenchCacheJSON: `sluice bench cache --json` prints its table, then one JSON
// object as the last line.
func TestBenchCacheJSON(t *testing.T) {
	var out strings.Builder
	code := run(context.Background(), []string{"bench", "cache", "--sizes", "300", "--queries", "20",
		"--mock-data", "", "--qqp", "", "--json"}, &out, io.Discard)
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"exact_lookup_ns", "semantic_p99_us_1m", "gptcache_correct_hit_pct", "gptcache_wrong_hit_pct", "qqp_auc"} {
		if _, ok := v[k]; !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	if !strings.Contains(out.String(), "p99 us") {
		t.Errorf("no table:\n%s", out.String())
	}
}
