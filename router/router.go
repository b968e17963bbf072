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
	Tier          string
	Region        string // where Backend serves: "local" for the box's own engines, else a provider region
	Created       int64
}

// pool is every backend serving one client-facing name.
type pool struct {
	name       string
	kind       string
	tier       string
	candidates []models.Candidate
}

// Router resolves model names to targets.
type Router struct {
	byName map[string]*pool
	infos  []models.ModelInfo
}

// New builds a router over entries. A name (or alias) may repeat only across backends,
// for the same kind of model.
func New(entries []Entry) (*Router, error) {
	r := &Router{byName: make(map[string]*pool)}
	for _, e := range entries {
		if e.Kind == "" {
			e.Kind = "chat"
		}
		if e.UpstreamModel == "" {
			e.UpstreamModel = e.Name
		}
		for i, n := range append([]string{e.Name}, e.Aliases...) {
			p := r.byName[n]
			if p == nil {
				p = &pool{name: e.Name, kind: e.Kind, tier: e.Tier}
				r.byName[n] = p
				info := models.ModelInfo{ID: n, Created: e.Created, Kind: e.Kind, Backend: e.Backend}
				if i > 0 {
					info.AliasOf = e.Name
				}
				r.infos = append(r.infos, info)
			} else {
				if p.name != e.Name || p.kind != e.Kind {
					return nil, fmt.Errorf("router: model name %q names both %q and %q", n, p.name, e.Name)
				}
				for _, c := range p.candidates {
					if c.Backend == e.Backend {
						return nil, fmt.Errorf("router: model name %q is used twice on backend %s", n, e.Backend)
					}
				}
			}
			p.candidates = append(p.candidates, models.Candidate{Backend: e.Backend, UpstreamModel: e.UpstreamModel, Region: e.Region})
		}
	}
	sort.Slice(r.infos, func(i, j int) bool { return r.infos[i].ID < r.infos[j].ID })
	return r, nil
}

// Models lists served models and aliases.
func (r *Router) Models() []models.ModelInfo { return r.infos }

// Route returns the target for req: the model and every backend that serves it.
func (r *Router) Route(_ context.Context, req *models.Request) (models.Target, error) {
	p, ok := r.byName[req.Model]
	if !ok {
		return models.Target{}, &models.Error{Kind: models.ErrNotFound, Code: "model_not_found", Param: "model",
			Msg: fmt.Sprintf("the model %q does not exist; GET /v1/models lists the %d models served (%s)",
				req.Model, len(r.infos), r.names())}
	}
	wantEmbed := req.Kind == models.KindEmbedding
	if wantEmbed != (p.kind == "embedding") {
		what := "chat and completions"
		if wantEmbed {
			what = "embeddings"
		}
		return models.Target{}, &models.Error{Kind: models.ErrInvalid, Code: "model_not_supported", Param: "model",
			Msg: fmt.Sprintf("the model %q is a %s model and does not support %s", req.Model, p.kind, what)}
	}
	t := models.Target{Model: req.Model, Candidates: p.candidates, Tier: p.tier}
	if len(p.candidates) == 1 {
		t.Backend, t.UpstreamModel, t.Region = p.candidates[0].Backend, p.candidates[0].UpstreamModel, p.candidates[0].Region
	}
	return t, nil
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
