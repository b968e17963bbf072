package cost

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/models"
)

func TestClassFromName(t *testing.T) {
	for name, want := range map[string]string{
		"llama3.1:8b": ClassSmall, "Qwen2.5-72B-Instruct": ClassLarge, "mistral-7b-instruct-v0.3.Q4_K_M": ClassSmall,
		"llama-3.3-70b": ClassLarge, "smollm:135m": ClassSmall, "gemma2:27b": ClassLarge, "qwen2.5:0.5b": ClassSmall,
	} {
		if got, ok := ClassFromName(name); !ok || got != want {
			t.Errorf("%s: %q, %v; want %q", name, got, ok, want)
		}
	}
	for _, name := range []string{"tiny", "gpt-4o", "phi-3-mini-128k", "bge-m3"} {
		if got, ok := ClassFromName(name); ok {
			t.Errorf("%s: class %q from no size", name, got)
		}
	}
}

func TestPriceByClassAndKind(t *testing.T) {
	a := NewAccountant(DefaultCloudPrices(), "", map[string]string{"pinned": "claude-3-haiku"})
	a.SetClasses(map[string]string{"tiny": ClassSmall, "big": ClassLarge}, map[string]string{ClassSmall: "gpt-4o-mini", ClassLarge: "gpt-4o"}, ClassSmall)
	a.AddEngine(Engine{Name: "local", GPU: "cpu", Meter: NewMeter(0.05, nil), Pool: "box"})
	a.AddEngine(Engine{Name: "vllm", GPU: "priced", Meter: NewMeter(2, nil), Remote: true})
	a.AddEngine(Engine{Name: "openai", GPU: "cloud", PerToken: map[string]CloudPrice{"gpt-4o-mini": {0.15, 0.60}}})
	a.AddEngine(Engine{Name: "mystery", GPU: "unpriced", Unpriced: true})
	a.SetBox("box", 0.05, time.Now())

	// A small local model is compared with a small cloud model.
	if ref, _, _ := a.ReferenceFor("tiny"); ref != "gpt-4o-mini" {
		t.Errorf("tiny compared with %s", ref)
	}
	if ref, _, _ := a.ReferenceFor("big"); ref != "gpt-4o" {
		t.Errorf("big compared with %s", ref)
	}
	if ref, _, _ := a.ReferenceFor("pinned"); ref != "claude-3-haiku" {
		t.Errorf("an explicit reference is overridden: %s", ref)
	}
	u := models.Usage{PromptTokens: 1000, CompletionTokens: 500}
	// Asked for tiny by name, served locally, 2000 prompt tokens before compression.
	p := a.Price("tiny", models.Target{Model: "tiny", Backend: "local"}, &u, 2000, false)
	mini := CloudPrice{0.15, 0.60}
	if p.Pool != "box" || p.Unpriced || p.ReferenceModel != "gpt-4o-mini" || !near(p.Reference, mini.Of(2000, 500)) ||
		!near(p.RefCompressed, mini.Of(1000, 500)) || !near(p.ServedRef, p.RefCompressed) {
		t.Errorf("local by name: %+v", p)
	}
	// "auto" routed to tiny: the baseline is the default (large) reference.
	p = a.Price("auto", models.Target{Model: "tiny", Backend: "local"}, &u, 1000, false)
	if p.ReferenceModel != "gpt-4o" || p.ServedRefModel != "gpt-4o-mini" || p.Reference <= p.ServedRef {
		t.Errorf("routed: %+v", p)
	}
	// A cloud model billed per token.
	cu := models.Usage{PromptTokens: 1000, CompletionTokens: 500}
	a.Record("openai", "gpt-4o-mini", &cu)
	p = a.Price("auto", models.Target{Model: "gpt-4o-mini", Backend: "openai", UpstreamModel: "gpt-4o-mini"}, &cu, 1000, false)
	if !near(cu.Cost.Total(), mini.Of(1000, 500)) || p.Pool != "" || !near(p.Billed, cu.Cost.Total()) || !near(p.ServedRef, p.Billed) {
		t.Errorf("cloud: cost %+v priced %+v", cu.Cost, p)
	}
	// A remote box priced by the hour is a pool of its own.
	if p = a.Price("big", models.Target{Model: "big", Backend: "vllm"}, &u, 1000, false); p.Pool != "engine:vllm" {
		t.Errorf("remote hourly: %+v", p)
	}
	// An engine without a price: flagged, not zero.
	mu := models.Usage{PromptTokens: 10, CompletionTokens: 5}
	a.Record("mystery", "m", &mu)
	if p = a.Price("m", models.Target{Model: "m", Backend: "mystery"}, &mu, 10, false); !p.Unpriced || !mu.Cost.Unpriced {
		t.Errorf("unpriced: %+v %+v", p, mu.Cost)
	}
	// A cache hit saves the whole baseline.
	if p = a.Price("tiny", models.Target{Model: "tiny", Backend: "local"}, &u, 1000, true); p.Pool != "" || p.ServedRef != p.RefCompressed {
		t.Errorf("hit: %+v", p)
	}
	if pools := a.Pools(); len(pools) != 2 || pools["box"] != 0.05 || pools["engine:vllm"] != 2 {
		t.Errorf("pools = %v", pools)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	want := `
# HELP sluice_unpriced_requests_total Requests served by a target without a price (cost unknown, not zero).
# TYPE sluice_unpriced_requests_total counter
sluice_unpriced_requests_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_unpriced_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_box_cost_usd_total", "sluice_billed_usd_total"); err != nil || n != 2 {
		t.Fatalf("box and billed series: %d, %v", n, err)
	}
}

// TestPriceOfRefusedRequest: a request refused before any target took it (an unknown
// model, a rate limit, a full queue) has no backend: it cost nothing and is not an
// "unpriced" request (those went to a target whose price is unknown).
func TestPriceOfRefusedRequest(t *testing.T) {
	a := NewAccountant(DefaultCloudPrices(), "", nil)
	a.SetClasses(map[string]string{"tiny": ClassSmall}, map[string]string{ClassSmall: "gpt-4o-mini", ClassLarge: "gpt-4o"}, ClassSmall)
	a.AddEngine(Engine{Name: "local", GPU: "cpu", Meter: NewMeter(0.05, nil), Pool: "box"})
	var u models.Usage
	for _, tgt := range []models.Target{{}, {Model: "tiny", Candidates: []models.Candidate{{Backend: "local", Model: "tiny"}}}} {
		a.Record(tgt.Backend, tgt.Model, &u)
		if p := a.Price("tiny", tgt, &u, 0, false); p.Unpriced || p.Billed != 0 || p.Reference != 0 {
			t.Errorf("refused request (target %+v) priced %+v", tgt, p)
		}
	}
}
