package cache_test

import (
	"context"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/internal/enginetest"
)

type countingTransport struct {
	n atomic.Int32
	t http.RoundTripper
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.t.RoundTrip(r)
}

// TestEngineEmbedder embeds through a real llama-server started with --embeddings:
// concurrent callers share batched requests, vectors are unit length and stable.
func TestEngineEmbedder(t *testing.T) {
	// One slot: with two, llama-server sometimes places a text on a slot that keeps the
	// previous text's first token (slot choice by common prefix), and the tiny random
	// model's pooled vector then moves far (cosine 0.70 seen) - the engine's numerics,
	// not the embedder's batching, which this test is about.
	p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Embedding: true, Slots: 1, Ctx: 1024})
	tr := &countingTransport{t: http.DefaultTransport}
	e, err := cache.NewEngine(cache.EngineOptions{URL: p.URL + "/v1", Model: "tiny-embed", Window: 50 * time.Millisecond,
		Client: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	texts := []string{"How do I reset my password?", "Where is my parcel?", "What are your opening hours?", "Do you ship to Spain?",
		"Can I pay by card?", "How do I cancel an order?", "Is there a student discount?", "How do I contact support?"}
	out := make([][]float32, len(texts))
	var wg sync.WaitGroup
	for i := range texts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs, err := e.Embed(ctx, []string{texts[i]})
			if err != nil {
				t.Error(err)
				return
			}
			out[i] = vs[0]
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if n := tr.n.Load(); n >= int32(len(texts)) {
		t.Errorf("%d requests for %d concurrent texts: not batched", n, len(texts))
	}
	if e.Dim() == 0 {
		t.Fatal("dimension unknown after embedding")
	}
	for i, v := range out {
		var s float64
		for _, x := range v {
			s += float64(x) * float64(x)
		}
		if len(v) != e.Dim() || math.Abs(s-1) > 1e-3 {
			t.Fatalf("vector %d: dim %d, norm² %v", i, len(v), s)
		}
	}
	again, err := e.Embed(ctx, []string{texts[0], texts[1]})
	if err != nil {
		t.Fatal(err)
	}
	// The same text, in another batch: the engine's numerics may differ slightly.
	var cos float64
	for j := range again[0] {
		cos += float64(again[0][j]) * float64(out[0][j])
	}
	if cos < 0.99 {
		t.Fatalf("the same text embedded twice: cosine %v", cos)
	}
	if _, err := (&cache.Engine{}).Embed(ctx, nil); err != nil {
		t.Fatal(err)
	}
}

// TestEngineEmbedderDown: an engine that does not answer is an error (the stage counts
// it as a miss).
func TestEngineEmbedderDown(t *testing.T) {
	e, err := cache.NewEngine(cache.EngineOptions{URL: "http://127.0.0.1:" + itoa(enginetest.FreePort(t)) + "/v1", Model: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Embed(context.Background(), []string{"hi"}); err == nil {
		t.Fatal("no error from an engine that is not there")
	}
}
