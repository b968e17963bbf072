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
		ask(t, s, q)
	}
	// Stored but not indexed: the budget (a billionth of a CPU) has no credit. Entries
	// join the backlog before the store, so its gauge is final once they are stored.
	waitStored(t, mem, len(qs))
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

// ask sends one question through s and reads its answer, without a Flush.
func ask(t *testing.T, s *cache.Stage, q string) {
	t.Helper()
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

// waitStored waits until the store holds n entries.
func waitStored(t *testing.T, st interface{ Len() int }, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for st.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d answers stored", st.Len(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIndexBacklogForgetsRemoved: entries the store evicts, and a tenant's entries
// purged, while they wait for the indexer's budget are never indexed afterwards.
func TestIndexBacklogForgetsRemoved(t *testing.T) {
	mem := cache.NewMemory(cache.StoreOptions{MaxEntries: 2})
	s, _ := stageOver(t, mem, &storetest.Scripted{}, cache.Options{Semantic: true, IndexCPU: 1e-9, IndexBacklog: 8})
	for _, q := range []string{"Where is my parcel?", "How do I reset my password?", "What are your opening hours?", "Do you ship to Norway?"} {
		ask(t, s, q)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n, m := s.Index().Len(), mem.Len(); n != m || m != 2 {
		t.Fatalf("index holds %d entries, the store %d (2 evicted while waiting)", n, m)
	}

	mem2 := cache.NewMemory(cache.StoreOptions{})
	s2, _ := stageOver(t, mem2, &storetest.Scripted{}, cache.Options{Semantic: true, IndexCPU: 1e-9})
	ask(t, s2, "Where is my parcel?")
	waitStored(t, mem2, 1)
	if _, err := mem2.Purge(context.Background(), "t", ""); err != nil { // behind the stage's back, as another replica's purge
		t.Fatal(err)
	}
	if _, err := s2.Purge(context.Background(), "t", ""); err != nil {
		t.Fatal(err)
	}
	if err := s2.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s2.Index().Len(); n != 0 {
		t.Fatalf("%d purged entries indexed after the purge", n)
	}
}

// echoStore is a Memory whose puts come back as watch events, as a shared store's do.
type echoStore struct {
	*cache.Memory
	ch chan cache.Key
}

func (w *echoStore) Put(ctx context.Context, es ...*cache.Entry) error {
	if err := w.Memory.Put(ctx, es...); err != nil {
		return err
	}
	for _, e := range es {
		w.ch <- e.Key
	}
	return nil
}

func (w *echoStore) Watch(ctx context.Context, fn func(cache.Event)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case k := <-w.ch:
			fn(cache.Event{Op: cache.OpPut, Key: k})
		}
	}
}

// TestIndexBudgetSharedStore: on a shared store this replica's own answers come back as
// put events; the watcher leaves them to the budgeted backlog instead of indexing them.
func TestIndexBudgetSharedStore(t *testing.T) {
	w := &echoStore{Memory: cache.NewMemory(cache.StoreOptions{}), ch: make(chan cache.Key, 100)}
	s, _ := stageOver(t, w, &storetest.Scripted{}, cache.Options{Semantic: true, IndexCPU: 1e-9})
	for _, q := range []string{"Where is my parcel?", "How do I reset my password?", "What are your opening hours?"} {
		ask(t, s, q)
	}
	waitStored(t, w, 3)
	deadline := time.Now().Add(10 * time.Second)
	for len(w.ch) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the watcher takes the events
	}
	time.Sleep(20 * time.Millisecond) // and handles the last one
	if n := s.Index().Len(); n != 0 {
		t.Fatalf("the watcher indexed %d of this replica's answers outside the budget", n)
	}
	if err := s.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := s.Index().Len(); n != 3 {
		t.Fatalf("after a flush %d indexed, want 3", n)
	}
}
