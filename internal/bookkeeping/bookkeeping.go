package bookkeeping

import (
	"log/slog"
	"strings"

	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/ledger"
	"github.com/sluice-llm/sluice/models"
)

// Record returns the gateway's Record hook: the accountant fills in the usage's cost and
// reference (headers, usage.cost_usd, metrics); then, with a ledger, the request's record
// is journaled, crash-safe before the hook returns (and so before the answer ends).
func Record(acct *cost.Accountant, led *ledger.Ledger, log *slog.Logger) func(*models.Request, models.Target, *models.Usage) {
	return func(r *models.Request, t models.Target, u *models.Usage) {
		hit := strings.HasPrefix(r.Trace.Cache, "hit")
		engine := t.Backend
		if hit {
			engine = "cache" // the cache answered: no engine's hardware or tokens
		}
		acct.Record(engine, t.Model, u)
		if led == nil {
			return
		}
		rec := led.NewRecord(r, t, u)
		p := acct.Price(r.Model, t, u, rec.PromptTokensBefore, hit)
		rec.Pool, rec.BilledUSD, rec.Unpriced = p.Pool, p.Billed, p.Unpriced || u.Cost.Unpriced
		rec.ReferenceModel, rec.ReferenceUSD, rec.RefCompressedUSD = p.ReferenceModel, p.Reference, p.RefCompressed
		rec.ServedRefModel, rec.ServedRefUSD = p.ServedRefModel, p.ServedRef
		if !hit && !rec.Unpriced {
			rec.CostUSD = u.Cost.Total()
		}
		if err := led.Add(&rec); err != nil && log != nil {
			log.Error("ledger: record not crash-safe", "id", r.ID, "err", err)
		}
	}
}

// Pricer tells the budget stage which candidates are paid per token, from the engines'
// pricing.
type Pricer map[string]cost.Engine

// NewPricer indexes engines by name.
func NewPricer(engines []cost.Engine) Pricer {
	m := make(Pricer, len(engines))
	for _, e := range engines {
		m[e.Name] = e
	}
	return m
}

// TokenPrice implements ledger.Pricer.
func (p Pricer) TokenPrice(c models.Candidate) (float64, float64, bool) {
	e, ok := p[c.Backend]
	if !ok || e.PerToken == nil {
		return 0, 0, false
	}
	pr, ok := e.PerToken[c.UpstreamModel]
	if !ok {
		pr, ok = e.PerToken[c.Model]
	}
	if !ok {
		// A model without a list price on a per-token engine: its cost is unknown.
		// Budgets treat it as unaffordable rather than free.
		return 1e6, 1e6, true
	}
	return pr.Input, pr.Output, true
}

var _ ledger.Pricer = Pricer(nil)
