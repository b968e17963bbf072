package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cache/storetest"
	"github.com/sluice-llm/sluice/models"
)

func BenchmarkExactHit(b *testing.B) {
	s, err := cache.New(&storetest.Scripted{}, cache.Options{Store: cache.NewMemory(cache.StoreOptions{})})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	r := storetest.Request("t", "You are a concise assistant for a travel company. Answer in one short sentence.", "What is the capital of France, and which river flows through it?", false)
	k, sc, q, err := s.Describe("m", r)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	if err := s.Preload(ctx, &cache.Entry{Key: k, Scope: sc, Tenant: "t", Model: "m", Kind: models.KindChat, Question: q,
		Answer: cache.Answer{Role: "assistant", Text: "Paris, on the Seine.", FinishReason: "stop"}, Created: now, Expires: now.Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.Trace = models.Trace{}
		st, _ := s.Open(ctx, models.Target{Model: "m"}, r)
		st.Close()
	}
	if r.Trace.Cache != cache.ResultHitExact {
		b.Fatal(r.Trace.Cache)
	}
}
