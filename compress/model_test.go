package compress

import (
	"context"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/internal/enginetest"
)

// TestLlamaScorer scores words through a real llama-server's /completion (n_probs):
// every word gets a finite, positive surprisal, and the compressor uses them.
func TestLlamaScorer(t *testing.T) {
	eng := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Slots: 2})
	sc := &LlamaScorer{URL: eng.URL, TopK: 10, MaxWords: 64, Timeout: 60 * time.Second, Client: &http.Client{}}
	text := "The quick brown fox jumps over the lazy dog near the river bank."
	var spans [][2]int32
	var texts []string
	for i := 0; i < len(text); {
		for i < len(text) && text[i] == ' ' {
			i++
		}
		s := i
		for i < len(text) && text[i] != ' ' {
			i++
		}
		spans = append(spans, [2]int32{int32(s), int32(i)})
		texts = append(texts, text)
	}
	bits := make([]float32, len(spans))
	if !sc.Bits(context.Background(), texts, spans, bits) {
		t.Fatal("scorer failed against a live llama-server")
	}
	for i, b := range bits {
		if math.IsNaN(float64(b)) || math.IsInf(float64(b), 0) || b < 0 {
			t.Errorf("word %q: %v bits", text[spans[i][0]:spans[i][1]], b)
		}
	}
	// The compressor runs with it, and without an engine falls back to the LM.
	c := newTestCompressor(t)
	q := "When was the Thames Barrier completed?"
	cs := &countingScorer{s: sc}
	res := c.Compress(context.Background(), []Part{{Text: ragContext}, {Text: q, Fixed: true}}, q, Budget{Ratio: 2}, cs)
	if !res.Changed || !strings.Contains(res.Texts[0], "1982") {
		t.Errorf("model mode: %q", res.Texts[0])
	}
	if cs.scored == 0 {
		t.Errorf("the compressor did not use the model's scores")
	}
	down := &LlamaScorer{URL: "http://127.0.0.1:1", TopK: 10, MaxWords: 64, Timeout: time.Second, Client: &http.Client{}}
	res2 := c.Compress(context.Background(), []Part{{Text: ragContext}, {Text: q, Fixed: true}}, q, Budget{Ratio: 2}, down)
	res3 := c.Compress(context.Background(), []Part{{Text: ragContext}, {Text: q, Fixed: true}}, q, Budget{Ratio: 2}, nil)
	if res2.Texts[0] != res3.Texts[0] {
		t.Errorf("an unreachable engine did not fall back to the word model")
	}
}

func TestCompletionProb(t *testing.T) {
	p := func(v float64) *float64 { return &v }
	c := completion{Probs: []position{{TopLogProbs: []candidate{
		{Token: " ri", LogProb: p(math.Log(0.5))}, {Token: " river", LogProb: p(math.Log(0.25))}, {Token: "x", LogProb: p(math.Log(0.1))},
	}}}}
	if got := c.prob("river", true); math.Abs(got-0.5) > 1e-9 {
		t.Errorf("river: %v", got)
	}
	if got := c.prob("lake", true); math.Abs(got-0.05) > 1e-9 {
		t.Errorf("unlisted word: %v, want half the least", got)
	}
	old := completion{Probs: []position{{Probs: []candidate{{TokStr: "▁dog", Prob: p(0.3)}}}}}
	if got := old.prob("dog", true); got != 0.3 {
		t.Errorf("old shape: %v", got)
	}
}

type countingScorer struct {
	s      WordScorer
	scored int
}

func (c *countingScorer) Bits(ctx context.Context, texts []string, spans [][2]int32, bits []float32) bool {
	ok := c.s.Bits(ctx, texts, spans, bits)
	for _, b := range bits {
		if !math.IsNaN(float64(b)) {
			c.scored++
		}
	}
	return ok
}
