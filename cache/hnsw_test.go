package cache

import (
	"math/rand/v2"
	"testing"
)

func randomUnit(r *rand.Rand, dim int) []float32 {
	v := make([]float32, dim)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	normalize(v)
	return v
}

// TestHNSWRecall checks that the graph finds the true nearest neighbour of queries near
// stored points (the cache's case: a paraphrase close to one stored question).
func TestHNSWRecall(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n, dim = 5000, 64
	g := newHNSW(dim, hnswM, hnswEFBuild, 7)
	pts := make([][]float32, n)
	for i := range pts {
		pts[i] = randomUnit(r, dim)
		g.add(pts[i])
	}
	hits := 0
	const queries = 300
	for q := 0; q < queries; q++ {
		target := r.IntN(n)
		v := make([]float32, dim)
		noise := randomUnit(r, dim)
		for i := range v {
			v[i] = pts[target][i] + 0.5*noise[i]
		}
		normalize(v)
		best, bs := -1, float32(-2)
		for i, p := range pts {
			if s := dot(v, p); s > bs {
				best, bs = i, s
			}
		}
		got := g.search(nil, v, 4, hnswEF)
		if len(got) > 0 && int(got[0].id) == best {
			hits++
		}
	}
	if recall := float64(hits) / queries; recall < 0.95 {
		t.Fatalf("recall@1 %.3f, want >= 0.95", recall)
	}
}

func TestHNSWDeleted(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	g := newHNSW(16, hnswM, hnswEFBuild, 1)
	var ids []uint32
	for i := 0; i < 500; i++ {
		ids = append(ids, g.add(randomUnit(r, 16)))
	}
	q := g.vec(ids[10])
	g.remove(ids[10])
	for _, c := range g.search(nil, q, 8, hnswEF) {
		if c.id == ids[10] {
			t.Fatal("a removed node came back from a search")
		}
	}
}

func BenchmarkHNSWAdd(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	g := newHNSW(BuiltinDim, hnswM, hnswEFBuild, 7)
	vs := make([][]float32, b.N)
	for i := range vs {
		vs[i] = randomUnit(r, BuiltinDim)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		g.add(vs[i])
	}
}
