package classify

import (
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// synthetic makes n examples where the strong model wins mostly on coding prompts (80%
// against 10% elsewhere), from two sources of unequal size.
func synthetic(n int, seed uint64) []Example {
	rng := rand.New(rand.NewPCG(seed, 1))
	filler := strings.Fields("the a of report garden city music travel friend dinner morning history river colour")
	code := strings.Fields("python function compile debug algorithm array recursion")
	var xs []Example
	for i := range n {
		var words []string
		for range 6 + rng.IntN(10) {
			words = append(words, filler[rng.IntN(len(filler))])
		}
		isCode := rng.IntN(3) == 0
		if isCode {
			for range 2 + rng.IntN(3) {
				words = append(words, code[rng.IntN(len(code))])
			}
		}
		p := 0.1
		if isCode {
			p = 0.8
		}
		strong, weak := 1.0, 1.0
		if rng.Float64() < p {
			weak = 0
		}
		src := "big"
		if i%5 == 0 {
			src = "small/part"
		}
		rng.Shuffle(len(words), func(i, j int) { words[i], words[j] = words[j], words[i] })
		xs = append(xs, Example{Source: src, Prompt: strings.Join(words, " "), Strong: f64(strong), Weak: f64(weak)})
	}
	return xs
}

func TestTrainLearnsAndIsDeterministic(t *testing.T) {
	xs := synthetic(1500, 1)
	o := TrainOptions{HashBits: 8}
	f1, err := Train(xs, o)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := Train(xs, o)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f1, f2) {
		t.Error("two trainings on the same data and options differ")
	}
	if f1.Weights[fCodeWords] <= 0 {
		t.Errorf("code_words weight %v, want > 0", f1.Weights[fCodeWords])
	}
	m, err := New(f1)
	if err != nil {
		t.Fatal(err)
	}
	test := synthetic(600, 2)
	items, err := ScoreExamples(test, func(r *models.Request) float64 { s, _ := m.Score(r); return s })
	if err != nil {
		t.Fatal(err)
	}
	if auc := AUC(items); auc < 0.8 {
		t.Errorf("held-out AUC %.3f, want >= 0.8", auc)
	}
	ev, err := Evaluate(items)
	if err != nil {
		t.Fatal(err)
	}
	if ev.APGR < 0.7 {
		t.Errorf("held-out APGR %.3f, want >= 0.7", ev.APGR)
	}
	// Calibrated: the mean score on the training data is close to the share of wins.
	var mean float64
	for i := range xs {
		s, _ := m.Score(xs[i].Request())
		mean += s
	}
	mean /= float64(len(xs))
	if math.Abs(mean-f1.Training.Positives) > 0.02 {
		t.Errorf("mean score %.3f, share labelled strong %.3f", mean, f1.Training.Positives)
	}
	if f1.Training.Examples != len(xs) || len(f1.Training.DataHash) != 64 || f1.Training.Options.MaxIter == 0 {
		t.Errorf("training record %+v", f1.Training)
	}
}

func TestTrainDataHashChanges(t *testing.T) {
	xs := synthetic(200, 3)
	f1, err := Train(xs, TrainOptions{HashBits: -1})
	if err != nil {
		t.Fatal(err)
	}
	xs[0].Prompt += " more"
	f2, err := Train(xs, TrainOptions{HashBits: -1})
	if err != nil {
		t.Fatal(err)
	}
	if f1.Training.DataHash == f2.Training.DataHash {
		t.Error("data hash unchanged by a changed prompt")
	}
	if f1.HashBits != 0 || len(f1.HashWeights) != 0 {
		t.Errorf("hash bits -1 trained %d hashed weights", len(f1.HashWeights))
	}
}

func TestTrainOptionErrors(t *testing.T) {
	xs := synthetic(20, 4)
	for _, o := range []TrainOptions{
		{HashBits: 25}, {HashBits: -2}, {L2: -1}, {L2Hash: math.Inf(1)}, {MaxIter: -1}, {Label: "odds"},
	} {
		if _, err := Train(xs, o); err == nil {
			t.Errorf("options %+v: no error", o)
		}
	}
	huge := []Example{{Prompt: "x", Strong: f64(1e308), Weak: f64(-1e308)}, {Prompt: "y", Strong: f64(0), Weak: f64(1)}}
	if _, err := Train(huge, TrainOptions{Label: "gain"}); err == nil {
		t.Error("infinite score gap: no error")
	}
	if _, err := Train(nil, TrainOptions{}); err == nil {
		t.Error("no examples: no error")
	}
	one := []Example{{Prompt: "x", Label: f64(1)}, {Prompt: "y", Label: f64(1)}}
	if _, err := Train(one, TrainOptions{BalanceClasses: true}); err == nil {
		t.Error("balance classes with one class: no error")
	}
}

func TestWeigh(t *testing.T) {
	var xs []Example
	for i := range 40 {
		src := "a/one"
		switch {
		case i >= 36:
			src = "b"
		case i >= 30:
			src = "a/two"
		}
		y := float64(i % 2)
		xs = append(xs, Example{Source: src, Prompt: fmt.Sprint("p", i), Label: &y})
	}
	total := func(o TrainOptions) map[string]float64 {
		ds, err := featurise(xs, 0, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := ds.weigh(xs, o); err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		var sum float64
		for _, s := range ds.samples {
			out[xs[s.example].Source] += float64(s.w)
			sum += float64(s.w)
		}
		if math.Abs(sum-float64(len(xs))) > 1e-3 {
			t.Errorf("weights sum to %v, want %d", sum, len(xs))
		}
		return out
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-3 }
	got := total(TrainOptions{})
	if !near(got["a/one"], 30) || !near(got["a/two"], 6) || !near(got["b"], 4) {
		t.Errorf("unbalanced: %v", got)
	}
	got = total(TrainOptions{BalanceSources: true})
	if !near(got["a/one"]+got["a/two"], 20) || !near(got["b"], 20) || !near(got["a/one"]/got["a/two"], 5) {
		t.Errorf("balanced sources: %v", got)
	}
	got = total(TrainOptions{BalanceSources: true, BalanceSubsources: true})
	if !near(got["a/one"], 10) || !near(got["a/two"], 10) || !near(got["b"], 20) {
		t.Errorf("balanced sources and subsources: %v", got)
	}
}

func TestGainLabel(t *testing.T) {
	xs := []Example{
		{Prompt: "a", Strong: f64(9), Weak: f64(5)},
		{Prompt: "b", Strong: f64(5), Weak: f64(7)},
		{Prompt: "c", Strong: f64(6), Weak: f64(6)},
		{Prompt: "d", Label: f64(0.3)},
	}
	ds, err := featurise(xs, 0, "gain")
	if err != nil {
		t.Fatal(err)
	}
	// span 4: 0.5 + 4/8, 0.5 - 2/8, 0.5; explicit labels stay.
	want := []float32{1, 0.25, 0.5, 0.3}
	for i, s := range ds.samples {
		if math.Abs(float64(s.y-want[i])) > 1e-6 {
			t.Errorf("example %d label %v, want %v", i, s.y, want[i])
		}
	}
}

func TestCrossValidate(t *testing.T) {
	xs := synthetic(300, 5)
	scores, folds, err := CrossValidate(xs, TrainOptions{HashBits: 6, MaxIter: 50}, 3, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(scores) != len(xs) || len(folds) != len(xs) {
		t.Fatalf("%d scores, %d folds for %d examples", len(scores), len(folds), len(xs))
	}
	counts := map[int]int{}
	for _, f := range folds {
		counts[f]++
	}
	if len(counts) != 3 || counts[0] != 100 {
		t.Errorf("fold sizes %v", counts)
	}
	// By source: each source entirely in one fold.
	_, folds, err = CrossValidate(xs, TrainOptions{HashBits: 6, MaxIter: 50}, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	of := map[string]int{}
	for i, f := range folds {
		if g, ok := of[xs[i].Source]; ok && g != f {
			t.Fatalf("source %q in folds %d and %d", xs[i].Source, g, f)
		}
		of[xs[i].Source] = f
	}
	if _, _, err := CrossValidate(xs, TrainOptions{}, 3, true); err == nil {
		t.Error("3 folds over 2 sources: no error")
	}
}
