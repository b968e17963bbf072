package storetest

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/models"
)

// Clock is a settable clock for expiry tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock starts at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Opener opens a fresh, empty store with the given options.
type Opener func(t *testing.T, o cache.StoreOptions) cache.Store

// Caps says what a store enforces itself.
type Caps struct {
	// Bounds: MaxEntries and MaxBytes with LRU eviction (Redis leaves it to maxmemory).
	Bounds bool
}

// Run runs the suite.
func Run(t *testing.T, open Opener, caps Caps) {
	t.Run("RoundTrip", func(t *testing.T) { roundTrip(t, open) })
	t.Run("Expiry", func(t *testing.T) { expiry(t, open) })
	t.Run("DeletePurge", func(t *testing.T) { deletePurge(t, open) })
	t.Run("Scan", func(t *testing.T) { scan(t, open) })
	if caps.Bounds {
		t.Run("Bounds", func(t *testing.T) { bounds(t, open) })
	}
	t.Run("Concurrent", func(t *testing.T) { concurrent(t, open) })
	t.Run("TenantIsolation", func(t *testing.T) { TenantIsolation(t, open) })
}

// Entry makes an entry for tenant, model and question with the given answer.
func Entry(tenant, model, question, answer string, now time.Time) *cache.Entry {
	e := &cache.Entry{Tenant: tenant, Model: model, Kind: models.KindChat, Question: question,
		Answer:  cache.Answer{Role: "assistant", Text: answer, FinishReason: "stop"},
		Usage:   models.Usage{PromptTokens: 12, CompletionTokens: 7, Cost: models.Cost{Prompt: 0.001, Completion: 0.002}},
		Created: now.Round(0), Expires: now.Add(time.Hour).Round(0)}
	e.Key = cache.TestKey(tenant, model, question)
	sk := cache.TestKey(tenant, model, "")
	e.Scope = cache.Scope(sk[8:24])
	return e
}

func roundTrip(t *testing.T, open Opener) {
	clk := NewClock()
	s := open(t, cache.StoreOptions{Now: clk.Now})
	ctx := context.Background()
	e := Entry("t1", "m", "what is sluice?", "a gateway", clk.Now())
	e.Vector = []float32{0.6, 0.8}
	e.EmbedderID = "engine:x"
	e.Answer.ToolCalls = []byte(`[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]`)
	if got, err := s.Get(ctx, e.Key); err != nil || got != nil {
		t.Fatalf("empty store: got %v, %v", got, err)
	}
	if err := s.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, e.Key)
	if err != nil || got == nil {
		t.Fatalf("get after put: %v, %v", got, err)
	}
	if !equal(got, e) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, e)
	}
	// replace
	e2 := *e
	e2.Answer.Text = "a fast gateway"
	if err := s.Put(ctx, &e2); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, e.Key); got == nil || got.Answer.Text != "a fast gateway" {
		t.Fatalf("replace: got %+v", got)
	}
	if n := s.Len(); n < 1 {
		t.Fatalf("Len %d", n)
	}
}

func equal(a, b *cache.Entry) bool {
	return a.Key == b.Key && a.Scope == b.Scope && a.Tenant == b.Tenant && a.Model == b.Model && a.Kind == b.Kind &&
		a.Question == b.Question && slices.Equal(a.Vector, b.Vector) && a.EmbedderID == b.EmbedderID &&
		a.Answer.Role == b.Answer.Role && a.Answer.Text == b.Answer.Text && string(a.Answer.ToolCalls) == string(b.Answer.ToolCalls) &&
		a.Answer.FinishReason == b.Answer.FinishReason && a.Usage == b.Usage && a.Created.Equal(b.Created) && a.Expires.Equal(b.Expires)
}

func expiry(t *testing.T, open Opener) {
	clk := NewClock()
	s := open(t, cache.StoreOptions{Now: clk.Now})
	ctx := context.Background()
	e := Entry("t1", "m", "q", "a", clk.Now())
	e.Expires = clk.Now().Add(time.Minute)
	if err := s.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	clk.Advance(59 * time.Second)
	if got, _ := s.Get(ctx, e.Key); got == nil {
		t.Fatal("entry gone before its expiry")
	}
	clk.Advance(2 * time.Second)
	if got, err := s.Get(ctx, e.Key); err != nil || got != nil {
		t.Fatalf("expired entry returned: %v, %v", got, err)
	}
	n := 0
	_ = s.Scan(ctx, func(*cache.Entry) bool { n++; return true })
	if n != 0 {
		t.Fatalf("scan returned %d expired entries", n)
	}
}

func deletePurge(t *testing.T, open Opener) {
	clk := NewClock()
	s := open(t, cache.StoreOptions{Now: clk.Now})
	ctx := context.Background()
	var all []*cache.Entry
	for _, tn := range []string{"t1", "t2", "t3"} {
		for _, m := range []string{"m1", "m2"} {
			for i := 0; i < 5; i++ {
				all = append(all, Entry(tn, m, fmt.Sprintf("q%d", i), tn+m, clk.Now()))
			}
		}
	}
	if err := s.Put(ctx, all...); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, all[0].Key); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, all[0].Key); got != nil {
		t.Fatal("deleted entry returned")
	}
	n, err := s.Purge(ctx, "t1", "")
	if err != nil || n != 9 {
		t.Fatalf("purge t1: %d, %v; want 9", n, err)
	}
	n, err = s.Purge(ctx, "", "m1")
	if err != nil || n != 10 {
		t.Fatalf("purge m1: %d, %v; want 10", n, err)
	}
	n, err = s.Purge(ctx, "t2", "m2")
	if err != nil || n != 5 {
		t.Fatalf("purge t2/m2: %d, %v; want 5", n, err)
	}
	for _, e := range all {
		got, _ := s.Get(ctx, e.Key)
		left := e.Tenant == "t3" && e.Model == "m2"
		if (got != nil) != left {
			t.Fatalf("%s/%s/%s: present %v, want %v", e.Tenant, e.Model, e.Question, got != nil, left)
		}
	}
}

func scan(t *testing.T, open Opener) {
	clk := NewClock()
	s := open(t, cache.StoreOptions{Now: clk.Now})
	ctx := context.Background()
	want := map[cache.Key]bool{}
	for i := 0; i < 300; i++ {
		e := Entry(fmt.Sprintf("t%d", i%7), "m", fmt.Sprintf("question %d", i), "a", clk.Now())
		want[e.Key] = true
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	got := map[cache.Key]bool{}
	if err := s.Scan(ctx, func(e *cache.Entry) bool { got[e.Key] = true; return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("scan: %d entries, want %d", len(got), len(want))
	}
	n := 0
	_ = s.Scan(ctx, func(*cache.Entry) bool { n++; return n < 10 })
	if n != 10 {
		t.Fatalf("scan did not stop when told: %d", n)
	}
}

func bounds(t *testing.T, open Opener) {
	clk := NewClock()
	var mu sync.Mutex
	var removed []cache.Key
	s := open(t, cache.StoreOptions{Now: clk.Now, MaxEntries: 10, OnRemove: func(ks []cache.Key) {
		mu.Lock()
		removed = append(removed, ks...)
		mu.Unlock()
	}})
	ctx := context.Background()
	var es []*cache.Entry
	for i := 0; i < 10; i++ {
		e := Entry("t", "m", fmt.Sprintf("q%d", i), "a", clk.Now())
		es = append(es, e)
		if err := s.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	// q0 is used: q1 is now the least recently used
	if got, _ := s.Get(ctx, es[0].Key); got == nil {
		t.Fatal("q0 missing")
	}
	if err := s.Put(ctx, Entry("t", "m", "q10", "a", clk.Now())); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, es[1].Key); got != nil {
		t.Fatal("the least recently used entry was not evicted")
	}
	if got, _ := s.Get(ctx, es[0].Key); got == nil {
		t.Fatal("a recently used entry was evicted")
	}
	if s.Len() != 10 {
		t.Fatalf("Len %d, want 10", s.Len())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(removed) != 1 || removed[0] != es[1].Key {
		t.Fatalf("OnRemove got %d keys, want q1's", len(removed))
	}
	// bytes
	s2 := open(t, cache.StoreOptions{Now: clk.Now, MaxBytes: 4000})
	for i := 0; i < 20; i++ {
		e := Entry("t", "m", fmt.Sprintf("q%d", i), strings.Repeat("x", 1000), clk.Now())
		if err := s2.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if n := s2.Len(); n > 4 || n < 1 {
		t.Fatalf("byte bound: %d entries of ~1 KB under 4 KB", n)
	}
}

func concurrent(t *testing.T, open Opener) {
	clk := NewClock()
	s := open(t, cache.StoreOptions{Now: clk.Now, MaxEntries: 1000})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				tn := fmt.Sprintf("t%d", g)
				e := Entry(tn, "m", fmt.Sprintf("q%d", i%20), tn, clk.Now())
				if err := s.Put(ctx, e); err != nil {
					t.Error(err)
					return
				}
				got, err := s.Get(ctx, e.Key)
				if err != nil {
					t.Error(err)
					return
				}
				if got != nil && got.Tenant != tn {
					t.Errorf("tenant %s read %s's entry", tn, got.Tenant)
				}
			}
		}()
	}
	wg.Wait()
}

// Scripted is the next stage in isolation tests: it answers every request with text
// that names the request's tenant and question, so a test can tell whose answer came
// back.
type Scripted struct {
	mu    sync.Mutex
	Calls int
}

// Open implements cache.Opener.
func (s *Scripted) Open(_ context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	s.mu.Lock()
	s.Calls++
	s.mu.Unlock()
	q := ""
	if n := len(r.Messages); n > 0 {
		q = r.Messages[n-1].Content
	}
	text := "tenant=" + r.Tenant + " question=" + q
	return &scriptedStream{chunks: []models.Chunk{{Role: "assistant", Text: text}, {FinishReason: "stop"}},
		usage: models.Usage{PromptTokens: 10, CompletionTokens: 5, Cost: models.Cost{Prompt: 0.01, Completion: 0.02}}}, nil
}

type scriptedStream struct {
	chunks []models.Chunk
	i      int
	usage  models.Usage
}

func (s *scriptedStream) Recv() (models.Chunk, error) {
	if s.i >= len(s.chunks) {
		return models.Chunk{}, io.EOF
	}
	s.i++
	return s.chunks[s.i-1], nil
}
func (s *scriptedStream) Usage() models.Usage { return s.usage }
func (s *scriptedStream) Close() error        { return nil }

// Request builds a chat request as the gateway would parse it.
func Request(tenant, system, question string, stream bool) *models.Request {
	temp := 0.0
	body := fmt.Sprintf(`{"model":"m","temperature":0,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`, system, question)
	return &models.Request{Kind: models.KindChat, Tenant: tenant, Model: "m", Stream: stream, Body: []byte(body),
		Messages: []models.Message{{Role: "system", Content: system}, {Role: "user", Content: question}},
		Sampling: models.Sampling{Temperature: &temp}}
}

// Drain reads a stream to its end and returns its text.
func Drain(t testing.TB, st models.Stream) string {
	t.Helper()
	var b strings.Builder
	for {
		c, err := st.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(c.Text)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TenantIsolation drives a cache stage over the store with random tenants asking
// overlapping and paraphrased questions: a hit must only ever return its own tenant's
// answer, exact or semantic.
func TenantIsolation(t *testing.T, open Opener) {
	clk := NewClock()
	st := open(t, cache.StoreOptions{Now: clk.Now})
	next := &Scripted{}
	c, err := cache.New(next, cache.Options{Store: st, Semantic: true, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// Questions in one group may answer each other; no others may.
	groups := [][]string{
		{"How do I reset my password?", "How can I reset my password?", "how do i reset my password"},
		{"What are your opening hours?", "When are you open?", "What are the opening hours of the shop?"},
		{"Can I get a refund for order 1234?"}, {"Can I get a refund for order 1243?"},
		{"How do I enable 2FA?"}, {"How do I disable 2FA?"},
		{"Where is my parcel?", "Where is my package?"}, {"How do I reset my router?"},
	}
	var questions []string
	group := map[string]int{}
	for i, g := range groups {
		for _, q := range g {
			questions = append(questions, q)
			group[q] = i
		}
	}
	tenants := []string{"acme", "globex", "initech", "umbrella", ""}
	r := rand.New(rand.NewPCG(42, uint64(time.Now().UnixNano())))
	hits := map[string]int{}
	for i := 0; i < 400; i++ {
		tn := tenants[r.IntN(len(tenants))]
		q := questions[r.IntN(len(questions))]
		req := Request(tn, "You are a support bot.", q, r.IntN(2) == 0)
		s, err := c.Open(ctx, models.Target{Model: "m"}, req)
		if err != nil {
			t.Fatal(err)
		}
		text := Drain(t, s)
		if !strings.HasPrefix(text, "tenant="+tn+" question=") {
			t.Fatalf("tenant %q asked %q and got %q (cache %s)", tn, q, text, req.Trace.Cache)
		}
		if req.Trace.Cache == cache.ResultHitExact && text != "tenant="+tn+" question="+q {
			t.Fatalf("exact hit with another question's answer: %q for %q", text, q)
		}
		if answered := strings.TrimPrefix(text, "tenant="+tn+" question="); group[answered] != group[q] {
			t.Fatalf("%q answered with the answer to %q (%s, similarity %.3f)", q, answered, req.Trace.Cache, req.Trace.CacheSimilarity)
		}
		hits[req.Trace.Cache]++
		if err := c.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if hits[cache.ResultHitExact] == 0 || hits[cache.ResultMiss] == 0 {
		t.Fatalf("the test did not exercise the cache: %v", hits)
	}
	t.Logf("results: %v", hits)
}
