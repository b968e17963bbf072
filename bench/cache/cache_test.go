package cache

import (
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func TestAUC(t *testing.T) {
	if a := auc([]float64{0.1, 0.4, 0.35, 0.8}, []bool{false, false, true, true}); math.Abs(a-0.75) > 1e-9 {
		t.Fatalf("auc %v, want 0.75", a)
	}
	if a := auc([]float64{1, 1}, []bool{true, false}); a != 0.5 {
		t.Fatalf("ties: %v", a)
	}
}

func TestReword(t *testing.T) {
	g := newGenerator(1)
	for i := 0; i < 100; i++ {
		q := g.question()
		if r := g.reword(q); r == q || !strings.HasSuffix(r, "?") {
			t.Fatalf("%q reworded as %q", q, r)
		}
	}
}

// TestRun runs the whole bench small, on the shared data: every part produces figures.
func TestRun(t *testing.T) {
	res, err := Run(context.Background(), Config{
		MockData: "../../../shared/data/cache/mock_data.json",
		QQP:      "../../../shared/data/cache/similiar_qqp_full.first5000.json",
		Sizes:    []int{400}, Queries: 100, Seed: 3, ExactEntries: 500, ExactOps: 2000,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExactLookupNS <= 0 || res.ExactBoltNS <= 0 || len(res.Semantic) != 1 || res.Semantic[0].P99US <= 0 {
		t.Fatalf("latency figures missing: %+v", res)
	}
	if res.Semantic[0].HitPct < 50 {
		t.Errorf("reworded questions hit %.0f%% of the time", res.Semantic[0].HitPct)
	}
	for _, g := range res.GPTCache {
		if g.Correct+g.Wrong+g.Misses != 999 {
			t.Fatalf("GPTCache row %+v does not add up to 999", g)
		}
	}
	if res.QQPPairs != 5000 || res.QQPAUC <= 0.5 || res.QQPAUC >= 1 {
		t.Fatalf("Quora figures %v over %d pairs", res.QQPAUC, res.QQPPairs)
	}
	b, _ := json.Marshal(res)
	for _, k := range []string{"exact_lookup_ns", "semantic_p99_us_1m", "gptcache_correct_hit_pct", "gptcache_wrong_hit_pct", "qqp_auc"} {
		if !strings.Contains(string(b), `"`+k+`"`) {
			t.Errorf("JSON lacks %s", k)
		}
	}
}
