package bookkeeping

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/models"
)

// TestRecordHook: what the gateway's hook writes for a local answer, a cloud answer, a
// cache hit and an unpriced engine.
func TestRecordHook(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.db")
	s, err := ledger.OpenSQLite(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	led, err := ledger.Open(ctx, s, ledger.Options{JournalDir: path + ".journal"})
	if err != nil {
		t.Fatal(err)
	}
	engines := []cost.Engine{
		{Name: "local", GPU: "cpu", Meter: cost.NewMeter(0.05, nil), Pool: "box"},
		{Name: "openai", GPU: "cloud", PerToken: map[string]cost.CloudPrice{"gpt-4o-mini": {Input: 0.15, Output: 0.60}}},
		{Name: "mystery", GPU: "cloud", PerToken: map[string]cost.CloudPrice{}},
	}
	acct := cost.NewAccountant(cost.DefaultCloudPrices(), "", nil)
	acct.SetClasses(map[string]string{"tiny": cost.ClassSmall}, map[string]string{cost.ClassSmall: "gpt-4o-mini", cost.ClassLarge: "gpt-4o"}, cost.ClassSmall)
	for _, e := range engines {
		acct.AddEngine(e)
	}
	hook := Record(acct, led, nil)
	key := &models.Key{ID: "key-a", Tenant: "acme"}
	send := func(id, model string, t2 models.Target, u models.Usage, cache string) {
		r := &models.Request{ID: id, Kind: models.KindChat, Model: model, Key: key, Tenant: "acme", User: "u", Feature: "f",
			Arrived: time.Now()}
		r.Trace.Cache, r.Trace.Status, r.Trace.Latency = cache, 200, 50*time.Millisecond
		hook(r, t2, &u)
	}
	send("local", "tiny", models.Target{Model: "tiny", Backend: "local"},
		models.Usage{PromptTokens: 100, CompletionTokens: 50, Cost: models.Cost{Prompt: 0.001, Completion: 0.002}}, "miss")
	send("cloud", "auto", models.Target{Model: "gpt-4o-mini", Backend: "openai", UpstreamModel: "gpt-4o-mini"},
		models.Usage{PromptTokens: 1000, CompletionTokens: 1000}, "")
	send("hit", "tiny", models.Target{Model: "tiny", Backend: "local"}, models.Usage{PromptTokens: 100, CompletionTokens: 50}, "hit-exact")
	send("unknown", "x", models.Target{Model: "x", Backend: "mystery", UpstreamModel: "x"}, models.Usage{PromptTokens: 5, CompletionTokens: 5}, "")
	if err := led.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := ledger.BuildReport(ctx, s, ledger.Query{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour), GroupBy: []string{"target"}})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]ledger.Row{}
	for _, r := range rep.Rows {
		rows[r.Group["target"]] = r
	}
	mini := cost.CloudPrice{Input: 0.15, Output: 0.60}
	near := func(a, b float64) bool { return a-b < 1e-12 && b-a < 1e-12 }
	// The local answer and the cache hit were both sent to "local"; the hit costs nothing
	// and saves its whole baseline.
	if l := rows["local"]; l.Requests != 2 || l.CacheHits != 1 || !near(l.CostUSD, 0.003) || !near(l.Savings.Cache, mini.Of(100, 50)) ||
		!near(l.ReferenceUSD, 2*mini.Of(100, 50)) {
		t.Errorf("local: %+v", l)
	}
	// The cloud answer is billed per token; "auto" is compared with the large reference
	// (gpt-4o), so routing to the small model saved the difference.
	c := rows["openai"]
	gpt4o := cost.DefaultCloudPrices()["gpt-4o"]
	if !near(c.BilledUSD, mini.Of(1000, 1000)) || !near(c.CostUSD, c.BilledUSD) || !near(c.Savings.Routing, gpt4o.Of(1000, 1000)-mini.Of(1000, 1000)) ||
		!near(c.Savings.Local, 0) {
		t.Errorf("cloud: %+v", c)
	}
	if u := rows["mystery"]; u.Unpriced != 1 || u.CostUSD != 0 || u.ReferenceUSD != 0 {
		t.Errorf("unpriced: %+v", u)
	}
}
