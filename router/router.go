package router

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/sluice-llm/sluice/models"
)

// Entry is one model the gateway serves.
type Entry struct {
	Name          string   // what clients call it
	Aliases       []string // other names that reach it (e.g. "gpt-4o-mini")
	Backend       string   // backend id
	UpstreamModel string   // the engine's name for it
	Kind          string   // "chat" (default) or "embedding"
	Tier          string
	Created       int64
}

// Router resolves model names to targets.
type Router struct {
	byName map[string]*Entry
	infos  []models.ModelInfo
}

// New builds a router over entries. Names and aliases must be unique.
func New(entries []Entry) (*Router, error) {
	r := &Router{byName: make(map[string]*Entry)}
	for i := range entries {
		e := entries[i]
		if e.Kind == "" {
			e.Kind = "chat"
		}
		if e.UpstreamModel == "" {
			e.UpstreamModel = e.Name
		}
		for _, n := range append([]string{e.Name}, e.Aliases...) {
			if prev, dup := r.byName[n]; dup {
				return nil, fmt.Errorf("router: model name %q is used twice (backends %s and %s)", n, prev.Backend, e.Backend)
			}
			r.byName[n] = &e
		}
		r.infos = append(r.infos, models.ModelInfo{ID: e.Name, Created: e.Created, Kind: e.Kind, Backend: e.Backend})
		for _, a := range e.Aliases {
			r.infos = append(r.infos, models.ModelInfo{ID: a, Created: e.Created, Kind: e.Kind, Backend: e.Backend, AliasOf: e.Name})
		}
	}
	sort.Slice(r.infos, func(i, j int) bool { return r.infos[i].ID < r.infos[j].ID })
	return r, nil
}

// Models lists served models and aliases.
func (r *Router) Models() []models.ModelInfo { return r.infos }

// Route returns the target for req.
func (r *Router) Route(_ context.Context, req *models.Request) (models.Target, error) {
	e, ok := r.byName[req.Model]
	if !ok {
		return models.Target{}, &models.Error{Kind: models.ErrNotFound, Code: "model_not_found", Param: "model",
			Msg: fmt.Sprintf("the model %q does not exist; GET /v1/models lists the %d models served (%s)",
				req.Model, len(r.infos), r.names())}
	}
	wantEmbed := req.Kind == models.KindEmbedding
	if wantEmbed != (e.Kind == "embedding") {
		what := "chat and completions"
		if wantEmbed {
			what = "embeddings"
		}
		return models.Target{}, &models.Error{Kind: models.ErrInvalid, Code: "model_not_supported", Param: "model",
			Msg: fmt.Sprintf("the model %q is a %s model and does not support %s", req.Model, e.Kind, what)}
	}
	return models.Target{Model: req.Model, Backend: e.Backend, UpstreamModel: e.UpstreamModel, Tier: e.Tier}, nil
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
