package cache

import (
	"slices"
	"testing"
)

// TestKeptAnalysis: what a non-streamed miss keeps of the lookup's analysis (scan,
// weigh, the vector) indexes a question as analysing it again does: the same partition
// and vector, and the same document frequencies learnt.
func TestKeptAnalysis(t *testing.T) {
	prior := []string{"How do I reset my password?", "What is the capital of France in 1900?",
		"Summarize the following article about the 2024 elections.", "Why is the sky blue?"}
	again, kept := NewBuiltin(), NewBuiltin()
	for _, b := range []*Builtin{again, kept} {
		for _, p := range prior {
			a := b.get()
			b.analyze(a, p, true)
			b.learn(a)
			b.put(a)
		}
	}
	scope := Scope{1, 2, 3}
	for _, q := range []string{"How can I reset my password on 3 devices?", "Why isn't the sky green?", "x"} {
		// The indexer analysing the question again.
		a := again.get()
		again.analyze(a, q, true)
		again.learn(a)
		part := partition(scope, &a.facts)
		vec := slices.Clone(a.dense)
		again.put(a)

		// The lookup's steps, then what the miss keeps.
		l := kept.get()
		kept.scan(l, q)
		lpart := partition(scope, &l.facts)
		kept.weigh(l, false)
		l.dense = project(l.dense, l.feats, kept.dim)
		k := kept.keep(l, lpart)
		kept.put(l)
		kept.learnKept(k)

		if k.part != part {
			t.Fatalf("%q: partition %v kept, %v analysed again", q, k.part, part)
		}
		if !slices.Equal(k.dense, vec) {
			t.Fatalf("%q: vectors differ", q)
		}
		if again.n.Load() != kept.n.Load() {
			t.Fatalf("%q: %d documents learnt against %d", q, kept.n.Load(), again.n.Load())
		}
		for i := range again.df {
			if again.df[i].Load() != kept.df[i].Load() {
				t.Fatalf("%q: bucket %d: %d against %d", q, i, kept.df[i].Load(), again.df[i].Load())
			}
		}
	}
}

// TestBacklogLetsGoOfGoneEntries: entries replaced (or evicted) while the budget holds
// the backlog up let go of their question and kept analysis, and the backlog is compacted
// instead of growing with them.
func TestBacklogLetsGoOfGoneEntries(t *testing.T) {
	s := &Stage{o: Options{IndexBacklog: 4096}}
	k := &analysed{dense: make([]float32, BuiltinDim), df: make([]uint32, 500)}
	for i := range 10000 {
		s.queueIndex(&Entry{Key: Key{byte(i % 3)}, Question: "How do I reset my password?"}, k)
	}
	x := &s.idx
	if len(x.waiting) != 3 || len(x.backlog) > 2*3+64+1 {
		t.Fatalf("3 keys waiting, backlog of %d after 10,000 replacements", len(x.backlog))
	}
	for _, w := range x.backlog {
		if w.gone && (w.e != nil || w.kept != nil) {
			t.Fatal("a replaced entry still holds its question or analysis")
		}
	}
	w := x.waiting[Key{0}]
	x.forget(Key{0})
	if !w.gone || w.e != nil || w.kept != nil {
		t.Fatalf("a forgotten entry: %+v", w)
	}
}
