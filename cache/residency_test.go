package cache_test

import (
	"context"
	"testing"

	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cache/storetest"
	"github.com/sluice-llm/sluice/models"
)

// regional serves a request in the region its key allows, the way the overflow stage
// does (Trace.Region): an unrestricted key's request goes to the US cloud, an EU key's
// to an EU endpoint, a local-only key's to the box's engines.
type regional struct{ storetest.Scripted }

func (g *regional) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	r.Trace.Region = "us"
	if r.Key != nil {
		switch r.Key.Residency {
		case models.ResidencyEU:
			r.Trace.Region = "eu"
		case models.ResidencyLocalOnly:
			r.Trace.Region = models.RegionLocal
		}
	}
	return g.Scripted.Open(ctx, t, r)
}

// TestCacheKeepsResidency: an answer produced in a region a key's residency policy
// does not allow is never served to that key from the cache, exact or semantic, even
// within one tenant: what an EU key receives was produced in the EU (or on the box).
func TestCacheKeepsResidency(t *testing.T) {
	for _, store := range []struct {
		name string
		open func(t *testing.T) cache.Store
	}{
		{"memory", func(*testing.T) cache.Store { return cache.NewMemory(cache.StoreOptions{}) }},
		{"bolt", func(t *testing.T) cache.Store {
			s, err := cache.OpenBolt(t.TempDir()+"/c.db", cache.StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		t.Run(store.name, func(t *testing.T) {
			next := &regional{}
			s, _ := stageOver(t, store.open(t), next, cache.Options{Semantic: true})
			keys := map[string]*models.Key{
				"any":   {ID: "key-any", Tenant: "acme", Residency: models.ResidencyAny},
				"eu":    {ID: "key-eu", Tenant: "acme", Residency: models.ResidencyEU},
				"local": {ID: "key-local", Tenant: "acme", Residency: models.ResidencyLocalOnly},
			}
			ask := func(key, q string) string {
				r := storetest.Request("acme", "sys", q, false)
				r.Key = keys[key]
				open(t, s, r)
				return r.Trace.Cache
			}
			const q, para = "How do I reset my password?", "How can I reset my password?"
			if got := ask("any", q); got != cache.ResultMiss {
				t.Fatalf("first ask: %s", got)
			}
			for _, c := range []struct{ key, q, want string }{
				{"any", q, cache.ResultHitExact},      // produced in the US, for an unrestricted key
				{"eu", q, cache.ResultMiss},           // not the US answer: asked again, in the EU
				{"eu", para, cache.ResultHitSemantic}, // the EU answer
				{"eu", q, cache.ResultHitExact},
				{"local", q, cache.ResultMiss}, // the EU answer is not local
				{"local", para, cache.ResultHitSemantic},
				{"any", q, cache.ResultHitExact}, // any key takes any region's answer
			} {
				if got := ask(c.key, c.q); got != c.want {
					t.Errorf("%s key asking %q: %s, want %s", c.key, c.q, got, c.want)
				}
			}
			if next.Calls != 3 {
				t.Errorf("the engine was asked %d times, want 3", next.Calls)
			}
		})
	}
}
