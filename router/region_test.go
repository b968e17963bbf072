package router

import (
	"context"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// TestCandidatesCarryRegion: with overflow on, a pool's candidates are its local and
// remote engines, each with its region (the overflow stage splits them); a model served
// only remotely is targeted there, in its region.
func TestCandidatesCarryRegion(t *testing.T) {
	r, err := NewWithOptions([]Entry{
		{Name: "big", Backend: "local", Region: models.RegionLocal},
		{Name: "big", Backend: "claude-eu", UpstreamModel: "claude", Region: "eu"},
		{Name: "solo", Backend: "gemini-us", Region: "us"},
	}, Options{Remote: true})
	if err != nil {
		t.Fatal(err)
	}
	tg, err := r.Route(context.Background(), &models.Request{Kind: models.KindChat, Model: "big"})
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Candidates) != 2 || tg.Candidates[0].Region != "local" || tg.Candidates[1].Region != "eu" || tg.Region != "" {
		t.Fatalf("candidates = %+v, region %q", tg.Candidates, tg.Region)
	}
	tg, err = r.Route(context.Background(), &models.Request{Kind: models.KindChat, Model: "solo"})
	if err != nil {
		t.Fatal(err)
	}
	if tg.Backend != "gemini-us" || tg.Region != "us" {
		t.Fatalf("single candidate target = %+v", tg)
	}
}
