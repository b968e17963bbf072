package bench

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

// TestSoakShort runs a small soak through real hop processes (this test binary): every
// stream completes, the report's figures are filled in, and the JSON has the keys the
// issue names. It asserts no timing.
func TestSoakShort(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Soak(t.Context(), SoakConfig{Streams: 20, Duration: 2 * time.Second, ChunkDelay: 10 * time.Millisecond,
		Chunks: 5, Settle: 5 * time.Second, Exec: []string{exe, "gateway-hop"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Errors != 0 || rep.Completed < 20 {
		t.Fatalf("errors %d (%s), completed %d; want 0 and at least one stream per worker", rep.Errors, rep.FirstError, rep.Completed)
	}
	if rep.RSSMB <= 0 || rep.GoroutinesBase <= 0 || rep.GoroutinesPeak < rep.GoroutinesBase {
		t.Errorf("rss %v MiB, goroutines base %d peak %d", rep.RSSMB, rep.GoroutinesBase, rep.GoroutinesPeak)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"errors", "rss_mb", "goroutines_leaked", "completed", "pass"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON has no %q: %s", k, b)
		}
	}
	var out bytes.Buffer
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "leaked") {
		t.Errorf("table:\n%s", out.String())
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("hop processes still running after Soak: %v", kids)
	}
	if _, err := Soak(t.Context(), SoakConfig{Streams: 1}); err == nil {
		t.Error("Soak without Exec: nil error")
	}
}
