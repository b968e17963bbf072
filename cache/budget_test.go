package cache_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/sluice-llm/sluice/cache"
	"github.com/sluice-llm/sluice/cache/storetest"
	"github.com/sluice-llm/sluice/models"
)

// TestIndexBudget: answers stored beyond the semantic indexer's CPU budget wait in its
// backlog (the oldest dropped when it is full) while they already match exactly; a Flush
// indexes what waits.
func TestIndexBudget(t *testing.T) {
	mem := cache.NewMemory(cache.StoreOptions{})
	s, reg := stageOver(t, mem, &storetest.Scripted{}, cache.Options{Semantic: true, IndexCPU: 1e-9, IndexBacklog: 2})
	qs := []string{"Where is my parcel?", "How do I reset my password?", "What are your opening hours?", "Do you ship to Norway?"}
	for _, q := range qs {
		st, err := s.Open(context.Background(), models.Target{Model: "m", Backend: "local"}, storetest.Request("t", "s", q, false))
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := st.Recv(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for mem.Len() < len(qs) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d answers stored", mem.Len(), len(qs))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Stored but not indexed: the budget (a billionth of a CPU) has no credit yet.
	time.Sleep(50 * time.Millisecond)
	if n := s.Index().Len(); n != 0 {
		t.Fatalf("%d entries indexed over a budget that allows none", n)
	}
	waiting, err := testutil.GatherAndCount(reg, "sluice_cache_index_backlog")
	if err != nil || waiting != 1 {
		t.Fatalf("backlog gauge: %d series, %v", waiting, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			case m.GetCounter() != nil && len(m.GetLabel()) == 0:
				got[mf.GetName()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["sluice_cache_index_backlog"] != 2 || got["sluice_cache_index_dropped_total"] != 2 {
		t.Fatalf("backlog %v, dropped %v; want 2 and 2", got["sluice_cache_index_backlog"], got["sluice_cache_index_dropped_total"])
	}
	// Every answer matches exactly meanwhile, the dropped ones too.
	r := storetest.Request("t", "s", qs[0], false)
	if open(t, s, r); r.Trace.Cache != cache.ResultHitExact {
		t.Fatalf("a stored answer not yet indexed: %q, want an exact hit", r.Trace.Cache)
	}
	// open flushed: the backlog (the two newest) is indexed now.
	if n := s.Index().Len(); n != 2 {
		t.Fatalf("after a flush %d entries indexed, want the backlog's 2", n)
	}
	r = storetest.Request("t", "s", "Do you ship orders to Norway?", false)
	if open(t, s, r); r.Trace.Cache != cache.ResultHitSemantic {
		t.Fatalf("a paraphrase of an indexed question: %q", r.Trace.Cache)
	}
}
