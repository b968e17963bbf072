package cost

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Engine is one engine's pricing: its meter and the hardware it runs on, or its price
// per token, or none.
type Engine struct {
	Name  string
	GPU   string // label: GPU indexes and model ("0:NVIDIA H100 80GB HBM3"), "cpu", "cloud", "unpriced"
	Meter *Meter // hardware billed by the hour; nil for PerToken and Unpriced engines
	// Pool is the box the engine runs on (for effective cost); Remote engines with a
	// price per hour are pools of their own.
	Pool   string
	Remote bool
	// PerToken prices a cloud API's models (by upstream or catalog name), per token.
	PerToken map[string]CloudPrice
	// Unpriced: a remote engine nobody gave a price: its requests' cost is unknown and
	// is reported as such, never as zero.
	Unpriced bool
}

// Accountant totals cost, tokens and savings per engine and model, and exports them.
type Accountant struct {
	cloud     map[string]CloudPrice
	reference string            // default reference model
	perModel  map[string]string // catalog model -> reference model

	mu      sync.Mutex
	engines map[string]Engine
	totals  map[key]*total

	modelClass, classRef map[string]string
	defaultClass         string
	boxPool              string
	boxPerHour           float64
	boxStart             time.Time
	unpriced             float64 // requests to targets without a price

	descCost, descTokens, descPerM, descPrice, descRef, descSave *prometheus.Desc
	descBoxPrice, descBoxCost, descUnpriced, descBilled          *prometheus.Desc
}

type key struct{ engine, model string }

type total struct {
	promptTok, completionTok, cachedTok float64
	promptUSD, completionUSD            float64
	billedUSD                           float64
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
		// Savings go up and down (a request can cost more than its reference): a gauge.
		descSave: prometheus.NewDesc("sluice_savings_usd",
			"Reference cloud cost minus marginal cost, since start (can fall: not a counter). Effective savings are in the ledger's reports.",
			[]string{"model", "reference"}, nil),
		descBoxPrice: prometheus.NewDesc("sluice_box_price_usd_per_hour",
			"What the whole box costs per hour: every GPU, with engines or not (or the CPU box).", []string{"pool"}, nil),
		descBoxCost: prometheus.NewDesc("sluice_box_cost_usd_total",
			"What the box has cost since start, idle time included (effective cost per token: this over sluice_tokens_total).",
			[]string{"pool"}, nil),
		descUnpriced: prometheus.NewDesc("sluice_unpriced_requests_total",
			"Requests served by a target without a price (cost unknown, not zero).", nil, nil),
		descBilled: prometheus.NewDesc("sluice_billed_usd_total",
			"Money spent per token on cloud targets, by model.", []string{"engine", "model"}, nil),
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
		if e.Meter != nil {
			m[n] = e.Meter
		}
	}
	return m
}

// ReferenceFor returns the reference cloud model for a catalog model: its own
// (models[].reference), else the global one (pricing.reference), else its class's
// (SetClasses).
func (a *Accountant) ReferenceFor(model string) (string, CloudPrice, bool) {
	ref := a.reference
	if r, ok := a.perModel[model]; ok {
		ref = r
	} else if ref == "" {
		a.mu.Lock()
		class, ok := a.modelClass[model]
		if !ok {
			class = a.defaultClass
		}
		ref = a.classRef[class]
		a.mu.Unlock()
	}
	p, ok := a.cloud[ref]
	return ref, p, ok
}

// Record adds a finished request (its usage already carries its hardware cost) and
// fills in what it would have cost on the reference model.
//
// A cloud engine's request is priced here, per token; one to an engine without a price
// is marked u.Cost.Unpriced.
func (a *Accountant) Record(engine, model string, u *models.Usage) {
	if ref, p, ok := a.ReferenceFor(model); ok {
		u.Cost.ReferenceModel = ref
		u.Cost.Reference = p.Of(u.PromptTokens, u.CompletionTokens)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.engines[engine]
	var billed float64
	switch {
	case e.PerToken != nil:
		if p, ok := e.PerToken[model]; ok && u.Cost.Total() == 0 {
			u.Cost.Prompt = float64(u.PromptTokens) * p.Input / 1e6
			u.Cost.Completion = float64(u.CompletionTokens) * p.Output / 1e6
		} else if !ok && u.Cost.Total() == 0 {
			u.Cost.Unpriced = true
		}
		// (A cost already set came from the overflow stage, at the same list prices,
		// with any failed attempts' cost added.)
		billed = u.Cost.Total()
	case e.Unpriced:
		u.Cost.Unpriced = true
	}
	if u.Cost.Unpriced {
		a.unpriced++
	}
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
	t.billedUSD += billed
	t.refUSD += u.Cost.Reference
	if u.Cost.ReferenceModel != "" {
		t.refModel = u.Cost.ReferenceModel
	}
}

// Describe implements prometheus.Collector.
func (a *Accountant) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{a.descCost, a.descTokens, a.descPerM, a.descPrice, a.descRef, a.descSave,
		a.descBoxPrice, a.descBoxCost, a.descUnpriced, a.descBilled} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *Accountant) Collect(ch chan<- prometheus.Metric) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.engines {
		if e.Meter == nil {
			continue
		}
		idle, _ := e.Meter.Totals()
		ch <- prometheus.MustNewConstMetric(a.descCost, prometheus.CounterValue, idle, e.Name, e.GPU, "", "idle")
		ch <- prometheus.MustNewConstMetric(a.descPrice, prometheus.GaugeValue, e.Meter.PerHour(), e.Name, e.GPU)
	}
	if a.boxPool != "" {
		ch <- prometheus.MustNewConstMetric(a.descBoxPrice, prometheus.GaugeValue, a.boxPerHour, a.boxPool)
		ch <- prometheus.MustNewConstMetric(a.descBoxCost, prometheus.CounterValue,
			a.boxPerHour*max(time.Since(a.boxStart).Hours(), 0), a.boxPool)
	}
	ch <- prometheus.MustNewConstMetric(a.descUnpriced, prometheus.CounterValue, a.unpriced)
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
		if t.billedUSD > 0 {
			ch <- prometheus.MustNewConstMetric(a.descBilled, prometheus.CounterValue, t.billedUSD, k.engine, k.model)
		}
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
		ch <- prometheus.MustNewConstMetric(a.descSave, prometheus.GaugeValue, r.refUSD-r.promptUSD, model, r.refModel)
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
