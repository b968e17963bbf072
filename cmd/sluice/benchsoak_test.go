package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strings"
	"testing"
)

// TestMain lets this test binary serve as a hop process of "bench soak" and "bench
// gateway": run as "sluice.test bench gateway-hop HOP UPSTREAM [OPTIONS]" it serves that
// hop, as the sluice binary would, instead of testing.
func TestMain(m *testing.M) {
	if len(os.Args) >= 3 && os.Args[1] == "bench" && os.Args[2] == "gateway-hop" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestBenchSoakJSON: `sluice bench soak --json` with a few streams for two seconds
// holds them through real hop processes, prints its table, then one JSON object as
// the last line with the keys the issue names. It asserts no timing.
func TestBenchSoakJSON(t *testing.T) {
	var out, errOut strings.Builder
	code := run(t.Context(), []string{"bench", "soak", "--streams", "10", "--duration", "2s", "--chunk-delay", "20ms",
		"--chunks", "10", "--data", "", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var v map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &v); err != nil {
		t.Fatalf("last line is not JSON: %v\n%s", err, out.String())
	}
	for _, k := range []string{"errors", "rss_mb", "goroutines_leaked", "completed", "pass"} {
		if _, ok := v[k]; !ok {
			t.Errorf("JSON lacks %s", k)
		}
	}
	if e, _ := v["errors"].(float64); e != 0 {
		t.Errorf("errors %v (%v)", e, v["first_error"])
	}
	if l, ok := v["goroutines_leaked"].(float64); !ok || l != 0 {
		t.Errorf("goroutines leaked %v (baseline %v, after %v, idle workers after %v)", v["goroutines_leaked"], v["goroutines_baseline"],
			v["goroutines_after"], v["idle_workers_after"])
	}
	if c, _ := v["completed"].(float64); c < 10 {
		t.Errorf("completed %v streams; want at least one per client", c)
	}
	if !strings.Contains(out.String(), "sluice goroutines") {
		t.Errorf("no table:\n%s", out.String())
	}
	// A bad flag is an error, not a soak.
	if code := run(t.Context(), []string{"bench", "soak", "--streams", "x"}, io.Discard, io.Discard); code == 0 {
		t.Error("bench soak --streams x: exit 0")
	}
}
