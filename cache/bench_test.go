package cache_test

import (
	"context"
	"io"
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

func BenchmarkSemanticMiss(b *testing.B) {
	s, err := cache.New(&storetest.Scripted{}, cache.Options{Store: cache.NewMemory(cache.StoreOptions{}), Semantic: true, Queue: 1})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	sys := "You are a concise assistant for a travel company. Answer in one short sentence."
	var es []*cache.Entry
	for i := 0; i < 10000; i++ {
		r := storetest.Request("t", sys, "What is the capital of France, and which river flows through it? (#"+itoa(i)+")", false)
		k, sc, q, _ := s.Describe("m", r)
		es = append(es, &cache.Entry{Key: k, Scope: sc, Tenant: "t", Model: "m", Kind: models.KindChat, Question: q,
			Answer: cache.Answer{Role: "assistant", Text: "Paris " + itoa(i), FinishReason: "stop"}, Created: now, Expires: now.Add(time.Hour)})
	}
	if err := s.Preload(ctx, es...); err != nil {
		b.Fatal(err)
	}
	go s.Run(ctx) // the writer Flush waits for
	reqs := make([]*models.Request, 1000)
	for i := range reqs {
		reqs[i] = storetest.Request("t", sys, "What is the capital of France, and which river flows through it? (#"+itoa(20000+i)+")", false)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := reqs[i%len(reqs)]
		r.Trace = models.Trace{}
		st, _ := s.Open(ctx, models.Target{Model: "m"}, r)
		st.Close()
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}

// oneChunk answers at once with one chunk and a finish reason.
type oneChunk struct{}

func (oneChunk) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return &oneStream{}, nil
}

type oneStream struct{ i int }

func (s *oneStream) Recv() (models.Chunk, error) {
	s.i++
	switch s.i {
	case 1:
		return models.Chunk{Role: "assistant", Text: "Paris, on the Seine."}, nil
	case 2:
		return models.Chunk{FinishReason: "stop"}, nil
	}
	return models.Chunk{}, io.EOF
}
func (s *oneStream) Usage() models.Usage { return models.Usage{PromptTokens: 30, CompletionTokens: 6} }
func (s *oneStream) Close() error        { return nil }

// BenchmarkMissPath is the request path of a cacheable miss: key, store lookup, the
// question's facts, the engine's answer kept (stored by a running writer).
func BenchmarkMissPath(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchMiss(b, cache.NewMemory(cache.StoreOptions{MaxEntries: 100000})) })
	b.Run("bolt", func(b *testing.B) {
		st, err := cache.OpenBolt(b.TempDir()+"/c.db", cache.StoreOptions{MaxEntries: 100000})
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		benchMiss(b, st)
	})
}

func benchMiss(b *testing.B, store cache.Store) {
	s, err := cache.New(oneChunk{}, cache.Options{Store: store, Semantic: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	sys := "You are a concise assistant for a travel company. Answer in one short sentence and do not add any greeting."
	reqs := make([]*models.Request, 4096)
	for i := range reqs {
		reqs[i] = storetest.Request("t", sys, "What is the capital of France, and which river flows through it? Ticket #"+itoa(1000000+i), false)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := reqs[i%len(reqs)]
		r.Trace = models.Trace{}
		r.Cache = models.CacheNoRead // every one a miss, as in the gateway benchmark
		st, _ := s.Open(ctx, models.Target{Model: "m"}, r)
		for {
			if _, err := st.Recv(); err != nil {
				break
			}
		}
		st.Close()
	}
	if err := s.Flush(ctx); err != nil {
		b.Fatal(err)
	}
}
