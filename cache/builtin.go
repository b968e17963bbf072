package cache

import (
	"context"
	"math"
	"math/bits"
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
	df  []atomic.Uint32 // document frequency per feature bucket (dfBucket)
	n   atomic.Uint64   // documents counted
	// logs[d] is log(d+1) for the small document frequencies, which are nearly all of
	// them: the inverse document frequency of a feature costs a table lookup.
	logs [logTable]float64

	pool sync.Pool // *analysis
}

var _ Embedder = (*Builtin)(nil)

// BuiltinDim is the dense dimension of the built-in embedder.
const BuiltinDim = 256

// BuiltinID names the built-in embedder in stored entries.
const BuiltinID = "builtin"

const dfBits = 20

// dfBucket is a feature's bucket in the frequency table: the hash's top bits, so that a
// question's features, sorted by hash, visit the 4 MB table in address order (one
// prefetched sweep instead of a cache miss each).
func dfBucket(h uint64) uint64 { return h >> (64 - dfBits) }

// logTable bounds the precomputed logarithms (Builtin.logs; repeats too).
const logTable = 4096

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
	b := &Builtin{dim: BuiltinDim, df: make([]atomic.Uint32, 1<<dfBits)}
	for d := range b.logs {
		b.logs[d] = math.Log(float64(d + 1))
	}
	return b
}

// log1 is log(d+1).
func (b *Builtin) log1(d uint64) float64 {
	if d < logTable {
		return b.logs[d]
	}
	return math.Log(float64(d) + 1)
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
	scratch []feature // the sort's second buffer
	counts  []uint32  // and its buckets
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

// hashes gives fn each feature of toks with its kind weight, and sets each token's h.
func hashes(toks []token, fn func(h uint64, w float32)) {
	var buf [64]byte
	prev := uint64(0)
	for i := range toks {
		t := &toks[i]
		h := xxhash.Sum64String(t.w)
		t.h = h
		w := float32(wWord)
		stop := t.lex&lexStop != 0
		if stop {
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
		if !t.digits && len(t.w) >= 4 && !stop {
			// character trigrams with word boundaries: "#cat", gives "#ca", "cat", "at#"
			n := copy(buf[1:len(buf)-1], t.w)
			buf[0] = '#'
			buf[n+1] = '#'
			for j := 0; j+3 <= n+2; j++ {
				fn(trigramHash(buf[j], buf[j+1], buf[j+2])^kindTrigram, wTrigram)
			}
		}
	}
}

// trigramHash is xxhash.Sum64 of the three bytes a, b, c, written out: a word's
// trigrams are most of its features, and the general function's length dispatch cost
// more than the hash itself.
func trigramHash(a, b, c byte) uint64 {
	const (
		prime1 = 11400714785074694791
		prime2 = 14029467366897019727
		prime3 = 1609587929392839161
		prime5 = 2870177450012600261
	)
	h := uint64(prime5 + 3)
	h ^= uint64(a) * prime5
	h = bits.RotateLeft64(h, 11) * prime1
	h ^= uint64(b) * prime5
	h = bits.RotateLeft64(h, 11) * prime1
	h ^= uint64(c) * prime5
	h = bits.RotateLeft64(h, 11) * prime1
	h ^= h >> 33
	h *= prime2
	h ^= h >> 29
	h *= prime3
	h ^= h >> 32
	return h
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
			b.df[dfBucket(h)].Add(1)
		}
	}
	b.n.Add(1)
}

// Documents is how many questions the frequencies were learned from.
func (b *Builtin) Documents() uint64 { return b.n.Load() }

// idf is a feature's inverse document frequency, log((n+1)/(df+1)) + 1, with logN1 =
// log(n+1).
func (b *Builtin) idf(h uint64, logN1 float64) float32 {
	return float32(logN1 - b.log1(uint64(b.df[dfBucket(h)].Load())) + 1)
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
	logN1 := b.log1(b.n.Load())
	a.feats = a.feats[:0]
	// Features carry their kind's weight until merged; the inverse document frequency
	// (a lookup in a 4 MB table) is applied once per distinct feature, in the same order
	// of float32 products as before: (kind weight x idf) x repeats.
	a.feats = slices.Grow(a.feats, 8*len(a.toks)) // words, pairs, trigrams: one allocation at most
	hashes(a.toks, func(h uint64, w float32) { a.feats = append(a.feats, feature{h, w}) })
	a.feats = b.mergeFeatures(sortFeatures(a.feats, &a.scratch, &a.counts), logN1)
	if dense {
		a.dense = project(a.dense, a.feats, b.dim)
	}
	a.content = a.content[:0]
	for i := range a.toks {
		t := &a.toks[i]
		if t.digits || t.lex&(lexStop|lexNeg|lexWh) != 0 {
			continue
		}
		a.content = append(a.content, contentWord{t.w, b.idf(t.h^kindWord, logN1)})
	}
}

// analysed is what indexing a question needs of its analysis: the index partition, the
// dense vector and the document-frequency buckets of its features (for learn). A
// non-streamed miss keeps it from the lookup, so the indexer analyses nothing again.
type analysed struct {
	part  Scope
	dense []float32
	df    []uint32
}

// keep copies what indexing needs out of a (which goes back to the pool).
func (b *Builtin) keep(a *analysis, part Scope) *analysed {
	df := make([]uint32, len(a.feats))
	for i, f := range a.feats {
		df[i] = uint32(dfBucket(f.h))
	}
	return &analysed{part: part, dense: slices.Clone(a.dense), df: df}
}

// learnKept is learn for a kept analysis.
func (b *Builtin) learnKept(k *analysed) {
	for _, i := range k.df {
		b.df[i].Add(1)
	}
	b.n.Add(1)
}

// learn counts an analysed question (its features) as one document.
func (b *Builtin) learn(a *analysis) {
	for _, f := range a.feats {
		b.df[dfBucket(f.h)].Add(1)
	}
	b.n.Add(1)
}

// mergeFeatures merges repeats of features sorted by hash (sublinear term frequency),
// multiplies each distinct one by its inverse document frequency (logN1 = log(n+1)) and
// normalizes to unit length.
func (b *Builtin) mergeFeatures(fs sparse, logN1 float64) sparse {
	out := fs[:0]
	var norm float64
	for i := 0; i < len(fs); {
		j := i + 1
		w := fs[i].w * b.idf(fs[i].h, logN1)
		for j < len(fs) && fs[j].h == fs[i].h {
			j++
		}
		if c := j - i; c > 1 {
			w *= float32(1 + b.log1(uint64(c-1)))
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

// sortFeatures sorts fs by hash, stably. A long question has thousands of features, and
// a comparison sort through a function value cost more than the rest of its analysis:
// one counting pass on the hashes' top bits (about one bucket per feature) scatters them
// into *scratch nearly sorted, and an insertion sort finishes the few buckets holding more
// than one. counts and scratch are reused between calls; the result is fs or *scratch.
func sortFeatures(fs []feature, scratch *[]feature, counts *[]uint32) []feature {
	if len(fs) < 64 {
		insertionSort(fs)
		return fs
	}
	k := min(bits.Len(uint(len(fs))), 16)
	shift := 64 - k
	if cap(*counts) < 1<<k {
		*counts = make([]uint32, 1<<k)
	}
	c := (*counts)[:1<<k]
	clear(c)
	for i := range fs {
		c[fs[i].h>>shift]++
	}
	pos := uint32(0)
	for d, n := range c {
		c[d] = pos
		pos += n
	}
	if cap(*scratch) < len(fs) {
		*scratch = make([]feature, len(fs))
	}
	dst := (*scratch)[:len(fs)]
	for i := range fs {
		d := fs[i].h >> shift
		dst[c[d]] = fs[i]
		c[d]++
	}
	insertionSort(dst)
	*scratch = fs[:0] // the caller keeps dst; fs's buffer is the next call's scratch
	return dst
}

// insertionSort sorts fs by hash, stably; linear on nearly sorted input.
func insertionSort(fs []feature) {
	for i := 1; i < len(fs); i++ {
		x := fs[i]
		j := i
		for j > 0 && fs[j-1].h > x.h {
			fs[j] = fs[j-1]
			j--
		}
		fs[j] = x
	}
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
