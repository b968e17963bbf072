package router

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// catalog: two local engines, an EU cloud and a US cloud, three tiers.
func tiered(t *testing.T, remote bool) *Router {
	t.Helper()
	r, err := NewWithOptions([]Entry{
		{Name: "tiny", Backend: "gpu1", Tier: "small", ContextWindow: 4096, Caps: CapTools | CapJSON},
		{Name: "tiny", Backend: "gpu2", Tier: "small", ContextWindow: 4096, Caps: CapTools | CapJSON},
		{Name: "mini-eu", UpstreamModel: "gpt-4o-mini", Backend: "cloud-eu", Region: "eu", Tier: "small", ContextWindow: 128000, InputPrice: 0.15, OutputPrice: 0.6, Caps: CapTools | CapJSON | CapVision},
		{Name: "mini-us", UpstreamModel: "gpt-4o-mini", Backend: "cloud-us", Region: "us", Tier: "small", ContextWindow: 128000, InputPrice: 0.1, OutputPrice: 0.4, Caps: CapJSON},
		{Name: "llama", Backend: "gpu2", Tier: "large", ContextWindow: 8192},
		{Name: "big", UpstreamModel: "gpt-4o", Backend: "cloud-us", Region: "us", Tier: "frontier", InputPrice: 2.5, OutputPrice: 10},
		{Name: "big", UpstreamModel: "gpt-4o", Backend: "cloud-eu", Region: "eu", Tier: "frontier", InputPrice: 2.5, OutputPrice: 10},
		{Name: "embed", Backend: "gpu1", Kind: "embedding", Tier: "small"},
	}, Options{Tiers: []string{"small", "large", "frontier"}, Auto: Auto{Threshold: 0.5}, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func backends(cs []models.Candidate) string {
	var b []string
	for _, c := range cs {
		b = append(b, c.Backend+"/"+c.Model)
	}
	return strings.Join(b, ",")
}

func chat(model string, k *models.Key) *models.Request {
	return &models.Request{Kind: models.KindChat, Model: model, Key: k,
		Messages: []models.Message{{Role: "user", Content: "hello"}}}
}

func TestRouteTiersAndResidency(t *testing.T) {
	r := tiered(t, true)
	ctx := context.Background()
	eu := &models.Key{Residency: models.ResidencyEU}
	local := &models.Key{Residency: models.ResidencyLocalOnly}
	tests := []struct {
		name       string
		req        *models.Request
		model      string
		cands, fbs string
	}{
		{"concrete, any", chat("tiny", nil), "tiny", "gpu1/tiny,gpu2/tiny",
			"cloud-us/mini-us,cloud-eu/mini-eu,gpu2/llama,cloud-us/big,cloud-eu/big"},
		{"concrete, eu", chat("tiny", eu), "tiny", "gpu1/tiny,gpu2/tiny", "cloud-eu/mini-eu,gpu2/llama,cloud-eu/big"},
		{"concrete, local-only", chat("tiny", local), "tiny", "gpu1/tiny,gpu2/tiny", "gpu2/llama"},
		{"a pool across regions, eu", chat("big", eu), "big", "cloud-eu/big", ""},
		{"a pool across regions, any", chat("big", nil), "big", "cloud-us/big,cloud-eu/big", ""},
		{"auto-large, eu", chat("auto-large", eu), "llama", "gpu2/llama", "cloud-eu/big"},
		{"tier header", &models.Request{Kind: models.KindChat, Model: "whatever", Tier: "frontier",
			Messages: []models.Message{{Role: "user", Content: "x"}}}, "big", "cloud-us/big,cloud-eu/big", ""},
		{"auto, simple prompt: weak tier", chat("auto", nil), "tiny", "gpu1/tiny,gpu2/tiny",
			"cloud-us/mini-us,cloud-eu/mini-eu,gpu2/llama,cloud-us/big,cloud-eu/big"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tgt, err := r.Route(ctx, tt.req)
			if err != nil {
				t.Fatal(err)
			}
			if tgt.Model != tt.model || backends(tgt.Candidates) != tt.cands || backends(tgt.Fallbacks) != tt.fbs {
				t.Fatalf("target = %s [%s] then [%s]; want %s [%s] then [%s]", tgt.Model, backends(tgt.Candidates),
					backends(tgt.Fallbacks), tt.model, tt.cands, tt.fbs)
			}
			if tt.req.Trace.Route == "" || !strings.Contains(tt.req.Trace.Route, "model="+tt.model) {
				t.Errorf("route = %q", tt.req.Trace.Route)
			}
		})
	}
}

func TestRouteAutoStrong(t *testing.T) {
	r := tiered(t, true)
	req := chat("auto", nil)
	req.Messages[0].Content = "Explain step by step, then prove the theorem: ```func f(x int) int { return x*x+1 }```"
	tgt, err := r.Route(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if tgt.Model != "llama" || tgt.Tier != "large" {
		t.Fatalf("auto on a hard prompt = %s (%s)", tgt.Model, tgt.Tier)
	}
	if !strings.HasPrefix(req.Trace.Route, "tier=large; model=llama; reason=auto: code; score=0.") {
		t.Errorf("route = %q", req.Trace.Route)
	}
}

func TestRouteRemoteOff(t *testing.T) {
	r := tiered(t, false)
	tgt, err := r.Route(context.Background(), chat("tiny", nil))
	if err != nil {
		t.Fatal(err)
	}
	if backends(tgt.Fallbacks) != "gpu2/llama" {
		t.Errorf("with overflow off a local model falls back locally only: %s", backends(tgt.Fallbacks))
	}
	// A model served only remotely is still reachable.
	if tgt, err := r.Route(context.Background(), chat("big", nil)); err != nil || tgt.Candidates[0].Backend != "cloud-us" {
		t.Errorf("remote-only model: %+v %v", tgt, err)
	}
}

func TestRouteFilters(t *testing.T) {
	r := tiered(t, true)
	ctx := context.Background()
	// Tools: models that declare capabilities without tools are skipped; undeclared pass.
	req := chat("tiny", nil)
	req.Tools = []byte(`[{"type":"function","function":{"name":"f"}}]`)
	tgt, _ := r.Route(ctx, req)
	if got := backends(tgt.Fallbacks); got != "cloud-eu/mini-eu,gpu2/llama,cloud-us/big,cloud-eu/big" {
		t.Errorf("tools fallbacks = %s", got)
	}
	// Images need vision.
	req = chat("auto-small", nil)
	req.Messages[0].Images = [][]byte{{1}}
	tgt, _ = r.Route(ctx, req)
	if tgt.Model != "mini-eu" {
		t.Errorf("vision request went to %s", tgt.Model)
	}
	// A long prompt skips models whose context is too small.
	req = chat("auto-small", nil)
	req.Messages[0].Content = strings.Repeat("word ", 5000) // ~6,250 tokens
	tgt, _ = r.Route(ctx, req)
	if tgt.Model != "mini-us" || backends(tgt.Fallbacks) != "cloud-eu/mini-eu,gpu2/llama,cloud-us/big,cloud-eu/big" {
		t.Errorf("long prompt: %s then %s", tgt.Model, backends(tgt.Fallbacks))
	}
	// Key lists.
	k := &models.Key{Models: []string{"tiny", "big"}}
	tgt, _ = r.Route(ctx, chat("tiny", k))
	if backends(tgt.Fallbacks) != "cloud-us/big,cloud-eu/big" {
		t.Errorf("key models: %s", backends(tgt.Fallbacks))
	}
	k = &models.Key{Tiers: []string{"small"}}
	tgt, _ = r.Route(ctx, chat("tiny", k))
	if backends(tgt.Fallbacks) != "cloud-us/mini-us,cloud-eu/mini-eu" {
		t.Errorf("key tiers: %s", backends(tgt.Fallbacks))
	}
}

func TestRouteErrors(t *testing.T) {
	r := tiered(t, true)
	ctx := context.Background()
	usOnly, _ := NewWithOptions([]Entry{{Name: "m", Backend: "c", Region: "us"}}, Options{Tiers: []string{"small"}})
	tests := []struct {
		name string
		r    *Router
		req  *models.Request
		kind error
		code string
	}{
		{"residency", usOnly, chat("m", &models.Key{Residency: models.ResidencyEU}), models.ErrForbidden, "residency_denied"},
		{"unknown policy fails closed", usOnly, chat("m", &models.Key{Residency: "mars"}), models.ErrForbidden, "residency_denied"},
		{"tier residency", usOnly, chat("auto", &models.Key{Residency: models.ResidencyLocalOnly}), models.ErrForbidden, "no_allowed_model"},
		{"unknown tier", r, chat("auto-huge", nil), models.ErrNotFound, "model_not_found"},
		{"model not on key", r, chat("tiny", &models.Key{Models: []string{"llama"}}), models.ErrForbidden, "model_not_allowed"},
		{"tier not on key", r, chat("llama", &models.Key{Tiers: []string{"small"}}), models.ErrForbidden, "tier_not_allowed"},
		{"forced tier not on key", r, chat("auto-frontier", &models.Key{Tiers: []string{"small"}}), models.ErrForbidden, "tier_not_allowed"},
		{"embeddings by tier", r, &models.Request{Kind: models.KindEmbedding, Model: "auto", Input: []string{"x"}}, models.ErrInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.r.Route(ctx, tt.req)
			var me *models.Error
			if !errors.Is(err, tt.kind) || !errors.As(err, &me) || me.Code != tt.code {
				t.Fatalf("err = %v (%+v)", err, me)
			}
		})
	}
	req := chat("tiny", nil)
	req.Tier = "gigantic"
	if _, err := r.Route(ctx, req); !errors.Is(err, models.ErrInvalid) {
		t.Errorf("bad tier header: %v", err)
	}
	plain, _ := New([]Entry{{Name: "m", Backend: "a"}})
	req = chat("m", nil)
	req.Tier = "small"
	if _, err := plain.Route(ctx, req); !errors.Is(err, models.ErrInvalid) {
		t.Errorf("tier header without tiers: %v", err)
	}
}

func TestEmbeddingsFallBackOnlyToTheSameModel(t *testing.T) {
	r, err := NewWithOptions([]Entry{
		{Name: "e1", Backend: "a", Kind: "embedding"},
		{Name: "e1", Backend: "b", Kind: "embedding"},
		{Name: "e2", Backend: "c", Kind: "embedding"},
	}, Options{Tiers: []string{"small"}, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	tgt, err := r.Route(context.Background(), &models.Request{Kind: models.KindEmbedding, Model: "e1", Input: []string{"x"}})
	if err != nil || backends(tgt.Candidates) != "a/e1,b/e1" || len(tgt.Fallbacks) != 0 {
		t.Fatalf("%+v %v", tgt, err)
	}
}

func TestModelsListsAutoNames(t *testing.T) {
	r := tiered(t, true)
	var ids []string
	for _, m := range r.Models() {
		ids = append(ids, m.ID)
	}
	got := strings.Join(ids, ",")
	if got != "auto,auto-frontier,auto-large,auto-small,big,embed,llama,mini-eu,mini-us,tiny" {
		t.Errorf("models = %s", got)
	}
}

func TestHeuristic(t *testing.T) {
	for _, tt := range []struct {
		text   string
		strong bool
	}{
		{"hi, what's the capital of France?", false},
		{"Thanks!", false},
		{"Write a Go function: ```go\nfunc sum(xs []int) int {}``` and explain step by step how to test it", true},
		{"Prove that the integral of 2x from 0 to 1 equals 1, step by step", true},
	} {
		req := chat("auto", nil)
		req.Messages[0].Content = tt.text
		s, why := Heuristic{}.Score(req)
		if (s >= 0.5) != tt.strong || why == "" {
			t.Errorf("%q: score %.2f (%s)", tt.text, s, why)
		}
	}
}

func BenchmarkRoute(b *testing.B) {
	r := tiered(&testing.T{}, true)
	ctx := context.Background()
	req := chat("tiny", &models.Key{Residency: models.ResidencyEU})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkHeuristic(b *testing.B) {
	req := chat("auto", nil)
	req.Messages[0].Content = strings.Repeat("Please explain how the scheduler works and compare it with others. ", 20)
	b.ReportAllocs()
	for b.Loop() {
		Heuristic{}.Score(req)
	}
}

func TestPoolRemoteCheapestFirst(t *testing.T) {
	r, err := NewWithOptions([]Entry{
		{Name: "m", Backend: "dear", Region: "eu", InputPrice: 3, OutputPrice: 9},
		{Name: "m", Backend: "cheap", Region: "us", InputPrice: 1, OutputPrice: 2},
		{Name: "m", Backend: "gpu"},
	}, Options{Tiers: []string{"small"}, Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	tgt, _ := r.Route(context.Background(), chat("m", nil))
	if got := backends(tgt.Candidates); got != "gpu/m,cheap/m,dear/m" {
		t.Errorf("pool order = %s", got)
	}
}
