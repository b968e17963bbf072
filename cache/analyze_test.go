package cache

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// analyzeText is a retrieval prompt of about n bytes: a document and a question.
func analyzeText(n int) string {
	words := strings.Fields(`The Panthers defense gave up just 308 points, ranking sixth in the league, while also
		leading the NFL in interceptions with 24 and boasting four Pro Bowl selections. Pro Bowl defensive tackle
		Kawann Short led the team in sacks with 11, while also forcing three fumbles and recovering two. Fellow
		lineman Mario Addison added 6½ sacks. The Panthers line also featured veteran defensive end Jared Allen, a
		5-time pro bowler who was the NFL's active career sack leader with 136, along with defensive end Kony Ealy`)
	var b strings.Builder
	b.WriteString("Document:\n")
	rng := rand.New(rand.NewPCG(1, 2))
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
		b.WriteByte(' ')
	}
	b.WriteString("\n\nQuestion: How many points did the Panthers defense surrender?")
	return b.String()
}

// BenchmarkAnalyze is what storing a question costs the semantic index (the cache's
// writer does it for every answer stored): its tokens, facts, weighted features and
// dense vector.
func BenchmarkAnalyze(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		text := analyzeText(n)
		b.Run(fmt.Sprintf("%dB", n), func(b *testing.B) {
			e := NewBuiltin()
			// A store's worth of learned questions: the frequency table is in use (a
			// fresh one is untouched zero pages, which no cache ever misses).
			for i := range 2000 {
				e.Learn(analyzeText(200 + i%7*300))
			}
			a := e.get()
			b.ReportAllocs()
			for b.Loop() {
				e.analyze(a, text, true)
			}
			e.put(a)
		})
	}
}

// TestSortFeatures checks the radix sort against the standard library's.
func TestSortFeatures(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 2, 17, 63, 64, 65, 300, 5000, 70000} {
		fs := make([]feature, n)
		for i := range fs {
			fs[i] = feature{h: rng.Uint64(), w: float32(i)}
			if i > 0 && rng.IntN(4) == 0 {
				fs[i].h = fs[rng.IntN(i)].h // repeats
			}
		}
		want := slices.Clone(fs)
		slices.SortStableFunc(want, func(a, b feature) int {
			switch {
			case a.h < b.h:
				return -1
			case a.h > b.h:
				return 1
			}
			return 0
		})
		var scratch []feature
		var counts []uint32
		got := sortFeatures(slices.Clone(fs), &scratch, &counts)
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d: radix sort differs from a stable sort", n)
		}
	}
}

// TestTrigramHash: the written-out hash is xxhash's, so features (and the frequencies
// learned of them) do not change.
func TestTrigramHash(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 100000 {
		b := [3]byte{byte(rng.Uint32()), byte(rng.Uint32()), byte(rng.Uint32())}
		if i < 256 {
			b = [3]byte{'#', byte(i), '#'}
		}
		if got, want := trigramHash(b[0], b[1], b[2]), xxhash.Sum64(b[:]); got != want {
			t.Fatalf("trigramHash(%q) = %x, want %x", b, got, want)
		}
	}
}
