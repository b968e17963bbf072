package route

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
)

// TestRunOverflowShort runs the benchmark briefly on real llama-server engines: it
// must finish, overflow at 3x the capacity (the queue grows by twice the capacity a
// second, far past the SLO within the window), keep every EU-key request out of the
// US cloud, and report the JSON keys. Timings are not asserted.
func TestRunOverflowShort(t *testing.T) {
	bin := enginetest.LlamaServerPath(t)
	vocab := enginetest.VocabPath(t)
	res, err := RunOverflow(context.Background(), OverflowConfig{LlamaServer: bin, Vocab: vocab,
		Loads: []float64{0.5, 3}, Duration: 2 * time.Second, Calibration: 2 * time.Second, OutputTokens: 32,
		Progress: os.Stderr})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Levels) != 2 || res.CapacityRPS <= 0 || res.Levels[1].Requests == 0 {
		t.Fatalf("result = %+v", res)
	}
	if res.ResidencyViolations != 0 || res.Levels[1].Overflow == 0 || res.Levels[1].CloudEU == 0 {
		t.Fatalf("3x: %+v", res.Levels[1])
	}
	b, err := res.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"p99_ttft_ms_3x", "slo_ms", "local_busy_3x", "overflow_share_half", "residency_violations"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}
