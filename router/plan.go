package router

import (
	"sort"
	"strconv"

	"github.com/sluice-llm/sluice/models"
)

// Residency policies, as indexes into the precomputed plans. Residency is applied when
// the plans are built: a plan for policy eu holds no candidate outside local and eu, so
// no later choice (the first target, overflow, fallbacks) can pick one.
const (
	polAny = iota
	polEU
	polLocal
	nPolicies
)

var policyNames = [nPolicies]string{models.ResidencyAny, models.ResidencyEU, models.ResidencyLocalOnly}

// policyOf maps a key's residency policy to its plans; an unknown policy gets the
// local-only plans (models.ResidencyAllows admits only local for it too).
func policyOf(k *models.Key) int {
	if k == nil {
		return polAny
	}
	switch k.Residency {
	case "", models.ResidencyAny:
		return polAny
	case models.ResidencyEU:
		return polEU
	}
	return polLocal
}

func policyName(p int) string { return policyNames[p] }

// group is one model's candidates that a policy allows.
type group struct {
	pool  *pool
	all   []models.Candidate // local first, then remote cheapest first
	local []models.Candidate // the local ones only
}

// plan is an ordered list of models to try.
type plan struct {
	groups []group
	// fallbacks flattens groups[1:] for a request with no extra filter (model plans).
	fallbacks []models.Candidate
	// minCtx is the smallest declared context window among groups[1:] (0: none
	// declared): a request that fits it needs no per-request filtering.
	minCtx int
}

func (p *pool) hasLocal() bool {
	for _, c := range p.candidates {
		if c.Region == models.RegionLocal {
			return true
		}
	}
	return false
}

// allowed returns p's candidates that policy admits: all of them, and the local ones.
func (p *pool) allowed(pol int) (all, local []models.Candidate) {
	for _, c := range p.candidates {
		if !models.ResidencyAllows(policyNames[pol], c.Region) {
			continue
		}
		all = append(all, c)
		if c.Region == models.RegionLocal {
			local = append(local, c)
		}
	}
	return all, local
}

// order sorts pools for fallbacks and tier routing: lower tiers first (never below the
// requested one: callers filter), then models with a local engine, then cheaper ones.
func order(ps []*pool) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		if la, lb := a.hasLocal(), b.hasLocal(); la != lb {
			return la
		}
		return a.price < b.price
	})
}

func (r *Router) buildPlans() {
	ranked := append([]*pool(nil), r.pools...)
	order(ranked)
	for _, p := range r.pools {
		if len(r.opts.Tiers) > 0 {
			p.route[0] = routeString(p.tier, p.name, "model", 0, false)
			for i := 1; i < nPolicies; i++ {
				p.route[i] = p.route[0]
			}
		}
		remoteOK := r.opts.Remote || !p.hasLocal()
		for pol := 0; pol < nPolicies; pol++ {
			pl := &plan{}
			if g := makeGroup(p, pol, remoteOK); g.pool != nil {
				pl.groups = append(pl.groups, g)
			}
			if len(r.opts.Tiers) > 0 && p.kind != "embedding" {
				// Other models of at least its tier (never for embeddings: another
				// model's vectors would not be comparable).
				for _, q := range ranked {
					if q == p || q.kind != p.kind || q.rank < p.rank {
						continue
					}
					if g := makeGroup(q, pol, remoteOK); g.pool != nil {
						pl.groups = append(pl.groups, g)
					}
				}
			}
			from := 1
			if len(pl.groups) == 0 || pl.groups[0].pool != p {
				from = 0
			}
			f := filter{remote: remoteOK}
			pl.fallbacks = f.fallbacks(pl, from, r.opts.MaxFallbacks)
			for _, g := range pl.groups[min(from, len(pl.groups)):] {
				if g.pool.ctx > 0 && (pl.minCtx == 0 || g.pool.ctx < pl.minCtx) {
					pl.minCtx = g.pool.ctx
				}
			}
			p.plans[pol] = pl
		}
	}
	for pol := 0; pol < nPolicies; pol++ {
		r.byTier[pol] = make([]*plan, len(r.opts.Tiers))
		for rank := range r.opts.Tiers {
			pl := &plan{}
			for _, q := range ranked {
				if q.kind != "chat" || q.rank < rank {
					continue
				}
				if g := makeGroup(q, pol, true); g.pool != nil {
					pl.groups = append(pl.groups, g)
				}
			}
			r.byTier[pol][rank] = pl
		}
	}
}

// makeGroup returns p's allowed candidates as a group (pool nil when none). Without
// remoteOK a model that has a local engine keeps only its local candidates.
func makeGroup(p *pool, pol int, remoteOK bool) group {
	all, local := p.allowed(pol)
	if !remoteOK && p.hasLocal() {
		all = local
	}
	if len(all) == 0 {
		return group{}
	}
	return group{pool: p, all: all, local: local}
}

// filter is what one request demands of the models it may go to, beyond residency.
type filter struct {
	need    Caps
	tokens  int // estimated prompt and completion tokens
	key     *models.Key
	remote  bool  // remote candidates may be used
	primary *pool // skipped in fallbacks
}

func newFilter(req *models.Request, remote bool, primary *pool) filter {
	f := filter{key: req.Key, remote: remote, primary: primary}
	if len(req.Tools) > 0 {
		f.need |= CapTools
	}
	if len(req.ResponseFormat) > 0 {
		f.need |= CapJSON
	}
	n := 0
	for i := range req.Messages {
		n += len(req.Messages[i].Content)
		if len(req.Messages[i].Images) > 0 {
			f.need |= CapVision
		}
	}
	for _, p := range req.Prompt {
		n += len(p)
	}
	f.tokens = n/4 + req.Sampling.MaxTokens
	if primary != nil {
		f.remote = remote || !primary.hasLocal()
	}
	return f
}

// none reports that the request needs no filtering beyond the precomputed plan.
func (f filter) none() bool {
	k := f.key
	return f.need == 0 && (k == nil || (len(k.Models) == 0 && len(k.Tiers) == 0)) && f.tokens < 1<<30
}

// fits reports that the request fits every group's declared context window of pl.
func (f filter) fits(pl *plan) bool { return pl.minCtx == 0 || f.tokens <= pl.minCtx }

// admits reports whether a model may take the request: the key allows it, it has the
// capabilities the request uses (when it declares any) and the prompt fits its context.
func (f filter) admits(g *group) bool {
	p := g.pool
	if k := f.key; k != nil {
		if len(k.Models) > 0 {
			ok := false
			for _, n := range p.names {
				ok = ok || contains(k.Models, n)
			}
			if !ok {
				return false
			}
		}
		if len(k.Tiers) > 0 && !contains(k.Tiers, p.tier) {
			return false
		}
	}
	if p.caps != 0 && p.caps&f.need != f.need {
		return false
	}
	return p.ctx == 0 || f.tokens <= p.ctx
}

// fallbacks flattens the admitted groups of pl from index from on, at most max
// candidates.
func (f filter) fallbacks(pl *plan, from, max int) []models.Candidate {
	var out []models.Candidate
	for i := from; i < len(pl.groups) && len(out) < max; i++ {
		g := &pl.groups[i]
		if g.pool == f.primary || !f.admits(g) {
			continue
		}
		cands := g.all
		if !f.remote {
			cands = g.local
		}
		for _, c := range cands {
			if len(out) == max {
				break
			}
			out = append(out, c)
		}
	}
	return out
}

// routeString is the X-Sluice-Route explanation: tier, model, reason and (auto) score.
func routeString(tier, model, reason string, score float64, withScore bool) string {
	b := make([]byte, 0, 64+len(model)+len(reason))
	b = append(b, "tier="...)
	b = append(b, tier...)
	b = append(b, "; model="...)
	b = append(b, model...)
	b = append(b, "; reason="...)
	b = append(b, reason...)
	if withScore {
		b = append(b, "; score="...)
		b = strconv.AppendFloat(b, score, 'f', 2, 64)
	}
	return string(b)
}
