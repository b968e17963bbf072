package cache

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
)

// Builtin is the embedder that needs no model: a question becomes a sparse vector of
// hashed features (lightly stemmed words, word pairs and character trigrams), weighted
// by inverse document frequency, and a dense projection of it (signed feature hashing)
// for the nearest-neighbour index. The document frequencies start empty (English
// function words are down-weighted by a fixed list meanwhile) and learn from every
// question stored in the cache.
//
// Two questions are compared exactly on their sparse vectors (Similarity); the dense
// vector only finds candidates. It is safe for concurrent use.
type Builtin struct {
	dim int
	df  []atomic.Uint32 // document frequency per feature bucket
	n   atomic.Uint64   // documents counted

	pool sync.Pool // *analysis
}

var _ Embedder = (*Builtin)(nil)

// BuiltinDim is the dense dimension of the built-in embedder.
const BuiltinDim = 256

// BuiltinID names the built-in embedder in stored entries.
const BuiltinID = "builtin"

const dfBuckets = 1 << 20

// Feature kinds are mixed into the hash, so a word and a trigram never share a feature.
const (
	kindWord    = 0x9e3779b97f4a7c15
	kindPair    = 0xc2b2ae3d27d4eb4f
	kindTrigram = 0x165667b19e3779f9
	kindNumber  = 0x27d4eb2f165667c5
)

// Weights of the feature kinds, chosen with `sluice bench cache` (GPTCache's protocol and
// the Quora pairs): words carry the meaning, trigrams forgive typos and inflections,
// pairs keep a little word order.
const (
	wWord    = 1.0
	wPair    = 0.25
	wTrigram = 0.6
	wStop    = 0.3 // function words
)

// NewBuiltin returns the built-in embedder.
func NewBuiltin() *Builtin {
	return &Builtin{dim: BuiltinDim, df: make([]atomic.Uint32, dfBuckets)}
}

// ID implements Embedder.
func (b *Builtin) ID() string { return BuiltinID }

// Dim implements Embedder.
func (b *Builtin) Dim() int { return b.dim }

type feature struct {
	h uint64
	w float32
}

// sparse is a question's weighted features, sorted by hash, with unit norm.
type sparse []feature

// analysis is what the cache derives from one question: its words, sparse and dense
// vectors and the facts the guards compare.
type analysis struct {
	toks    []token
	feats   sparse
	hs      []uint64
	dense   []float32
	facts   facts
	content []contentWord
}

func (b *Builtin) get() *analysis {
	if a, ok := b.pool.Get().(*analysis); ok {
		return a
	}
	return &analysis{}
}

func (b *Builtin) put(a *analysis) { b.pool.Put(a) }

// hashes appends the features of toks to hs, with their kind weights in ws.
func hashes(toks []token, fn func(h uint64, w float32)) {
	var buf [64]byte
	prev := uint64(0)
	for i, t := range toks {
		h := xxhash.Sum64String(t.w)
		w := float32(wWord)
		if stopword(t.w) {
			w = wStop
		}
		if t.digits {
			fn(h^kindNumber, w)
		} else {
			fn(h^kindWord, w)
		}
		if i > 0 {
			fn((prev*31+h)^kindPair, wPair)
		}
		prev = h
		if !t.digits && len(t.w) >= 4 && !stopword(t.w) {
			// character trigrams with word boundaries: "#cat", gives "#ca", "cat", "at#"
			n := copy(buf[1:len(buf)-1], t.w)
			buf[0] = '#'
			buf[n+1] = '#'
			for j := 0; j+3 <= n+2; j++ {
				fn(xxhash.Sum64(buf[j:j+3])^kindTrigram, wTrigram)
			}
		}
	}
}

// Learn counts text as one document for the inverse document frequencies.
func (b *Builtin) Learn(text string) {
	a := b.get()
	defer b.put(a)
	a.toks = tokenize(a.toks[:0], text)
	a.hs = a.hs[:0]
	hashes(a.toks, func(h uint64, _ float32) { a.hs = append(a.hs, h) })
	slices.Sort(a.hs)
	for i, h := range a.hs {
		if i == 0 || h != a.hs[i-1] {
			b.df[h&(dfBuckets-1)].Add(1)
		}
	}
	b.n.Add(1)
}

// Documents is how many questions the frequencies were learned from.
func (b *Builtin) Documents() uint64 { return b.n.Load() }

func (b *Builtin) idf(h uint64, n float64) float32 {
	df := float64(b.df[h&(dfBuckets-1)].Load())
	return float32(math.Log((n+1)/(df+1)) + 1)
}

// analyze fills a from text: tokens, sparse features, dense vector and guard facts.
func (b *Builtin) analyze(a *analysis, text string, dense bool) {
	b.scan(a, text)
	b.weigh(a, dense)
}

// scan is the cheap half of analyze: tokens and the facts the guards compare.
func (b *Builtin) scan(a *analysis, text string) {
	a.toks = tokenize(a.toks[:0], text)
	a.facts = extractFacts(a.toks, &a.facts)
	a.feats = a.feats[:0]
	a.content = a.content[:0]
}

// weigh is the rest: the weighted features, the content words and, when asked, the
// dense vector.
func (b *Builtin) weigh(a *analysis, dense bool) {
	n := float64(b.n.Load())
	a.feats = a.feats[:0]
	hashes(a.toks, func(h uint64, w float32) { a.feats = append(a.feats, feature{h, w * b.idf(h, n)}) })
	a.feats = mergeFeatures(a.feats)
	if dense {
		a.dense = project(a.dense, a.feats, b.dim)
	}
	a.content = a.content[:0]
	for _, t := range a.toks {
		if stopword(t.w) || t.digits || negation(t.w) {
			continue
		}
		if _, ok := whWords[t.w]; ok {
			continue
		}
		a.content = append(a.content, contentWord{t.w, b.idf(xxhash.Sum64String(t.w)^kindWord, n)})
	}
}

// learn counts an analysed question (its features) as one document.
func (b *Builtin) learn(a *analysis) {
	for _, f := range a.feats {
		b.df[f.h&(dfBuckets-1)].Add(1)
	}
	b.n.Add(1)
}

// mergeFeatures sorts features, merges repeats (sublinear term frequency) and
// normalizes to unit length.
func mergeFeatures(fs sparse) sparse {
	slices.SortFunc(fs, func(a, b feature) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return 0
	})
	out := fs[:0]
	var norm float64
	for i := 0; i < len(fs); {
		j := i + 1
		w := fs[i].w
		for j < len(fs) && fs[j].h == fs[i].h {
			j++
		}
		if c := j - i; c > 1 {
			w *= float32(1 + math.Log(float64(c)))
		}
		out = append(out, feature{h: fs[i].h, w: w})
		norm += float64(w) * float64(w)
		i = j
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range out {
			out[i].w *= inv
		}
	}
	return out
}

// Embed implements Embedder.
func (b *Builtin) Embed(_ context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	a := b.get()
	defer b.put(a)
	for i, t := range texts {
		b.analyze(a, t, true)
		out[i] = slices.Clone(a.dense)
	}
	return out, nil
}

// Similarity is the exact cosine of two questions' sparse vectors.
func (b *Builtin) Similarity(x, y string) float64 {
	a, c := b.get(), b.get()
	defer b.put(a)
	defer b.put(c)
	b.analyze(a, x, false)
	b.analyze(c, y, false)
	return cosine(a.feats, c.feats)
}

// cosine of two unit sparse vectors.
func cosine(a, b sparse) float64 {
	var s float64
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i].h < b[j].h:
			i++
		case a[i].h > b[j].h:
			j++
		default:
			s += float64(a[i].w) * float64(b[j].w)
			i++
			j++
		}
	}
	return s
}

// project maps a sparse vector into dim dimensions (signed feature hashing) and
// normalizes it.
func project(dst []float32, sp sparse, dim int) []float32 {
	dst = slices.Grow(dst[:0], dim)[:dim]
	clear(dst)
	for _, f := range sp {
		d := int((f.h >> 1) % uint64(dim))
		if f.h&1 == 0 {
			dst[d] += f.w
		} else {
			dst[d] -= f.w
		}
	}
	normalize(dst)
	return dst
}

func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// Match compares two questions as a semantic lookup does: their exact similarity and,
// when a guard refuses the match, why ("" when none does). substitution is the
// substitution guard's limit (0: the default, negative: off).
func (b *Builtin) Match(x, y string, substitution float64) (float64, string) {
	a, c := b.get(), b.get()
	defer b.put(a)
	defer b.put(c)
	b.analyze(a, x, false)
	b.analyze(c, y, false)
	sim := cosine(a.feats, c.feats)
	if why := guard(&a.facts, &c.facts); why != "" {
		return sim, why
	}
	if substitution == 0 {
		substitution = DefaultSubstitution
	}
	if substitution > 0 && substituted(a.content, c.content, substitution) {
		return sim, guardSubstituted
	}
	return sim, ""
}
