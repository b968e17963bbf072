package router

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

func TestRoute(t *testing.T) {
	r, err := New([]Entry{
		{Name: "llama", Aliases: []string{"gpt-4o-mini"}, Backend: "a", UpstreamModel: "llama-8b"},
		{Name: "llama", Aliases: []string{"gpt-4o-mini"}, Backend: "b", UpstreamModel: "meta/llama-8b"},
		{Name: "embed", Backend: "a", Kind: "embedding"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tgt, err := r.Route(ctx, &models.Request{Kind: models.KindChat, Model: "gpt-4o-mini"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tgt.Candidates) != 2 || tgt.Candidates[1].UpstreamModel != "meta/llama-8b" || tgt.Backend != "" {
		t.Fatalf("pool target = %+v", tgt)
	}
	single, _ := r.Route(ctx, &models.Request{Kind: models.KindEmbedding, Model: "embed"})
	if single.Backend != "a" || single.UpstreamModel != "embed" {
		t.Fatalf("single target = %+v", single)
	}
	for _, tt := range []struct {
		req  models.Request
		kind error
		code string
	}{
		{models.Request{Kind: models.KindChat, Model: "nope"}, models.ErrNotFound, "model_not_found"},
		{models.Request{Kind: models.KindEmbedding, Model: "llama"}, models.ErrInvalid, "model_not_supported"},
		{models.Request{Kind: models.KindChat, Model: "embed"}, models.ErrInvalid, "model_not_supported"},
	} {
		_, err := r.Route(ctx, &tt.req)
		var me *models.Error
		if !errors.Is(err, tt.kind) || !errors.As(err, &me) || me.Code != tt.code || me.Param != "model" {
			t.Errorf("%s/%s: err = %v", tt.req.Kind, tt.req.Model, err)
		}
	}
	ids := []string{}
	for _, m := range r.Models() {
		ids = append(ids, m.ID)
		if m.ID == "gpt-4o-mini" && m.AliasOf != "llama" {
			t.Errorf("alias not marked: %+v", m)
		}
	}
	if strings.Join(ids, ",") != "embed,gpt-4o-mini,llama" {
		t.Errorf("models = %v", ids)
	}
}

func TestNewRejectsConflicts(t *testing.T) {
	for _, es := range [][]Entry{
		{{Name: "m", Backend: "a"}, {Name: "m", Backend: "a"}},
		{{Name: "m", Backend: "a"}, {Name: "x", Aliases: []string{"m"}, Backend: "b"}},
		{{Name: "m", Backend: "a"}, {Name: "m", Backend: "b", Kind: "embedding"}},
	} {
		if _, err := New(es); err == nil {
			t.Errorf("New(%+v) accepted a conflict", es)
		}
	}
}
