package cost

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Engine is one engine's pricing: its meter and the hardware it runs on.
type Engine struct {
	Name  string
	GPU   string // label: GPU indexes and model ("0:NVIDIA H100 80GB HBM3"), or "cpu"
	Meter *Meter
}

// Accountant totals cost, tokens and savings per engine and model, and exports them.
type Accountant struct {
	cloud     map[string]CloudPrice
	reference string            // default reference model
	perModel  map[string]string // catalog model -> reference model

	mu      sync.Mutex
	engines map[string]Engine
	totals  map[key]*total

	descCost, descTokens, descPerM, descPrice, descRef, descSave *prometheus.Desc
}

type key struct{ engine, model string }

type total struct {
	promptTok, completionTok, cachedTok float64
	promptUSD, completionUSD            float64
	refUSD                              float64
	refModel                            string
}

// NewAccountant prices requests against cloud list prices; reference is the default
// cloud model to compare with and perModel overrides it per catalog model.
func NewAccountant(cloud map[string]CloudPrice, reference string, perModel map[string]string) *Accountant {
	return &Accountant{
		cloud: cloud, reference: reference, perModel: perModel,
		engines: map[string]Engine{}, totals: map[key]*total{},
		descCost: prometheus.NewDesc("sluice_cost_usd_total",
			"Hardware cost in US dollars by engine, GPU, model and phase (prompt, completion; idle has no model).",
			[]string{"engine", "gpu", "model", "phase"}, nil),
		descTokens: prometheus.NewDesc("sluice_tokens_total",
			"Tokens processed by engine, model and type (prompt, completion, cached).",
			[]string{"engine", "model", "type"}, nil),
		descPerM: prometheus.NewDesc("sluice_cost_per_million_tokens_usd",
			"Hardware cost per million tokens by engine, GPU, model and type (prompt, completion, total).",
			[]string{"engine", "gpu", "model", "type"}, nil),
		descPrice: prometheus.NewDesc("sluice_engine_price_usd_per_hour",
			"What an engine's hardware costs per hour.", []string{"engine", "gpu"}, nil),
		descRef: prometheus.NewDesc("sluice_reference_cost_usd_total",
			"What the same tokens would cost on the reference cloud model at list prices.",
			[]string{"model", "reference"}, nil),
		descSave: prometheus.NewDesc("sluice_savings_usd_total",
			"Reference cloud cost minus hardware cost.", []string{"model", "reference"}, nil),
	}
}

// AddEngine registers an engine's meter.
func (a *Accountant) AddEngine(e Engine) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.engines[e.Name] = e
}

// Meters returns the engines' meters keyed by engine name (for the scheduler).
func (a *Accountant) Meters() map[string]models.CostMeter {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := make(map[string]models.CostMeter, len(a.engines))
	for n, e := range a.engines {
		m[n] = e.Meter
	}
	return m
}

// ReferenceFor returns the reference cloud model for a catalog model.
func (a *Accountant) ReferenceFor(model string) (string, CloudPrice, bool) {
	ref := a.reference
	if r, ok := a.perModel[model]; ok {
		ref = r
	}
	p, ok := a.cloud[ref]
	return ref, p, ok
}

// Record adds a finished request (its usage already carries its hardware cost) and
// fills in what it would have cost on the reference model.
func (a *Accountant) Record(engine, model string, u *models.Usage) {
	if ref, p, ok := a.ReferenceFor(model); ok {
		u.Cost.ReferenceModel = ref
		u.Cost.Reference = p.Of(u.PromptTokens, u.CompletionTokens)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	k := key{engine, model}
	t := a.totals[k]
	if t == nil {
		t = &total{}
		a.totals[k] = t
	}
	t.promptTok += float64(u.PromptTokens)
	t.completionTok += float64(u.CompletionTokens)
	t.cachedTok += float64(u.CachedTokens)
	t.promptUSD += u.Cost.Prompt
	t.completionUSD += u.Cost.Completion
	t.refUSD += u.Cost.Reference
	if u.Cost.ReferenceModel != "" {
		t.refModel = u.Cost.ReferenceModel
	}
}

// Describe implements prometheus.Collector.
func (a *Accountant) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{a.descCost, a.descTokens, a.descPerM, a.descPrice, a.descRef, a.descSave} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *Accountant) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.engines {
		idle, _ := e.Meter.Totals()
		ch <- prometheus.MustNewConstMetric(a.descCost, prometheus.CounterValue, idle, e.Name, e.GPU, "", "idle")
		ch <- prometheus.MustNewConstMetric(a.descPrice, prometheus.GaugeValue, e.Meter.PerHour(), e.Name, e.GPU)
	}
	keys := make([]key, 0, len(a.totals))
	for k := range a.totals {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].engine+keys[i].model < keys[j].engine+keys[j].model })
	refs := map[string]*total{}
	for _, k := range keys {
		t := a.totals[k]
		gpu := a.engines[k.engine].GPU
		ch <- prometheus.MustNewConstMetric(a.descCost, prometheus.CounterValue, t.promptUSD, k.engine, gpu, k.model, "prompt")
		ch <- prometheus.MustNewConstMetric(a.descCost, prometheus.CounterValue, t.completionUSD, k.engine, gpu, k.model, "completion")
		ch <- prometheus.MustNewConstMetric(a.descTokens, prometheus.CounterValue, t.promptTok, k.engine, k.model, "prompt")
		ch <- prometheus.MustNewConstMetric(a.descTokens, prometheus.CounterValue, t.completionTok, k.engine, k.model, "completion")
		ch <- prometheus.MustNewConstMetric(a.descTokens, prometheus.CounterValue, t.cachedTok, k.engine, k.model, "cached")
		perM := func(usd, tok float64) float64 {
			if tok == 0 {
				return 0
			}
			return usd / tok * 1e6
		}
		ch <- prometheus.MustNewConstMetric(a.descPerM, prometheus.GaugeValue, perM(t.promptUSD, t.promptTok), k.engine, gpu, k.model, "prompt")
		ch <- prometheus.MustNewConstMetric(a.descPerM, prometheus.GaugeValue, perM(t.completionUSD, t.completionTok), k.engine, gpu, k.model, "completion")
		ch <- prometheus.MustNewConstMetric(a.descPerM, prometheus.GaugeValue, perM(t.promptUSD+t.completionUSD, t.promptTok+t.completionTok), k.engine, gpu, k.model, "total")
		if t.refModel != "" {
			r := refs[k.model+"\x00"+t.refModel]
			if r == nil {
				r = &total{refModel: t.refModel}
				refs[k.model+"\x00"+t.refModel] = r
			}
			r.refUSD += t.refUSD
			r.promptUSD += t.promptUSD + t.completionUSD
		}
	}
	for mk, r := range refs {
		model := mk[:len(mk)-len(r.refModel)-1]
		ch <- prometheus.MustNewConstMetric(a.descRef, prometheus.CounterValue, r.refUSD, model, r.refModel)
		ch <- prometheus.MustNewConstMetric(a.descSave, prometheus.CounterValue, r.refUSD-r.promptUSD, model, r.refModel)
	}
}

// Report is one engine and model's figures, for status tables.
type Report struct {
	Engine, GPU, Model                      string
	PerHour                                 float64
	PromptTokens, CompletionTokens          float64
	CostUSD, ReferenceUSD, PerMillionTokens float64
}

// Reports returns the current figures per engine and model.
func (a *Accountant) Reports() []Report {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []Report
	for k, t := range a.totals {
		e := a.engines[k.engine]
		r := Report{Engine: k.engine, GPU: e.GPU, Model: k.model, PromptTokens: t.promptTok, CompletionTokens: t.completionTok,
			CostUSD: t.promptUSD + t.completionUSD, ReferenceUSD: t.refUSD}
		if e.Meter != nil {
			r.PerHour = e.Meter.PerHour()
		}
		if tok := t.promptTok + t.completionTok; tok > 0 {
			r.PerMillionTokens = r.CostUSD / tok * 1e6
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Engine+out[i].Model < out[j].Engine+out[j].Model })
	return out
}
