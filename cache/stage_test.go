package cache_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cache/storetest"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/internal/redistest"
	"github.com/sluice-llm/sluice/models"
)

// stageOver runs a cache stage over store and next until the test ends.
func stageOver(t *testing.T, store cache.Store, next cache.Opener, o cache.Options) (*cache.Stage, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Store, o.Registry = store, reg
	s, err := cache.New(next, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, reg
}

func open(t *testing.T, s *cache.Stage, r *models.Request) (models.Stream, []models.Chunk) {
	t.Helper()
	st, err := s.Open(context.Background(), models.Target{Model: "m", Backend: "local"}, r)
	if err != nil {
		t.Fatal(err)
	}
	var cs []models.Chunk
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, cs
}

func TestReplay(t *testing.T) {
	next := &storetest.Scripted{}
	s, _ := stageOver(t, cache.NewMemory(cache.StoreOptions{}), next, cache.Options{Semantic: true})
	r := storetest.Request("acme", "sys", "Where is my parcel?", false)
	open(t, s, r)
	if r.Trace.Cache != cache.ResultMiss {
		t.Fatalf("first: %q", r.Trace.Cache)
	}
	r = storetest.Request("acme", "sys", "Where is my parcel?", false)
	st, cs := open(t, s, r)
	if r.Trace.Cache != cache.ResultHitExact || len(cs) != 1 || cs[0].Role != "assistant" || cs[0].FinishReason != "stop" ||
		cs[0].Text != "tenant=acme question=Where is my parcel?" || cs[0].Format != models.FormatNone {
		t.Fatalf("whole hit: %q %+v", r.Trace.Cache, cs)
	}
	u := st.Usage()
	if u.PromptTokens != 10 || u.CompletionTokens != 5 || u.Cost.Total() != 0 || u.Cost.Avoided < 0.0299 || u.Cost.Avoided > 0.0301 {
		t.Fatalf("hit usage %+v", u)
	}
	if tg := st.(interface{ Target() models.Target }).Target(); tg.Backend != cache.BackendName || tg.Model != "m" {
		t.Fatalf("hit target %+v", tg)
	}
	r = storetest.Request("acme", "sys", "Where is my parcel?", true)
	_, cs = open(t, s, r)
	if len(cs) != 2 || cs[0].Role != "assistant" || cs[0].Text == "" || cs[1].FinishReason != "stop" || cs[1].Text != "" {
		t.Fatalf("streamed hit: %+v", cs)
	}
	if next.Calls != 1 {
		t.Fatalf("the engine was asked %d times, want 1", next.Calls)
	}
}

func TestDirectives(t *testing.T) {
	next := &storetest.Scripted{}
	s, reg := stageOver(t, cache.NewMemory(cache.StoreOptions{}), next, cache.Options{Disabled: []string{"off"}})
	q := "Where is my parcel?"
	open(t, s, storetest.Request("acme", "sys", q, false))

	r := storetest.Request("acme", "sys", q, false)
	r.Cache = models.CacheNoRead
	open(t, s, r)
	if r.Trace.Cache != cache.ResultMiss || next.Calls != 2 {
		t.Fatalf("no-cache: %q, %d calls", r.Trace.Cache, next.Calls)
	}
	r = storetest.Request("acme", "sys", q, false)
	r.Cache = models.CacheNoStore
	open(t, s, r)
	if r.Trace.Cache != cache.ResultBypass || next.Calls != 3 {
		t.Fatalf("no-store: %q", r.Trace.Cache)
	}
	r = storetest.Request("acme", "sys", q, false)
	r.Key = &models.Key{ID: "k", NoCache: true}
	if open(t, s, r); r.Trace.Cache != cache.ResultBypass {
		t.Fatalf("key without cache: %q", r.Trace.Cache)
	}
	hot := 0.9
	r = storetest.Request("acme", "sys", "new question", false)
	r.Sampling.Temperature = &hot
	if open(t, s, r); r.Trace.Cache != cache.ResultBypass {
		t.Fatalf("temperature 0.9: %q", r.Trace.Cache)
	}
	r = storetest.Request("acme", "sys", "new question", false)
	r.Sampling.Temperature = &hot
	r.Cache = models.CacheForce
	if open(t, s, r); r.Trace.Cache != cache.ResultMiss {
		t.Fatalf("force: %q", r.Trace.Cache)
	}
	r = storetest.Request("acme", "sys", "new question", false)
	r.Sampling.Temperature = &hot
	r.Cache = models.CacheForce
	if open(t, s, r); r.Trace.Cache != cache.ResultHitExact {
		t.Fatalf("forced again: %q", r.Trace.Cache)
	}
	r = storetest.Request("acme", "sys", "no temperature", false)
	r.Sampling.Temperature = nil
	if open(t, s, r); r.Trace.Cache != cache.ResultBypass {
		t.Fatalf("engine-default temperature: %q", r.Trace.Cache)
	}
	seed := int64(7)
	r.Sampling.Seed = &seed
	r.Trace = models.Trace{}
	if open(t, s, r); r.Trace.Cache != cache.ResultMiss {
		t.Fatalf("a seed makes it deterministic: %q", r.Trace.Cache)
	}
	st, err := s.Open(context.Background(), models.Target{Model: "off"}, storetest.Request("acme", "sys", q, false))
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if v := testutil.ToFloat64(mustVec(t, reg, "sluice_cache_requests_total", "bypass", "off")); v != 1 {
		t.Fatalf("disabled model bypasses: %v", v)
	}
}

func mustVec(t *testing.T, reg *prometheus.Registry, name, result, reason string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["result"] == result && labels["reason"] == reason {
				return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "x", Help: "x"}, func() float64 { return m.GetCounter().GetValue() })
			}
		}
	}
	t.Fatalf("%s{result=%q,reason=%q} not found", name, result, reason)
	return nil
}

// chunks is a next stage answering with fixed chunks (and an optional error).
type chunks struct {
	cs  []models.Chunk
	err error
}

func (c *chunks) Open(context.Context, models.Target, *models.Request) (models.Stream, error) {
	return &chunkStream{cs: c.cs, err: c.err}, nil
}

type chunkStream struct {
	cs  []models.Chunk
	i   int
	err error
}

func (s *chunkStream) Recv() (models.Chunk, error) {
	if s.i >= len(s.cs) {
		if s.err != nil {
			return models.Chunk{}, s.err
		}
		return models.Chunk{}, io.EOF
	}
	s.i++
	return s.cs[s.i-1], nil
}
func (s *chunkStream) Usage() models.Usage { return models.Usage{PromptTokens: 3, CompletionTokens: 2} }
func (s *chunkStream) Close() error        { return nil }

func TestOnlyWholeAnswersAreKept(t *testing.T) {
	for _, tc := range []struct {
		name string
		next *chunks
		cut  bool // the client stops reading before the end
	}{
		{"length", &chunks{cs: []models.Chunk{{Text: "a"}, {FinishReason: "length"}}}, false},
		{"no finish", &chunks{cs: []models.Chunk{{Text: "a"}}}, false},
		{"engine error", &chunks{cs: []models.Chunk{{Text: "a"}}, err: errors.New("engine died")}, false},
		{"client gone", &chunks{cs: []models.Chunk{{Text: "a"}, {Text: "b"}, {FinishReason: "stop"}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := cache.NewMemory(cache.StoreOptions{})
			s, _ := stageOver(t, store, tc.next, cache.Options{})
			st, err := s.Open(context.Background(), models.Target{Model: "m"}, storetest.Request("t", "s", "q", true))
			if err != nil {
				t.Fatal(err)
			}
			for {
				_, err := st.Recv()
				if err != nil || tc.cut {
					break
				}
			}
			st.Close()
			if err := s.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if store.Len() != 0 {
				t.Fatal("an incomplete answer was stored")
			}
		})
	}
}

func TestStreamedToolCalls(t *testing.T) {
	next := &chunks{cs: []models.Chunk{
		{Role: "assistant", ToolCalls: []byte(`[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]`)},
		{ToolCalls: []byte(`[{"index":0,"function":{"arguments":"{\"city\":"}}]`)},
		{ToolCalls: []byte(`[{"index":0,"function":{"arguments":"\"Paris\"}"}}]`)},
		{FinishReason: "tool_calls"},
	}}
	s, _ := stageOver(t, cache.NewMemory(cache.StoreOptions{}), next, cache.Options{})
	open(t, s, storetest.Request("t", "s", "weather in Paris?", true))
	r := storetest.Request("t", "s", "weather in Paris?", false)
	_, cs := open(t, s, r)
	want := `[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]`
	if r.Trace.Cache != cache.ResultHitExact || len(cs) != 1 || string(cs[0].ToolCalls) != want || cs[0].FinishReason != "tool_calls" {
		t.Fatalf("whole replay of streamed tool calls: %q %+v", r.Trace.Cache, cs)
	}
	r = storetest.Request("t", "s", "weather in Paris?", true)
	_, cs = open(t, s, r)
	if len(cs) != 2 || !strings.HasPrefix(string(cs[0].ToolCalls), `[{"index":0,"id":"call_1"`) {
		t.Fatalf("streamed replay of tool calls: %+v", cs)
	}
}

// TestFailOpen: when the shared store goes away, requests go on as misses.
func TestFailOpen(t *testing.T) {
	srv := redistest.Start(t)
	store, err := cache.OpenRedis(context.Background(), cache.RedisOptions{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	next := &storetest.Scripted{}
	s, reg := stageOver(t, store, next, cache.Options{Semantic: true})
	open(t, s, storetest.Request("t", "s", "q", false))
	srv.Kill()
	r := storetest.Request("t", "s", "q", false)
	_, cs := open(t, s, r)
	if r.Trace.Cache != cache.ResultMiss || len(cs) == 0 || next.Calls != 2 {
		t.Fatalf("with the store down: %q, %d chunks, %d engine calls", r.Trace.Cache, len(cs), next.Calls)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "sluice_cache_errors_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "get" && m.GetCounter().GetValue() > 0 {
					found = true
				}
			}
		}
	}
	if !found {
		t.Fatal("no sluice_cache_errors_total{op=\"get\"}")
	}
}

// TestEngineEmbedderStage: the semantic lookup through a real engine's embeddings;
// stored entries carry their vectors.
func TestEngineEmbedderStage(t *testing.T) {
	p := enginetest.StartLlamaServer(t, enginetest.LlamaOptions{Embedding: true, Slots: 1, Ctx: 512})
	e, err := cache.NewEngine(cache.EngineOptions{URL: p.URL + "/v1", Model: "tiny-embed"})
	if err != nil {
		t.Fatal(err)
	}
	store := cache.NewMemory(cache.StoreOptions{})
	// The tiny model's vectors carry no meaning: a low threshold lets the paraphrase
	// through to the guards, which is what this test is about.
	s, _ := stageOver(t, store, &storetest.Scripted{}, cache.Options{Semantic: true, Embedder: e, Threshold: 0.01})
	open(t, s, storetest.Request("t", "s", "How do I reset my password?", false))
	var stored *cache.Entry
	_ = store.Scan(context.Background(), func(e *cache.Entry) bool { stored = e; return false })
	if stored == nil || len(stored.Vector) != e.Dim() || stored.EmbedderID != "engine:tiny-embed" {
		t.Fatalf("stored entry: %+v", stored)
	}
	r := storetest.Request("t", "s", "How can I reset my password?", false)
	_, cs := open(t, s, r)
	if r.Trace.Cache != cache.ResultHitSemantic || !strings.Contains(cs[0].Text, "How do I reset my password?") {
		t.Fatalf("paraphrase: %q %+v", r.Trace.Cache, cs)
	}
	r = storetest.Request("t", "s", "How do I reset my router?", false)
	if open(t, s, r); r.Trace.Cache != cache.ResultMiss {
		t.Fatalf("router vs password: %q", r.Trace.Cache)
	}
}

// TestIndexFollowsStore: entries the store evicts leave the semantic index, and expired
// ones are swept out of it.
func TestIndexFollowsStore(t *testing.T) {
	clk := storetest.NewClock()
	store := cache.NewMemory(cache.StoreOptions{MaxEntries: 2, Now: clk.Now})
	s, _ := stageOver(t, store, &storetest.Scripted{}, cache.Options{Semantic: true, Now: clk.Now, TTL: time.Minute})
	for _, q := range []string{"Where is my parcel?", "How do I reset my password?", "What are your opening hours?"} {
		open(t, s, storetest.Request("t", "s", q, false))
	}
	if n := s.Index().Len(); n != 2 {
		t.Fatalf("index holds %d entries, the store 2", n)
	}
	clk.Advance(2 * time.Minute)
	if n := s.Index().Sweep(clk.Now()); n != 2 || s.Index().Len() != 0 {
		t.Fatalf("swept %d, %d left", n, s.Index().Len())
	}
}

// TestLongQuestionsMatchExactly: a question over MaxQuestionBytes is matched exactly
// only: asked again it hits, reworded it misses (where an unbounded stage matches it
// semantically), and its entry is stored without the question text.
func TestLongQuestionsMatchExactly(t *testing.T) {
	q := "Please explain, step by step and with an example, how I reset the password of my account on the web site"
	reworded := "Please explain, step by step and with an example, how I reset the password of my account on the website"
	for _, tc := range []struct {
		max  int
		want string
	}{{-1, cache.ResultHitSemantic}, {64, cache.ResultMiss}} {
		next := &storetest.Scripted{}
		mem := cache.NewMemory(cache.StoreOptions{})
		s, _ := stageOver(t, mem, next, cache.Options{Semantic: true, MaxQuestionBytes: tc.max})
		open(t, s, storetest.Request("acme", "sys", q, false))
		r := storetest.Request("acme", "sys", q, false)
		if open(t, s, r); r.Trace.Cache != cache.ResultHitExact {
			t.Fatalf("max %d: asked again: %q", tc.max, r.Trace.Cache)
		}
		r = storetest.Request("acme", "sys", reworded, false)
		if open(t, s, r); r.Trace.Cache != tc.want {
			t.Fatalf("max %d: reworded: %q, want %q", tc.max, r.Trace.Cache, tc.want)
		}
		k, _, _, err := s.Describe("m", storetest.Request("acme", "sys", q, false))
		if err != nil {
			t.Fatal(err)
		}
		e, err := mem.Get(context.Background(), k)
		if err != nil || e == nil {
			t.Fatalf("max %d: stored entry: %v, %v", tc.max, e, err)
		}
		if stored := e.Question != ""; stored != (tc.max < 0) {
			t.Fatalf("max %d: question stored: %v", tc.max, stored)
		}
	}
}

// TestSemanticHitOfKeptAnalysis: a non-streamed miss whose lookup analysed its question
// (the scope had entries) is indexed from that analysis, and its paraphrase then hits it;
// a streamed one is analysed again when stored, and hits the same way.
func TestSemanticHitOfKeptAnalysis(t *testing.T) {
	for _, stream := range []bool{false, true} {
		s, _ := stageOver(t, cache.NewMemory(cache.StoreOptions{}), &storetest.Scripted{}, cache.Options{Semantic: true})
		open(t, s, storetest.Request("t", "s", "How do I reset my password?", stream)) // the scope's first
		r := storetest.Request("t", "s", "Where can I download the invoice for my order?", stream)
		if open(t, s, r); r.Trace.Cache != cache.ResultMiss {
			t.Fatalf("stream %v: second question: %q", stream, r.Trace.Cache)
		}
		r = storetest.Request("t", "s", "Where do I download the invoice for my order?", stream)
		_, cs := open(t, s, r)
		var text strings.Builder
		for _, c := range cs {
			text.WriteString(c.Text)
		}
		if r.Trace.Cache != cache.ResultHitSemantic || !strings.Contains(text.String(), "question=Where can I download") {
			t.Fatalf("stream %v: paraphrase: %q %+v", stream, r.Trace.Cache, cs)
		}
	}
}
