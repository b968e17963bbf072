package classify

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

func TestDefault(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	f := m.File()
	if f.Training == nil || f.Training.Examples == 0 || f.Training.DataHash == "" {
		t.Errorf("embedded weights carry no training record: %+v", f.Training)
	}
	for _, r := range benchRequests() {
		s, why := m.Score(r)
		if !(s >= 0 && s <= 1) || why == "" {
			t.Errorf("Score = %v, %q", s, why)
		}
	}
	s, why := m.Score(&models.Request{Kind: models.KindEmbedding, Input: []string{"x"}})
	if s != 0 || why != "embedding" {
		t.Errorf("embedding: %v %q", s, why)
	}
}

// The shipped weights must order clear-cut cases the way the training data says: a
// multi-step math word problem (GSM8K's kind, where the strong model wins far more
// often) above small talk.
func TestDefaultScoresSanely(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	score := func(s string) float64 {
		v, _ := m.Score(chat(user(s)))
		return v
	}
	hard := score("A store sells pencils at 3 for $1.20 and pens at $2.50 each. Maria buys 12 pencils and 4 pens, " +
		"then returns 2 pens. How much does she pay in total, and what percent of it is for pencils? Explain each step.")
	easy := score("hi! how are you?")
	if !(hard > easy) {
		t.Errorf("math word problem %.3f <= small talk %.3f", hard, easy)
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range benchRequests() {
		if n := testing.AllocsPerRun(50, func() { m.Score(r) }); n != 0 {
			t.Errorf("Score allocates %.1f times per call", n)
		}
	}
}

func TestScoreConcurrent(t *testing.T) {
	m, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	reqs := benchRequests()
	want := make([]float64, len(reqs))
	for i, r := range reqs {
		want[i], _ = m.Score(r)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				for i, r := range reqs {
					if s, _ := m.Score(r); s != want[i] {
						t.Errorf("request %d scored %v, then %v", i, want[i], s)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// handFile is a weights file with chosen dense weights, means 0, no hashed words.
func handFile(weights map[int]float32, bias float32) *File {
	f := &File{Format: FileFormat, FeatureVersion: featureVersion, Features: denseNames[:],
		Weights: make([]float32, numDense), Means: make([]float32, numDense), Bias: bias}
	for i, w := range weights {
		f.Weights[i] = w
	}
	return f
}

func TestReasons(t *testing.T) {
	m, err := New(handFile(map[int]float32{fCodeWords: 3, fMathWords: 2, fCreative: -3, fRoleplay: -1}, 0))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ prompt, want string }{
		{"Write python code for a function with a loop and recursion", "code"},
		{"python code function loop: solve the equation and compute the probability sum", "code+math"},
		{"a poem, a story, an essay", "easy:creative"},
		{"pretend you are a poet and write a poem and a story and a song", "easy:creative+roleplay"},
		{"hello there", "typical"},
	} {
		if _, got := m.Score(chat(user(tt.prompt))); got != tt.want {
			t.Errorf("%q: reason %q, want %q", tt.prompt, got, tt.want)
		}
	}
}

func TestScoreFormula(t *testing.T) {
	f := handFile(map[int]float32{fQuestionWord: 1.5}, -0.5)
	f.Calibration = &Calibration{A: 2, B: 0.25}
	m, err := New(f)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.Score(chat(user("why")))
	want := 1 / (1 + math.Exp(-(2*(1.5-0.5)*1 + 0.25)))
	// "why": question word 1, length log1p(3)/log1p(16384) with weight 0, so z = 1.5 - 0.5.
	if math.Abs(s-want) > 1e-6 {
		t.Errorf("score %v, want %v", s, want)
	}
}

func TestLoad(t *testing.T) {
	f := handFile(map[int]float32{fCodeWords: 1}, 0)
	f.HashBits = 4
	f.HashWeights = make([]float32, 16)
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file: no error")
	}

	valid := string(b)
	for _, tt := range []struct {
		name, edit, want string
	}{
		{"format", `"format":"other"`, "format"},
		{"version", `"feature_version":99`, "feature_version 99"},
		{"unknown field", `"extra":1`, "unknown field"},
		{"hash size", `"hash_bits":5`, "hash_weights"},
		{"hash range", `"hash_bits":30`, "out of range"},
		{"calibration", `"calibration":{"a":-1,"b":0}`, "calibration"},
		{"features", `"features":["a"]`, "want 22 each"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// Later keys win in encoding/json: append the edit to the object.
			bad := strings.TrimSuffix(valid, "}") + "," + tt.edit + "}"
			if _, err := Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Parse([]byte(valid + `{}`)); err == nil {
		t.Error("trailing data: no error")
	}
	renamed := strings.Replace(valid, `"code_words"`, `"code"`, 1)
	if _, err := Parse([]byte(renamed)); err == nil || !strings.Contains(err.Error(), `"code"`) {
		t.Errorf("renamed feature: %v", err)
	}
	nan := handFile(nil, float32(math.NaN()))
	if _, err := New(nan); err == nil {
		t.Error("NaN bias: no error")
	}
}
