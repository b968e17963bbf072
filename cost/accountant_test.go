package cost

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/models"
)

// TestAccountantWorkedExample is docs/gpu.md's example: an H100 at $2.69/h that serves one
// request for 2 s (0.5 s prefill) and idles 8 s.
func TestAccountantWorkedExample(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	m := NewMeter(2.69, c.now)
	a := NewAccountant(DefaultCloudPrices(), "gpt-4o", nil)
	a.AddEngine(Engine{Name: "local", GPU: "0:NVIDIA H100 80GB HBM3", Meter: m})
	job := a.Meters()["local"].Begin()
	c.add(500 * time.Millisecond)
	job.FirstToken()
	c.add(1500 * time.Millisecond)
	p, comp := job.End()
	u := models.Usage{PromptTokens: 1000, CompletionTokens: 500, Cost: models.Cost{Prompt: p, Completion: comp}}
	a.Record("local", "llama", &u)
	c.add(8 * time.Second)
	wantPrompt, wantComp := 2.69/3600*0.5, 2.69/3600*1.5
	if !near(u.Cost.Prompt, wantPrompt) || !near(u.Cost.Completion, wantComp) {
		t.Fatalf("cost = %+v", u.Cost)
	}
	if u.Cost.ReferenceModel != "gpt-4o" || !near(u.Cost.Reference, (1000*2.5+500*10)/1e6) {
		t.Fatalf("reference = %+v", u.Cost)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(a)
	want := `
# HELP sluice_cost_usd_total Hardware cost in US dollars by engine, GPU, model and phase (prompt, completion; idle has no model).
# TYPE sluice_cost_usd_total counter
sluice_cost_usd_total{engine="local",gpu="0:NVIDIA H100 80GB HBM3",model="",phase="idle"} 0.005977777777777778
sluice_cost_usd_total{engine="local",gpu="0:NVIDIA H100 80GB HBM3",model="llama",phase="completion"} 0.0011208333333333335
sluice_cost_usd_total{engine="local",gpu="0:NVIDIA H100 80GB HBM3",model="llama",phase="prompt"} 0.00037361111111111113
# HELP sluice_savings_usd Reference cloud cost minus marginal cost, since start (can fall: not a counter). Effective savings are in the ledger's reports.
# TYPE sluice_savings_usd gauge
sluice_savings_usd{model="llama",reference="gpt-4o"} 0.006005555555555556
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "sluice_cost_usd_total", "sluice_savings_usd"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "sluice_cost_per_million_tokens_usd"); err != nil || n != 3 {
		t.Fatalf("per-million series = %d, %v", n, err)
	}
	r := a.Reports()
	if len(r) != 1 || !near(r[0].PerMillionTokens, (wantPrompt+wantComp)/1500*1e6) {
		t.Fatalf("reports = %+v", r)
	}
}
