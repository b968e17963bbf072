package classify

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// TrainOptions tune `sluice router train`. The zero value of a field means its default.
type TrainOptions struct {
	// HashBits sizes the hashed-word table (1<<HashBits weights); -1: no hashed words.
	HashBits int `json:"hash_bits"`
	// L2 and L2Hash are the ridge penalties on the dense and hashed weights.
	L2     float64 `json:"l2"`
	L2Hash float64 `json:"l2_hash"`
	// MaxIter bounds the optimiser's iterations (each one pass over the data or more).
	MaxIter int `json:"max_iter"`
	// Seed draws the cross-validation folds; training itself is deterministic.
	Seed uint64 `json:"seed"`
	// BalanceSources gives each source (the part of an example's "source" before the
	// first '/', e.g. "mmlu" and "gsm8k") the same total weight, so the largest set does
	// not drown the others.
	BalanceSources bool `json:"balance_sources"`
	// BalanceSubsources gives, within each top-level source, every full source (e.g.
	// each "mmlu/<subject>") the same total weight, so a few large subjects do not
	// decide what the model learns about the rest.
	BalanceSubsources bool `json:"balance_subsources,omitempty"`
	// BalanceClasses gives the strong and weak labels the same total weight.
	BalanceClasses bool `json:"balance_classes"`
	// Label is how examples with scores are labelled: "win" (1 when strong > weak, else
	// 0; the default) or "gain" (0.5 + (strong-weak)/2R, R the largest |strong-weak| in
	// the data: ranks by the expected quality gain, counting the requests where the weak
	// model does better against the strong one). An explicit "label" always wins.
	Label string `json:"label,omitempty"`
}

// DefaultTrainOptions are the options the embedded weights were trained with.
func DefaultTrainOptions() TrainOptions {
	return TrainOptions{HashBits: 12, L2: 3e-2, L2Hash: 1e-3, MaxIter: 500, Seed: 1, BalanceSources: true, Label: "win"}
}

func (o TrainOptions) withDefaults() TrainOptions {
	d := DefaultTrainOptions()
	if o.HashBits == 0 {
		o.HashBits = d.HashBits
	}
	if o.L2 == 0 {
		o.L2 = d.L2
	}
	if o.L2Hash == 0 {
		o.L2Hash = d.L2Hash
	}
	if o.MaxIter == 0 {
		o.MaxIter = d.MaxIter
	}
	return o
}

func (o TrainOptions) validate() error {
	switch {
	case o.HashBits < -1 || o.HashBits > 24:
		return fmt.Errorf("hash bits %d out of range -1..24", o.HashBits)
	case o.L2 < 0 || o.L2Hash < 0 || !finite64(o.L2) || !finite64(o.L2Hash):
		return errors.New("L2 penalties must be finite and >= 0")
	case o.Label != "" && o.Label != "win" && o.Label != "gain":
		return fmt.Errorf("label %q: want win or gain", o.Label)
	case o.MaxIter < 1 || o.MaxIter > 100000:
		return fmt.Errorf("max iterations %d out of range 1..100000", o.MaxIter)
	}
	return nil
}

// sample is one featurised training example.
type sample struct {
	dense   [numDense]float32
	lo, hi  int     // its hashed buckets: buckets[lo:hi]
	scale   float32 // 1/sqrt(hashed tokens)
	y, w    float32 // label in [0,1] and weight
	example int
}

type dataset struct {
	samples []sample
	buckets []uint32
	bits    int
}

func featurise(xs []Example, bits int, label string) (*dataset, error) {
	var span float64
	for i := range xs {
		if x := &xs[i]; x.HasScores() {
			span = max(span, math.Abs(*x.Strong-*x.Weak))
		}
	}
	if !finite64(span) {
		return nil, errors.New("the strong and weak scores differ by more than a float64 holds")
	}
	lex := newLexicon()
	ds := &dataset{samples: make([]sample, len(xs)), bits: bits}
	var mask uint64
	if bits > 0 {
		mask = 1<<bits - 1
	}
	for i := range xs {
		if err := xs[i].validate(); err != nil {
			return nil, fmt.Errorf("example %d: %w", i+1, err)
		}
		e := extractor{lex: lex, hashMask: mask, sink: ds.buckets}
		f := e.extract(xs[i].Request())
		s := &ds.samples[i]
		s.dense = f.dense
		s.lo = len(ds.buckets)
		if bits > 0 {
			ds.buckets = e.sink
			if f.nWords > 0 {
				s.scale = 1 / float32(math.Sqrt(float64(f.nWords)))
			}
		}
		s.hi = len(ds.buckets)
		s.y = float32(xs[i].Target())
		if x := &xs[i]; label == "gain" && x.Label == nil && span > 0 {
			s.y = float32(0.5 + (*x.Strong-*x.Weak)/(2*span))
		}
		s.w = float32(xs[i].TrainWeight())
		s.example = i
	}
	return ds, nil
}

// weigh applies the balancing options and normalises the weights to mean 1.
func (ds *dataset) weigh(xs []Example, o TrainOptions) error {
	if o.BalanceSubsources {
		// Within a top-level source, scale each full source to that source's mean size.
		total := make(map[string]float64)
		subs := make(map[string]map[string]bool)
		for _, s := range ds.samples {
			src := xs[s.example].Source
			total[src] += float64(s.w)
			top := topSource(src)
			if subs[top] == nil {
				subs[top] = map[string]bool{}
			}
			subs[top][src] = true
		}
		topTotal := make(map[string]float64)
		for src, t := range total {
			topTotal[topSource(src)] += t
		}
		for i := range ds.samples {
			s := &ds.samples[i]
			src := xs[s.example].Source
			top := topSource(src)
			s.w = float32(float64(s.w) / total[src] * topTotal[top] / float64(len(subs[top])))
		}
	}
	if o.BalanceSources {
		total := make(map[string]float64)
		for _, s := range ds.samples {
			total[topSource(xs[s.example].Source)] += float64(s.w)
		}
		for i := range ds.samples {
			s := &ds.samples[i]
			s.w = float32(float64(s.w) / total[topSource(xs[s.example].Source)])
		}
	}
	if o.BalanceClasses {
		var pos, neg float64
		for _, s := range ds.samples {
			pos += float64(s.w * s.y)
			neg += float64(s.w * (1 - s.y))
		}
		if pos == 0 || neg == 0 {
			return errors.New("balance classes: the data has only one class")
		}
		for i := range ds.samples {
			s := &ds.samples[i]
			s.w = float32(float64(s.w) * (float64(s.y)/pos + float64(1-s.y)/neg) / 2)
		}
	}
	var sum float64
	for _, s := range ds.samples {
		sum += float64(s.w)
	}
	if !(sum > 0) {
		return errors.New("the examples' weights sum to zero")
	}
	k := float32(float64(len(ds.samples)) / sum)
	for i := range ds.samples {
		ds.samples[i].w *= k
	}
	return nil
}

func topSource(s string) string {
	top, _, _ := strings.Cut(s, "/")
	return top
}

// Train fits the classifier to labelled examples: logistic regression on the dense
// features and hashed words, fitted by L-BFGS. The same examples and options give the
// same weights.
func Train(xs []Example, o TrainOptions) (*File, error) {
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("classify: train: %w", err)
	}
	if len(xs) == 0 {
		return nil, errors.New("classify: train: no examples")
	}
	bits := max(o.HashBits, 0)
	ds, err := featurise(xs, bits, o.Label)
	if err != nil {
		return nil, fmt.Errorf("classify: train: %w", err)
	}
	if err := ds.weigh(xs, o); err != nil {
		return nil, fmt.Errorf("classify: train: %w", err)
	}
	p, st := fit(ds, o)
	f := p.file(ds)
	f.Calibration = p.calibrate(ds, xs)
	h := sha256.New()
	enc := json.NewEncoder(h)
	for i := range xs {
		x := xs[i]
		x.ID, x.Category = "", ""
		if err := enc.Encode(&x); err != nil {
			return nil, err
		}
	}
	var pos float64
	for _, s := range ds.samples {
		pos += float64(s.w * s.y)
	}
	f.Training = &Training{
		Examples:   len(xs),
		Positives:  round6(pos / float64(len(ds.samples))),
		DataHash:   hex.EncodeToString(h.Sum(nil)),
		Options:    o,
		Iterations: st.Iterations,
		Converged:  st.Converged,
		Loss:       round6(st.Loss),
	}
	return f, nil
}

// params are the weights being fitted.
type params struct {
	bias  float32
	dense [numDense]float32
	hash  []float32
}

func (p *params) logit(ds *dataset, s *sample) float32 {
	z := p.bias
	for d, x := range s.dense {
		z += p.dense[d] * x
	}
	var hs float32
	for _, b := range ds.buckets[s.lo:s.hi] {
		hs += p.hash[b]
	}
	return z + hs*s.scale
}

// The parameter vector L-BFGS works on: θ[0] the bias, θ[1:1+numDense] the dense
// weights, the rest the hashed-word weights.
const offDense, offHash = 1, 1 + numDense

// objective is the mean weighted log loss plus the ridge penalties, and its gradient
// (written into grad). Unregularised bias.
func (ds *dataset) objective(theta, grad []float64, o TrainOptions) float64 {
	clear(grad)
	var loss float64
	hash := theta[offHash:]
	ghash := grad[offHash:]
	for i := range ds.samples {
		s := &ds.samples[i]
		z := theta[0]
		for d, x := range s.dense {
			z += theta[offDense+d] * float64(x)
		}
		var hs float64
		for _, b := range ds.buckets[s.lo:s.hi] {
			hs += hash[b]
		}
		z += hs * float64(s.scale)
		y, w := float64(s.y), float64(s.w)
		// log(1+e^z) - y z, computed stably
		if z > 0 {
			loss += w * (z + math.Log1p(math.Exp(-z)) - y*z)
		} else {
			loss += w * (math.Log1p(math.Exp(z)) - y*z)
		}
		g := w * (1/(1+math.Exp(-z)) - y)
		grad[0] += g
		for d, x := range s.dense {
			grad[offDense+d] += g * float64(x)
		}
		gs := g * float64(s.scale)
		for _, b := range ds.buckets[s.lo:s.hi] {
			ghash[b] += gs
		}
	}
	n := float64(len(ds.samples))
	loss /= n
	for i := range grad {
		grad[i] /= n
	}
	for d := range numDense {
		t := theta[offDense+d]
		loss += o.L2 / 2 * t * t
		grad[offDense+d] += o.L2 * t
	}
	for b, t := range hash {
		loss += o.L2Hash / 2 * t * t
		ghash[b] += o.L2Hash * t
	}
	return loss
}

// fit minimises the objective with L-BFGS (full batch, backtracking line search): the
// problem is convex, so the answer does not depend on any ordering or seed.
func fit(ds *dataset, o TrainOptions) (*params, fitStats) {
	n := offHash + hashSize(ds.bits)
	theta := make([]float64, n)
	grad := make([]float64, n)
	f := ds.objective(theta, grad, o)
	const hist = 10
	var sHist, yHist [][]float64
	var rho []float64
	dir := make([]float64, n)
	next := make([]float64, n)
	gnext := make([]float64, n)
	alpha := make([]float64, hist)
	g0 := norm(grad)
	var st fitStats
	for st.Iterations < o.MaxIter {
		st.Iterations++
		// two-loop recursion: dir = -H·grad
		copy(dir, grad)
		for k := len(sHist) - 1; k >= 0; k-- {
			alpha[k] = rho[k] * dot(sHist[k], dir)
			axpy(-alpha[k], yHist[k], dir)
		}
		if k := len(sHist) - 1; k >= 0 {
			scale(dot(sHist[k], yHist[k])/dot(yHist[k], yHist[k]), dir)
		}
		for k := range sHist {
			beta := rho[k] * dot(yHist[k], dir)
			axpy(alpha[k]-beta, sHist[k], dir)
		}
		scale(-1, dir)
		slope := dot(grad, dir)
		if slope >= 0 { // not a descent direction: restart from the gradient
			sHist, yHist, rho = nil, nil, nil
			copy(dir, grad)
			scale(-1, dir)
			slope = dot(grad, dir)
		}
		step := 1.0
		if len(sHist) == 0 {
			step = 1 / max(norm(grad), 1)
		}
		var fnext float64
		for tries := 0; ; tries++ {
			copy(next, theta)
			axpy(step, dir, next)
			fnext = ds.objective(next, gnext, o)
			if fnext <= f+1e-4*step*slope || tries == 40 {
				break
			}
			step /= 2
		}
		sv := make([]float64, n)
		yv := make([]float64, n)
		for i := range sv {
			sv[i] = next[i] - theta[i]
			yv[i] = gnext[i] - grad[i]
		}
		done := f-fnext <= 1e-10*max(1, math.Abs(f))
		theta, next = next, theta
		grad, gnext = gnext, grad
		f = fnext
		if sy := dot(sv, yv); sy > 1e-12 {
			if len(sHist) == hist {
				sHist, yHist, rho = sHist[1:], yHist[1:], rho[1:]
			}
			sHist, yHist, rho = append(sHist, sv), append(yHist, yv), append(rho, 1/sy)
		}
		if done || norm(grad) <= 1e-6*g0 {
			st.Converged = true
			break
		}
	}
	st.Loss = f
	p := &params{bias: float32(theta[0]), hash: make([]float32, hashSize(ds.bits))}
	for d := range numDense {
		p.dense[d] = float32(theta[offDense+d])
	}
	for b := range p.hash {
		p.hash[b] = float32(theta[offHash+b])
	}
	return p, st
}

// fitStats says how the optimiser ended.
type fitStats struct {
	Iterations int
	Converged  bool    // the loss stopped falling before MaxIter
	Loss       float64 // the objective at the end (weighted log loss + penalties)
}

func dot(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

func axpy(a float64, x, y []float64) {
	for i := range x {
		y[i] += a * x[i]
	}
}

func scale(a float64, x []float64) {
	for i := range x {
		x[i] *= a
	}
}

func norm(x []float64) float64 { return math.Sqrt(dot(x, x)) }

// file turns fitted weights into a weights file, with the training means that reasons
// are measured from.
func (p *params) file(ds *dataset) *File {
	f := &File{
		Format:         FileFormat,
		FeatureVersion: featureVersion,
		Features:       slices.Clone(denseNames[:]),
		Weights:        make([]float32, numDense),
		Bias:           p.bias,
		Means:          make([]float32, numDense),
		HashBits:       ds.bits,
	}
	copy(f.Weights, p.dense[:])
	if ds.bits > 0 {
		f.HashWeights = p.hash
	}
	var wsum, words float64
	means := make([]float64, numDense)
	for i := range ds.samples {
		s := &ds.samples[i]
		w := float64(s.w)
		wsum += w
		for d, x := range s.dense {
			means[d] += w * float64(x)
		}
		var hs float32
		for _, b := range ds.buckets[s.lo:s.hi] {
			hs += p.hash[b]
		}
		words += w * float64(hs*s.scale)
	}
	for d := range means {
		f.Means[d] = float32(means[d] / wsum)
	}
	f.WordsMean = float32(words / wsum)
	return f
}

// calibrate fits Platt scaling, sigmoid(a·z + b), of the linear score z to the win labels
// (strong better than weak, or the explicit label) by Newton's method: the weights rank
// requests, the calibration makes the score a probability.
func (p *params) calibrate(ds *dataset, xs []Example) *Calibration {
	type obs struct{ z, y, w float64 }
	os := make([]obs, len(ds.samples))
	for i := range ds.samples {
		s := &ds.samples[i]
		os[i] = obs{float64(p.logit(ds, s)), xs[s.example].Target(), float64(s.w)}
	}
	a, b := 1.0, 0.0
	for range 50 {
		var ga, gb, haa, hab, hbb float64
		for _, o := range os {
			q := 1 / (1 + math.Exp(-(a*o.z + b)))
			g := o.w * (q - o.y)
			h := o.w * q * (1 - q)
			ga += g * o.z
			gb += g
			haa += h * o.z * o.z
			hab += h * o.z
			hbb += h
		}
		haa += 1e-9
		hbb += 1e-9
		det := haa*hbb - hab*hab
		if det <= 0 {
			break
		}
		da := (hbb*ga - hab*gb) / det
		db := (haa*gb - hab*ga) / det
		a, b = a-da, b-db
		if math.Abs(da) < 1e-9 && math.Abs(db) < 1e-9 {
			break
		}
	}
	if !(a > 0) || !finite64(a) || !finite64(b) {
		return nil // degenerate data: keep sigmoid(z)
	}
	return &Calibration{A: float32(a), B: float32(b)}
}

// CrossValidate trains on k-1 folds and scores the held-out fold, k times, and returns
// every example's held-out score and fold. Folds are drawn by a seeded shuffle of the examples or,
// bySource, of whole sources (every example of a source in one fold): the held-out
// sources are then unseen in training, which estimates how the options carry over to
// other kinds of requests rather than to more of the same.
func CrossValidate(xs []Example, o TrainOptions, k int, bySource bool) (scores []float64, folds []int, err error) {
	if k < 2 || k > len(xs) {
		return nil, nil, fmt.Errorf("classify: cross-validation: %d folds for %d examples", k, len(xs))
	}
	o = o.withDefaults()
	fold := make([]int, len(xs))
	rng := rand.New(rand.NewPCG(o.Seed, 0xf01d))
	if bySource {
		idx := map[string]int{}
		var sources []string
		for i := range xs {
			if _, ok := idx[xs[i].Source]; !ok {
				idx[xs[i].Source] = len(sources)
				sources = append(sources, xs[i].Source)
			}
		}
		if len(sources) < k {
			return nil, nil, fmt.Errorf("classify: cross-validation by source: %d sources for %d folds", len(sources), k)
		}
		of := make([]int, len(sources))
		for i, j := range rng.Perm(len(sources)) {
			of[j] = i % k
		}
		for i := range xs {
			fold[i] = of[idx[xs[i].Source]]
		}
	} else {
		for i, j := range rng.Perm(len(xs)) {
			fold[j] = i % k
		}
	}
	scores = make([]float64, len(xs))
	for f := range k {
		var train []Example
		var held []int
		for i := range xs {
			if fold[i] == f {
				held = append(held, i)
			} else {
				train = append(train, xs[i])
			}
		}
		wf, err := Train(train, o)
		if err != nil {
			return nil, nil, err
		}
		m, err := New(wf)
		if err != nil {
			return nil, nil, err
		}
		for _, i := range held {
			scores[i], _ = m.Score(xs[i].Request())
		}
	}
	return scores, fold, nil
}

func sqrt32(x float32) float32 { return float32(math.Sqrt(float64(x))) }

func round6(x float64) float64 { return math.Round(x*1e6) / 1e6 }
