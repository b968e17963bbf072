package router

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluice-llm/sluice/models"
)

// Entry is one model on one backend. Several entries with the same Name on different
// backends form a pool: the scheduler picks among them per request.
type Entry struct {
	Name          string   // what clients call it
	Aliases       []string // other names that reach it (e.g. "gpt-4o-mini")
	Backend       string   // backend id
	UpstreamModel string   // the engine's name for it
	Kind          string   // "chat" (default) or "embedding"
	Tier          string   // default Options.DefaultTier
	Created       int64
	// Region of the backend: "local" (the default) for the box's own engines, else the
	// provider region ("eu", "us", ...).
	Region string
	// ContextWindow in tokens (0: unknown); Caps what the model can do (0: undeclared).
	ContextWindow int
	Caps          Caps
	// Price per million input and output tokens (remote models; orders them cheapest
	// first).
	InputPrice, OutputPrice float64
}

// Caps is a set of model capabilities.
type Caps uint8

// Capabilities.
const (
	CapTools Caps = 1 << iota
	CapVision
	CapJSON
)

// ParseCaps reads capability names (tools, vision, json); unknown names are ignored.
func ParseCaps(names []string) Caps {
	var c Caps
	for _, n := range names {
		switch n {
		case "tools":
			c |= CapTools
		case "vision":
			c |= CapVision
		case "json":
			c |= CapJSON
		}
	}
	return c
}

// Auto maps a classifier score to a tier: Strong at or above Threshold, else Weak.
type Auto struct {
	Weak, Strong string
	Threshold    float64
}

// Options configure tiers and fallbacks. The zero Options give the plain catalog: no
// tiers, no `auto`, no fallbacks to other models.
type Options struct {
	// Tiers are the tiers, weakest first; empty: tier routing and `auto` are off.
	Tiers       []string
	DefaultTier string // tier of entries that name none (default: the first tier)
	Auto        Auto
	// Classifier scores requests for `auto` (default: Heuristic).
	Classifier Classifier
	// Remote lets requests for a local model fall back (overflow) to remote engines.
	// Models served only remotely are reachable either way.
	Remote bool
	// MaxFallbacks bounds Target.Fallbacks (default 16).
	MaxFallbacks int
}

// Router resolves model names (and tiers, and `auto`) to targets.
type Router struct {
	opts   Options
	byName map[string]*pool
	infos  []models.ModelInfo
	tiers  map[string]int // tier -> rank
	pools  []*pool        // distinct models, in catalog order
	// byTier[policy][rank]: the plan for "at least this tier" (chat models).
	byTier [nPolicies][]*plan
}

// pool is every backend serving one client-facing name.
type pool struct {
	name       string
	names      []string // name and aliases
	kind       string
	tier       string
	rank       int
	ctx        int                // the smallest declared context window among its backends (0: unknown)
	caps       Caps               // 0: undeclared
	price      float64            // the cheapest backend's input + output price
	cprice     map[string]float64 // by backend
	candidates []models.Candidate
	// plans[policy]: this model first, then the fallbacks.
	plans [nPolicies]*plan
	route [nPolicies]string // X-Sluice-Route of a request naming it
}

// New builds a router over entries with no tiers. A name (or alias) may repeat only
// across backends, for the same kind of model.
func New(entries []Entry) (*Router, error) { return NewWithOptions(entries, Options{}) }

// NewWithOptions builds a router with tiers, `auto` and fallbacks.
func NewWithOptions(entries []Entry, opts Options) (*Router, error) {
	if opts.MaxFallbacks <= 0 {
		opts.MaxFallbacks = 16
	}
	if opts.Classifier == nil {
		opts.Classifier = Heuristic{}
	}
	r := &Router{opts: opts, byName: make(map[string]*pool), tiers: map[string]int{}}
	for i, t := range opts.Tiers {
		r.tiers[t] = i
	}
	if len(opts.Tiers) > 0 {
		if opts.DefaultTier == "" {
			r.opts.DefaultTier = opts.Tiers[0]
		}
		for _, t := range []string{r.opts.DefaultTier, opts.Auto.Weak, opts.Auto.Strong} {
			if _, ok := r.tiers[t]; !ok && t != "" {
				return nil, fmt.Errorf("router: tier %q is not among %v", t, opts.Tiers)
			}
		}
		if r.opts.Auto.Weak == "" {
			r.opts.Auto.Weak = opts.Tiers[0]
		}
		if r.opts.Auto.Strong == "" {
			r.opts.Auto.Strong = opts.Tiers[min(1, len(opts.Tiers)-1)]
		}
	}
	for _, e := range entries {
		if e.Kind == "" {
			e.Kind = "chat"
		}
		if e.UpstreamModel == "" {
			e.UpstreamModel = e.Name
		}
		if e.Region == "" {
			e.Region = models.RegionLocal
		}
		if e.Tier == "" {
			e.Tier = r.opts.DefaultTier
		}
		rank, ok := r.tiers[e.Tier]
		if !ok && len(opts.Tiers) > 0 {
			return nil, fmt.Errorf("router: model %q has tier %q, not among %v", e.Name, e.Tier, opts.Tiers)
		}
		names := append([]string{e.Name}, e.Aliases...)
		var p *pool
		for i, n := range names {
			q := r.byName[n]
			if q == nil {
				if p == nil {
					p = r.byName[e.Name]
				}
				if p == nil {
					p = &pool{name: e.Name, kind: e.Kind, tier: e.Tier, rank: rank, caps: e.Caps}
					r.pools = append(r.pools, p)
				}
				r.byName[n] = p
				p.names = append(p.names, n)
				info := models.ModelInfo{ID: n, Created: e.Created, Kind: e.Kind, Backend: e.Backend}
				if i > 0 {
					info.AliasOf = e.Name
				}
				r.infos = append(r.infos, info)
				continue
			}
			if q.name != e.Name || q.kind != e.Kind {
				return nil, fmt.Errorf("router: model name %q names both %q and %q", n, q.name, e.Name)
			}
			if q.tier != e.Tier {
				return nil, fmt.Errorf("router: model %q has tiers %q and %q on different backends", e.Name, q.tier, e.Tier)
			}
			p = q
		}
		for _, c := range p.candidates {
			if c.Backend == e.Backend {
				return nil, fmt.Errorf("router: model name %q is used twice on backend %s", e.Name, e.Backend)
			}
		}
		if e.ContextWindow > 0 && (p.ctx == 0 || e.ContextWindow < p.ctx) {
			p.ctx = e.ContextWindow
		}
		price := e.InputPrice + e.OutputPrice
		if len(p.candidates) == 0 || price < p.price {
			p.price = price
		}
		if p.cprice == nil {
			p.cprice = map[string]float64{}
		}
		p.cprice[e.Backend] = price
		p.candidates = append(p.candidates, models.Candidate{Backend: e.Backend, UpstreamModel: e.UpstreamModel,
			Region: e.Region, Model: e.Name, Tier: e.Tier, ContextWindow: e.ContextWindow})
	}
	for _, p := range r.pools {
		// Local backends first, then remote ones cheapest first (stable: config order).
		sort.SliceStable(p.candidates, func(i, j int) bool {
			a, b := p.candidates[i], p.candidates[j]
			if la, lb := a.Region == models.RegionLocal, b.Region == models.RegionLocal; la != lb {
				return la
			}
			return p.cprice[a.Backend] < p.cprice[b.Backend]
		})
	}
	if len(opts.Tiers) > 0 {
		for _, k := range []string{"chat"} {
			for _, t := range opts.Tiers {
				id := "auto-" + t
				if _, taken := r.byName[id]; !taken {
					r.infos = append(r.infos, models.ModelInfo{ID: id, Kind: k, OwnedBy: "sluice"})
				}
			}
			if _, taken := r.byName["auto"]; !taken {
				r.infos = append(r.infos, models.ModelInfo{ID: "auto", Kind: k, OwnedBy: "sluice"})
			}
		}
	}
	sort.Slice(r.infos, func(i, j int) bool { return r.infos[i].ID < r.infos[j].ID })
	r.buildPlans()
	return r, nil
}

// Models lists served models and aliases (and `auto`, `auto-<tier>` when tiers are on).
func (r *Router) Models() []models.ModelInfo { return r.infos }

// Tiers returns the configured tiers, weakest first.
func (r *Router) Tiers() []string { return r.opts.Tiers }

// Route returns the target for req: the model, every allowed backend that serves it and,
// in Fallbacks, where else it may go. Candidates outside the request key's residency
// policy are removed before any other choice.
func (r *Router) Route(_ context.Context, req *models.Request) (models.Target, error) {
	pol := policyOf(req.Key)
	tier, auto, err := r.requestedTier(req)
	if err != nil {
		return models.Target{}, err
	}
	if tier != "" || auto {
		return r.routeTier(req, pol, tier, auto)
	}
	p, ok := r.byName[req.Model]
	if !ok {
		return models.Target{}, &models.Error{Kind: models.ErrNotFound, Code: "model_not_found", Param: "model",
			Msg: fmt.Sprintf("the model %q does not exist; GET /v1/models lists the %d models served (%s)",
				req.Model, len(r.infos), r.names())}
	}
	if err := kindCheck(req, p); err != nil {
		return models.Target{}, err
	}
	if err := keyAllows(req.Key, req.Model, p); err != nil {
		return models.Target{}, err
	}
	pl := p.plans[pol]
	if len(pl.groups) == 0 || pl.groups[0].pool != p {
		return models.Target{}, &models.Error{Kind: models.ErrForbidden, Code: "residency_denied", Param: "model",
			Msg: fmt.Sprintf("the model %q is not served in a region this key's residency policy (%s) allows", req.Model, policyName(pol))}
	}
	f := newFilter(req, r.opts.Remote, p)
	t := models.Target{Model: req.Model, Tier: p.tier}
	t.Candidates, t.Fallbacks = pl.groups[0].all, pl.fallbacks
	if !f.none() || !f.fits(pl) {
		t.Fallbacks = f.fallbacks(pl, 1, r.opts.MaxFallbacks)
	}
	req.Trace.Route = p.route[pol]
	finish(&t)
	return t, nil
}

// requestedTier reads the tier a request asks for: `auto-<tier>` as the model, or the
// X-Sluice-Tier header (Request.Tier); auto is set for `model: "auto"`.
func (r *Router) requestedTier(req *models.Request) (tier string, auto bool, err error) {
	if len(r.opts.Tiers) == 0 {
		if req.Tier != "" {
			return "", false, models.InvalidParam("X-Sluice-Tier", "tiers are not configured (routing.tiers); drop the X-Sluice-Tier header")
		}
		return "", false, nil
	}
	_, taken := r.byName[req.Model]
	switch {
	case taken: // a model of that name wins over the auto names
	case req.Model == "auto":
		auto = true
	case strings.HasPrefix(req.Model, "auto-"):
		tier = req.Model[len("auto-"):]
		if _, ok := r.tiers[tier]; !ok {
			return "", false, &models.Error{Kind: models.ErrNotFound, Code: "model_not_found", Param: "model",
				Msg: fmt.Sprintf("there is no tier %q: the tiers are %s (auto-<tier>)", tier, strings.Join(r.opts.Tiers, ", "))}
		}
	}
	if req.Tier != "" {
		if _, ok := r.tiers[req.Tier]; !ok {
			return "", false, models.InvalidParam("X-Sluice-Tier", "header X-Sluice-Tier must be one of %s, got %q",
				strings.Join(r.opts.Tiers, ", "), req.Tier)
		}
		tier, auto = req.Tier, false
	}
	return tier, auto, nil
}

// routeTier picks the first model of at least tier (or of the tier the classifier
// chooses) that the key may use and that can serve the request.
func (r *Router) routeTier(req *models.Request, pol int, tier string, auto bool) (models.Target, error) {
	if req.Kind == models.KindEmbedding {
		return models.Target{}, models.InvalidParam("model", "tier routing (auto, auto-<tier>, X-Sluice-Tier) is for chat and completions, not embeddings")
	}
	var why string
	var score float64
	if auto {
		var reason string
		score, reason = r.opts.Classifier.Score(req)
		tier = r.opts.Auto.Weak
		if score >= r.opts.Auto.Threshold {
			tier = r.opts.Auto.Strong
		}
		why = "auto: " + reason
	} else if req.Tier != "" {
		why = "tier header"
	} else {
		why = "tier"
	}
	if k := req.Key; k != nil && len(k.Tiers) > 0 && !contains(k.Tiers, tier) {
		// The classifier's choice (or the client's) is not allowed: the next allowed one up.
		next := ""
		for _, t := range r.opts.Tiers[r.tiers[tier]:] {
			if contains(k.Tiers, t) {
				next = t
				break
			}
		}
		if next == "" || !auto {
			return models.Target{}, &models.Error{Kind: models.ErrForbidden, Code: "tier_not_allowed", Param: "model",
				Msg: fmt.Sprintf("this key may not use tier %s (allowed: %s)", tier, strings.Join(k.Tiers, ", "))}
		}
		tier = next
	}
	pl := r.byTier[pol][r.tiers[tier]]
	f := newFilter(req, true, nil)
	first := -1
	for i := range pl.groups {
		if f.admits(&pl.groups[i]) {
			first = i
			break
		}
	}
	if first < 0 {
		return models.Target{}, &models.Error{Kind: models.ErrForbidden, Code: "no_allowed_model", Param: "model",
			Msg: fmt.Sprintf("no model of tier %s or above can serve this request under this key's policy (residency %s)", tier, policyName(pol))}
	}
	g := &pl.groups[first]
	f.remote = r.opts.Remote || !g.pool.hasLocal()
	f.primary = g.pool
	cands := g.all
	if !f.remote {
		cands = g.local
	}
	t := models.Target{Model: g.pool.name, Tier: g.pool.tier, Candidates: cands,
		Fallbacks: f.fallbacks(pl, first+1, r.opts.MaxFallbacks)}
	req.Trace.Route = routeString(g.pool.tier, g.pool.name, why, score, auto)
	finish(&t)
	return t, nil
}

// finish fills the target's backend when there is only one candidate, and its region
// when all candidates share one.
func finish(t *models.Target) {
	if len(t.Candidates) == 1 {
		t.Backend, t.UpstreamModel = t.Candidates[0].Backend, t.Candidates[0].UpstreamModel
	}
	if len(t.Candidates) > 0 {
		reg := t.Candidates[0].Region
		for _, c := range t.Candidates[1:] {
			if c.Region != reg {
				return
			}
		}
		t.Region = reg
	}
}

func kindCheck(req *models.Request, p *pool) error {
	wantEmbed := req.Kind == models.KindEmbedding
	if wantEmbed != (p.kind == "embedding") {
		what := "chat and completions"
		if wantEmbed {
			what = "embeddings"
		}
		return &models.Error{Kind: models.ErrInvalid, Code: "model_not_supported", Param: "model",
			Msg: fmt.Sprintf("the model %q is a %s model and does not support %s", req.Model, p.kind, what)}
	}
	return nil
}

// keyAllows checks a key's model and tier lists for a model the client names.
func keyAllows(k *models.Key, name string, p *pool) error {
	if k == nil {
		return nil
	}
	if len(k.Models) > 0 && !contains(k.Models, name) && !contains(k.Models, p.name) {
		return &models.Error{Kind: models.ErrForbidden, Code: "model_not_allowed", Param: "model",
			Msg: fmt.Sprintf("this key may not use the model %q", name)}
	}
	if len(k.Tiers) > 0 && !contains(k.Tiers, p.tier) {
		return &models.Error{Kind: models.ErrForbidden, Code: "tier_not_allowed", Param: "model",
			Msg: fmt.Sprintf("this key may not use tier %s (the model %q is %s)", p.tier, name, p.tier)}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (r *Router) names() string {
	var b strings.Builder
	for i, m := range r.infos {
		if i == 8 {
			b.WriteString(", ...")
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(m.ID)
	}
	return b.String()
}
