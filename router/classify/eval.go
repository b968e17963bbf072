package classify

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/sluice-llm/sluice/models"
)

// Item is one evaluated request: the router's score for it and the quality of each
// model's answer.
type Item struct {
	Score        float64
	Strong, Weak float64
}

// Point is one point of a router's quality curve: with Share of the requests (the
// highest-scored ones) sent to the strong model, the mean quality is Quality, which
// recovers PGR of the gap between the weak and the strong model.
type Point struct {
	Share   float64 `json:"share"`
	Quality float64 `json:"quality"`
	PGR     float64 `json:"pgr"`
}

// Eval is a router's evaluation, the way RouteLLM reports it.
type Eval struct {
	N      int     `json:"n"`
	Strong float64 `json:"strong"` // mean quality with every request on the strong model
	Weak   float64 `json:"weak"`   // ... on the weak one
	// APGR is the average of PGR over the share of strong calls from 0 to 1 (the area
	// under the PGR curve): 0.5 for random routing, 1 for a router that recovers the
	// whole gap at no strong calls.
	APGR float64 `json:"apgr"`
	// ShareAt95 is the smallest share of strong calls whose quality reaches 95% of the
	// strong model's (0 when the weak model already does).
	ShareAt95 float64 `json:"strong_share_at_95"`
	// Curve holds one point per distinct threshold, share 0 to 1. Requests with equal
	// scores move together; between points the curve is a straight line, which is the
	// expected quality when ties are broken at random.
	Curve []Point `json:"curve"`
}

// ErrNoGap means the two models score the same on average, so PGR is undefined.
var ErrNoGap = errors.New("classify: the strong and weak models have the same mean quality; PGR is undefined")

// Evaluate sweeps the threshold over items' scores: for each share of requests sent to
// the strong model (highest scores first), the mean quality of the chosen answers.
func Evaluate(items []Item) (Eval, error) {
	n := len(items)
	if n == 0 {
		return Eval{}, errors.New("classify: nothing to evaluate")
	}
	var ev Eval
	ev.N = n
	sorted := slices.Clone(items)
	for _, it := range sorted {
		if !finite64(it.Score) || !finite64(it.Strong) || !finite64(it.Weak) {
			return Eval{}, errors.New("classify: scores and qualities must be finite")
		}
		ev.Strong += it.Strong
		ev.Weak += it.Weak
	}
	ev.Strong /= float64(n)
	ev.Weak /= float64(n)
	gap := ev.Strong - ev.Weak
	if gap == 0 {
		return ev, ErrNoGap
	}
	slices.SortStableFunc(sorted, func(a, b Item) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	sum := ev.Weak * float64(n)
	ev.Curve = append(ev.Curve, Point{Share: 0, Quality: ev.Weak, PGR: 0})
	for i := 0; i < n; {
		j := i
		for j < n && sorted[j].Score == sorted[i].Score {
			sum += sorted[j].Strong - sorted[j].Weak
			j++
		}
		q := sum / float64(n)
		ev.Curve = append(ev.Curve, Point{Share: float64(j) / float64(n), Quality: q, PGR: (q - ev.Weak) / gap})
		i = j
	}
	// The last point is exactly the strong model's; pin it against rounding.
	last := &ev.Curve[len(ev.Curve)-1]
	last.Quality, last.PGR = ev.Strong, 1
	for k := 1; k < len(ev.Curve); k++ {
		a, b := ev.Curve[k-1], ev.Curve[k]
		ev.APGR += (b.Share - a.Share) * (a.PGR + b.PGR) / 2
	}
	ev.ShareAt95 = ev.shareFor(0.95 * ev.Strong)
	return ev, nil
}

// shareFor is the smallest share of strong calls at which the curve reaches quality q
// (1 if it never does).
func (ev *Eval) shareFor(q float64) float64 {
	if ev.Curve[0].Quality >= q {
		return 0
	}
	for k := 1; k < len(ev.Curve); k++ {
		a, b := ev.Curve[k-1], ev.Curve[k]
		if b.Quality >= q {
			return a.Share + (b.Share-a.Share)*(q-a.Quality)/(b.Quality-a.Quality)
		}
	}
	return 1
}

// QualityAt is the curve's quality at a share of strong calls in [0,1].
func (ev *Eval) QualityAt(share float64) float64 {
	c := ev.Curve
	for k := 1; k < len(c); k++ {
		if share <= c[k].Share {
			a, b := c[k-1], c[k]
			if b.Share == a.Share {
				return b.Quality
			}
			return a.Quality + (b.Quality-a.Quality)*(share-a.Share)/(b.Share-a.Share)
		}
	}
	return c[len(c)-1].Quality
}

// PGRAt is the curve's PGR at a share of strong calls.
func (ev *Eval) PGRAt(share float64) float64 {
	return (ev.QualityAt(share) - ev.Weak) / (ev.Strong - ev.Weak)
}

// Expected returns the evaluation of a router whose scores carry no information (every
// request scored alike): the straight line from the weak to the strong model, which is
// what random routing gets on average. Its APGR is 0.5.
func Expected(items []Item) (Eval, error) {
	flat := make([]Item, len(items))
	for i, it := range items {
		flat[i] = Item{Strong: it.Strong, Weak: it.Weak}
	}
	return Evaluate(flat)
}

// RandomRouter evaluates draws of random scores (seeded, so reproducible) and returns the
// mean APGR and mean share at 95% over them.
func RandomRouter(items []Item, draws int, seed uint64) (apgr, shareAt95 float64, err error) {
	if draws < 1 {
		return 0, 0, fmt.Errorf("classify: draws %d < 1", draws)
	}
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	xs := slices.Clone(items)
	for range draws {
		for i := range xs {
			xs[i].Score = rng.Float64()
		}
		ev, err := Evaluate(xs)
		if err != nil {
			return 0, 0, err
		}
		apgr += ev.APGR
		shareAt95 += ev.ShareAt95
	}
	return apgr / float64(draws), shareAt95 / float64(draws), nil
}

// ScoreExamples scores each example with score and pairs it with its qualities; every
// example must carry strong and weak scores.
func ScoreExamples(xs []Example, score func(*models.Request) float64) ([]Item, error) {
	items := make([]Item, len(xs))
	for i := range xs {
		if !xs[i].HasScores() {
			return nil, fmt.Errorf("classify: example %d has no strong and weak scores to evaluate against", i+1)
		}
		items[i] = Item{Score: score(xs[i].Request()), Strong: *xs[i].Strong, Weak: *xs[i].Weak}
	}
	return items, nil
}

// AUC is the probability that a randomly chosen positive item (strong better than weak)
// scores above a randomly chosen non-positive one (ties count half): a threshold-free
// check of the ranking on sets with 0/1 qualities.
func AUC(items []Item) float64 {
	type sv struct {
		s   float64
		pos bool
	}
	xs := make([]sv, len(items))
	for i, it := range items {
		xs[i] = sv{it.Score, it.Strong > it.Weak}
	}
	slices.SortFunc(xs, func(a, b sv) int {
		switch {
		case a.s < b.s:
			return -1
		case a.s > b.s:
			return 1
		}
		return 0
	})
	var rankSum, npos float64
	for i := 0; i < len(xs); {
		j := i
		for j < len(xs) && xs[j].s == xs[i].s {
			j++
		}
		mid := float64(i+j+1) / 2 // mean 1-based rank of the tie group
		for k := i; k < j; k++ {
			if xs[k].pos {
				rankSum += mid
				npos++
			}
		}
		i = j
	}
	nneg := float64(len(xs)) - npos
	if npos == 0 || nneg == 0 {
		return math.NaN()
	}
	return (rankSum - npos*(npos+1)/2) / (npos * nneg)
}

// BootstrapAPGR resamples the evaluated set (clusters of items that belong together, such
// as a question's two turns, drawn whole; cluster[i] names item i's cluster) with
// replacement, draws times, and returns the 2.5th and 97.5th percentiles of the APGR:
// how much the figure owes to which requests happen to be in a small set.
func BootstrapAPGR(items []Item, cluster []string, draws int, seed uint64) (lo, hi float64, err error) {
	if len(cluster) != len(items) {
		return 0, 0, fmt.Errorf("classify: bootstrap: %d clusters for %d items", len(cluster), len(items))
	}
	if draws < 10 {
		return 0, 0, fmt.Errorf("classify: bootstrap: %d draws, want at least 10", draws)
	}
	idx := map[string]int{}
	var groups [][]Item
	for i, c := range cluster {
		g, ok := idx[c]
		if !ok {
			g = len(groups)
			idx[c] = g
			groups = append(groups, nil)
		}
		groups[g] = append(groups[g], items[i])
	}
	rng := rand.New(rand.NewPCG(seed, 0xb007))
	apgrs := make([]float64, 0, draws)
	sample := make([]Item, 0, len(items))
	for len(apgrs) < draws {
		sample = sample[:0]
		for range groups {
			sample = append(sample, groups[rng.IntN(len(groups))]...)
		}
		ev, err := Evaluate(sample)
		if errors.Is(err, ErrNoGap) {
			continue // a resample where the models tie: no PGR to measure
		}
		if err != nil {
			return 0, 0, err
		}
		apgrs = append(apgrs, ev.APGR)
	}
	slices.Sort(apgrs)
	return apgrs[draws*25/1000], apgrs[draws*975/1000], nil
}
