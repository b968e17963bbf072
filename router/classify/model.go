package classify

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"

	"github.com/sluice-llm/sluice/models"
)

// FileFormat names the weights file's format in its "format" field.
const FileFormat = "sluice-classifier"

// File is the JSON weights file: a logistic regression over the dense features and a
// table of hashed-word weights. The score of a request is
//
//	sigmoid(bias + Σ weights[i]·x[i] + Σ hash_weights[bucket(w)] / sqrt(n))
//
// over its dense features x and the n hashed words and bigrams w it reads.
type File struct {
	Format         string    `json:"format"`
	FeatureVersion int       `json:"feature_version"`
	Features       []string  `json:"features"`
	Weights        []float32 `json:"weights"`
	Bias           float32   `json:"bias"`
	// Means are the features' means over the training data, and WordsMean the mean of the
	// hashed-word term: reasons name the cues that move a request's score away from the
	// typical one.
	Means     []float32 `json:"means"`
	WordsMean float32   `json:"words_mean"`
	// HashBits sizes the hashed-word table (1<<HashBits weights); 0: no hashed words.
	HashBits    int       `json:"hash_bits"`
	HashWeights []float32 `json:"hash_weights"`
	// Calibration maps the linear score z to the probability sigmoid(A·z + B) that the
	// strong model does better (Platt scaling, fitted on the training data after the
	// weights). Absent: sigmoid(z).
	Calibration *Calibration `json:"calibration,omitempty"`
	Training    *Training    `json:"training,omitempty"`
}

// Calibration is Platt scaling: probability = sigmoid(A·z + B), A > 0.
type Calibration struct {
	A float32 `json:"a"`
	B float32 `json:"b"`
}

// Training records how a weights file was made.
type Training struct {
	Examples  int          `json:"examples"`
	Positives float64      `json:"positives"` // weighted share of examples labelled strong
	DataHash  string       `json:"data_sha256"`
	Options   TrainOptions `json:"options"`
	// Iterations of the optimiser; Converged is false when it stopped at MaxIter.
	Iterations int     `json:"iterations"`
	Converged  bool    `json:"converged"`
	Loss       float64 `json:"loss"`
}

// Model scores requests. It is immutable and safe for concurrent use.
type Model struct {
	bias      float32
	weights   [numDense]float32
	means     [numDense]float32
	wordsMean float32
	calA      float32
	calB      float32
	hashMask  uint64
	hashW     []float32
	lex       *lexicon
	// reasons[dir][a][b]: the reason naming groups a and b (b == numGroups: a alone),
	// dir 0 toward the strong model, 1 toward the weak one. Built once so Score does
	// not allocate.
	reasons [2][numGroups][numGroups + 1]string
	file    *File
}

//go:embed default_weights.json
var defaultWeights []byte

// Default returns the model trained on RouteLLM's MMLU and GSM8K data (see
// docs/routing.md), embedded in the binary.
func Default() (*Model, error) {
	m, err := Parse(defaultWeights)
	if err != nil {
		return nil, fmt.Errorf("classify: embedded weights: %w", err)
	}
	return m, nil
}

// Load reads a weights file written by `sluice router train`.
func Load(path string) (*Model, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("classify: %w", err)
	}
	m, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("classify: %s: %w", path, err)
	}
	return m, nil
}

// Parse decodes a weights file (unknown fields are errors).
func Parse(b []byte) (*Model, error) {
	var f File
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, errors.New("trailing data after the weights object")
	}
	return New(&f)
}

// New builds a model from a decoded weights file, checking that it fits this build's
// features.
func New(f *File) (*Model, error) {
	if f.Format != FileFormat {
		return nil, fmt.Errorf("format %q, want %q", f.Format, FileFormat)
	}
	if f.FeatureVersion != featureVersion {
		return nil, fmt.Errorf("feature_version %d, this build computes version %d: retrain with `sluice router train`", f.FeatureVersion, featureVersion)
	}
	if len(f.Features) != numDense || len(f.Weights) != numDense || len(f.Means) != numDense {
		return nil, fmt.Errorf("features, weights and means: want %d each, have %d, %d, %d", numDense, len(f.Features), len(f.Weights), len(f.Means))
	}
	for i, n := range f.Features {
		if n != denseNames[i] {
			return nil, fmt.Errorf("features[%d] is %q, want %q", i, n, denseNames[i])
		}
	}
	if f.HashBits < 0 || f.HashBits > 24 {
		return nil, fmt.Errorf("hash_bits %d out of range 0..24", f.HashBits)
	}
	if f.HashBits == 0 && len(f.HashWeights) != 0 || f.HashBits > 0 && len(f.HashWeights) != 1<<f.HashBits {
		return nil, fmt.Errorf("hash_weights: %d values, want %d for hash_bits %d", len(f.HashWeights), hashSize(f.HashBits), f.HashBits)
	}
	if !finite(f.Bias) || !finite(f.WordsMean) || !allFinite(f.Weights) || !allFinite(f.Means) || !allFinite(f.HashWeights) {
		return nil, errors.New("weights must be finite numbers")
	}
	m := &Model{bias: f.Bias, wordsMean: f.WordsMean, calA: 1, lex: newLexicon(), file: f}
	if c := f.Calibration; c != nil {
		if !finite(c.A) || !finite(c.B) || c.A <= 0 {
			return nil, errors.New("calibration: a must be a finite number > 0 and b finite")
		}
		m.calA, m.calB = c.A, c.B
	}
	copy(m.weights[:], f.Weights)
	copy(m.means[:], f.Means)
	// Reasons measure from the typical request; for the multiple-choice feature that is
	// one without options (chat requests rarely have them, exam-style training data
	// always does), so "choices" is named only when a request has options.
	m.means[fChoices] = 0
	if f.HashBits > 0 {
		m.hashW = f.HashWeights
		m.hashMask = uint64(len(f.HashWeights) - 1)
	}
	for a := range numGroups {
		m.reasons[0][a][numGroups] = groupNames[a]
		m.reasons[1][a][numGroups] = "easy:" + groupNames[a]
		for b := range numGroups {
			m.reasons[0][a][b] = groupNames[a] + "+" + groupNames[b]
			m.reasons[1][a][b] = "easy:" + groupNames[a] + "+" + groupNames[b]
		}
	}
	return m, nil
}

// File returns the weights file the model was built from (do not modify it).
func (m *Model) File() *File { return m.file }

// Score estimates the probability that r needs the strong model, in [0,1], and names the
// cues behind it: the one or two feature groups that move the score most away from a
// typical request's ("math+multi-step"; "easy:creative+length" when they point to the
// weak model; "typical" when none stands out). It reads at most a few KiB of text, calls
// no model and does not allocate.
func (m *Model) Score(r *models.Request) (score float64, reason string) {
	if r.Kind == models.KindEmbedding {
		return 0, "embedding"
	}
	z, groups := m.logit(r)
	for i := range groups {
		groups[i] *= m.calA // in the calibrated log-odds the score is made of
	}
	return sigmoid(m.calA*z + m.calB), m.reason(&groups)
}

// logit is the model's log-odds for r and each feature group's contribution to it
// relative to the training means.
func (m *Model) logit(r *models.Request) (float32, [numGroups]float32) {
	e := extractor{lex: m.lex, hashMask: m.hashMask, hashW: m.hashW}
	f := e.extract(r)
	var groups [numGroups]float32
	z := m.bias
	for i := range f.dense {
		z += m.weights[i] * f.dense[i]
		groups[denseGroup[i]] += m.weights[i] * (f.dense[i] - m.means[i])
	}
	if m.hashW != nil {
		w := wordsTerm(f.words, f.nWords)
		z += w
		groups[gWords] += w - m.wordsMean
	}
	return z, groups
}

// reasonMin is the smallest contribution (in log-odds) a group needs to be named.
const reasonMin = 0.15

func (m *Model) reason(g *[numGroups]float32) string {
	var total float32
	for _, c := range g {
		total += c
	}
	dir, sign := 0, float32(1)
	if total < 0 {
		dir, sign = 1, -1
	}
	a, b := -1, -1
	var ca, cb float32
	for i, c := range g {
		c *= sign
		if c < reasonMin {
			continue
		}
		switch {
		case c > ca:
			b, cb = a, ca
			a, ca = i, c
		case c > cb:
			b, cb = i, c
		}
	}
	switch {
	case a < 0:
		return "typical"
	case b < 0:
		return m.reasons[dir][a][numGroups]
	}
	return m.reasons[dir][a][b]
}

func wordsTerm(sum float32, n int) float32 {
	if n == 0 {
		return 0
	}
	return sum / float32(math.Sqrt(float64(n)))
}

func sigmoid(z float32) float64 {
	return 1 / (1 + math.Exp(-float64(z)))
}

func hashSize(bits int) int {
	if bits <= 0 {
		return 0
	}
	return 1 << bits
}

func finite(x float32) bool {
	return !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
}

func allFinite(xs []float32) bool {
	for _, x := range xs {
		if !finite(x) {
			return false
		}
	}
	return true
}
