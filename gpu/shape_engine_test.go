package gpu

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

// lastMiB returns the last "... = N MiB" figure llama-server logs for re. It loads the
// model twice (a dry run that fits the parameters, with zero-sized buffers, then the
// real load), so the last figure is the one allocated.
func lastMiB(t *testing.T, log string, re *regexp.Regexp) float64 {
	t.Helper()
	ms := re.FindAllStringSubmatch(log, -1)
	if len(ms) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(ms[len(ms)-1][1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestShapeInLlamaServer loads a generated real-shape model (the smallest, Q4_0) in a
// real llama-server, runs a completion on it, and checks that the placement estimate
// agrees with the weights and KV cache llama-server reports allocating.
func TestShapeInLlamaServer(t *testing.T) {
	const shape, ctxPerSlot, slots = "qwen2.5-0.5b", 2048, 2
	path := enginetest.ShapeModel(t, shape, tinymodel.QuantQ4_0)
	p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Model: path, Slots: slots, Ctx: ctxPerSlot * slots, Threads: 1,
		Extra: []string{"--verbose"}}) // the loader's buffer sizes are logged at full verbosity

	body, _ := json.Marshal(map[string]any{"prompt": "The capital of France is", "n_predict": 4, "temperature": 0})
	c := &http.Client{Timeout: 2 * time.Minute}
	resp, err := c.Post(p.URL+"/completion", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Content         string `json:"content"`
		TokensPredicted int    `json:"tokens_predicted"`
		TokensEvaluated int    `json:"tokens_evaluated"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("completion: status %d, err %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	if out.TokensPredicted != 4 || out.TokensEvaluated < 2 {
		t.Fatalf("completion predicted %d tokens from %d, want 4 from the prompt", out.TokensPredicted, out.TokensEvaluated)
	}

	log := p.Log()
	// The weights as mapped from the file (llama-server may also repack them for the
	// CPU's SIMD kernels, a second copy a GPU does not make).
	weights := lastMiB(t, log, regexp.MustCompile(`CPU_Mapped model buffer size =\s+([\d.]+) MiB`))
	kv := lastMiB(t, log, regexp.MustCompile(`KV buffer size =\s+([\d.]+) MiB`))
	if weights == 0 || kv == 0 {
		t.Fatalf("llama-server logged no model or KV buffer sizes:\n%s", log)
	}
	est, err := EstimateVRAM(path, ctxPerSlot, slots, -1)
	if err != nil {
		t.Fatal(err)
	}
	const mib = 1 << 20
	t.Logf("%s Q4_0: weights %.1f MiB (estimate %.1f), KV %.1f MiB (estimate %.1f)", shape,
		weights, float64(est.WeightsBytes)/mib, kv, float64(est.KVCacheBytes)/mib)
	if d := math.Abs(float64(est.WeightsBytes)/mib-weights) / weights; d > 0.02 {
		t.Errorf("weights: llama-server %.1f MiB, estimate %.1f MiB (%.1f%% apart)", weights, float64(est.WeightsBytes)/mib, 100*d)
	}
	if d := math.Abs(float64(est.KVCacheBytes)/mib-kv) / kv; d > 0.02 {
		t.Errorf("KV cache: llama-server %.1f MiB, estimate %.1f MiB (%.1f%% apart)", kv, float64(est.KVCacheBytes)/mib, 100*d)
	}
	shapeEst, err := EstimateShape(ModelShape{Layers: 24, Heads: 14, KVHeads: 2, HeadDim: 64, Embedding: 896, Vocab: 151936,
		WeightsBytes: est.WeightsBytes}, ctxPerSlot, slots, -1)
	if err != nil {
		t.Fatal(err)
	}
	if shapeEst.KVCacheBytes != est.KVCacheBytes {
		t.Errorf("KV: catalog-shape estimate %d bytes, GGUF estimate %d", shapeEst.KVCacheBytes, est.KVCacheBytes)
	}
}
