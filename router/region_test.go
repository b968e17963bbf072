package router

import (
	"context"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

func TestCandidatesCarryRegion(t *testing.T) {
	r, err := New([]Entry{
		{Name: "big", Backend: "local", Region: models.RegionLocal},
		{Name: "big", Backend: "claude-eu", UpstreamModel: "claude", Region: "eu"},
		{Name: "solo", Backend: "gemini-us", Region: "us"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := r.Route(context.Background(), &models.Request{Kind: models.KindChat, Model: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Candidates) != 2 || tg.Candidates[0].Region != "local" || tg.Candidates[1].Region != "eu" {
		t.Fatalf("candidates = %+v", tg.Candidates)
	}
	tg, _ = r.Route(context.Background(), &models.Request{Kind: models.KindChat, Model: "solo"})
	if tg.Backend != "gemini-us" || tg.Region != "us" {
		t.Fatalf("single candidate target = %+v", tg)
	}
}
