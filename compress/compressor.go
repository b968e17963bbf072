package compress

import (
	"context"
	"math"
	"slices"
	"sync"
)

// Part is one piece of a prompt: a message, or the context or question cut out of one.
type Part struct {
	Text string
	// Fixed parts (instructions, the final question) are kept verbatim; their tokens
	// count against the budget.
	Fixed bool
}

// Budget is how far to compress: Tokens, when set, is the target size of the whole
// prompt; otherwise Ratio is the target ratio of tokens before to tokens after.
type Budget struct {
	Ratio  float64
	Tokens int
}

// Result is a compressed prompt.
type Result struct {
	Texts []string // one per part (fixed parts unchanged)
	// Before and After are estimated tokens of the whole prompt.
	Before, After int
	// Changed is false when nothing was removed (too short, already within budget).
	Changed bool
}

// WordScorer scores words by their information: the model-scored mode asks a small
// language model; the default is the statistical LM. Bits is called with the words of
// the units the coarse stage kept and fills bits[i] for words[i] (self-information in
// bits, higher is more informative); it returns false to fall back to the LM.
type WordScorer interface {
	Bits(ctx context.Context, text []string, spans [][2]int32, bits []float32) bool
}

// Compressor prunes prompts: coarse (rank sentences and lines by relevance to the
// question, drop near-duplicates), then fine (drop the least informative words of what
// is left). It is safe for concurrent use.
type Compressor struct {
	lm   *LM
	pool sync.Pool // *work
	// Tuning holds the algorithm's weights (DefaultTuning).
	Tuning Tuning
	// LearnEvery feeds every n-th compressed prompt's words to the LM (0: never).
	LearnEvery uint32
	learnN     uint32
	learnMu    sync.Mutex
}

// NewCompressor returns a compressor over lm.
func NewCompressor(lm *LM) *Compressor {
	return &Compressor{lm: lm, Tuning: DefaultTuning}
}

// Tuning holds the compressor's weights; docs/compression.md explains each.
type Tuning struct {
	// Slack is how much more than the budget the coarse stage keeps for the fine stage to
	// prune, at most.
	Slack float64
	// RankBonus is added to the words of the most relevant unit (falling to 0 for the
	// least relevant one kept), in bits.
	RankBonus float32
	// MinKeep drops a prose unit whose words the fine stage kept fewer than this share
	// of: a gutted sentence is noise, and its tokens serve better elsewhere.
	MinKeep float64
	// Decay is how fast the rank bonus falls: by e every Decay units of rank (0: linearly
	// from the first kept unit to the last).
	Decay float32
	// SentShare is the share of the rest of its sentence's relevance a clause inherits.
	SentShare float32
	// Verbatim is the share of the budget given to the most relevant units whole, before
	// the fine stage prunes the rest.
	Verbatim float64
	// ProxWeight scales the question terms near a word (by IDF, decaying by ProxDecay a
	// word) into bits added to its score.
	ProxWeight, ProxDecay float32
	// PhraseMin > 0 cuts sentences into phrases of at least that many words (before
	// prepositions, conjunctions, relative pronouns) that the coarse stage ranks.
	PhraseMin int
	// UnitProx adds the mean question-term proximity of a unit's words to its relevance.
	UnitProx float32
	// TypeBonus is added to the relevance of a unit holding what a question asks for
	// (a number for "how many", a name for "who") that the question does not hold.
	TypeBonus float32
}

// DefaultTuning is fitted on XQuAD and checked on QMSum (sluice bench compress).
var DefaultTuning = Tuning{Slack: 1.3, RankBonus: 20, Decay: 2, MinKeep: 0.4, SentShare: 0.3, Verbatim: 0.8,
	ProxWeight: 1, ProxDecay: 0.7, UnitProx: 0.5, TypeBonus: 3}

// LM returns the compressor's language model.
func (c *Compressor) LM() *LM { return c.lm }

type qterm struct {
	stem uint64
	idf  float32
	df   int32
}

type work struct {
	seg     segmenter
	q       []qterm
	tf      []uint8 // units × len(q)
	scores  []float32
	order   []int32
	rank    []int32
	set     hashSet
	counts  hashCount
	out     []byte
	texts   []string
	spans   [][2]int32
	partTok []int
	prox    []float32
	fwd     []float32
	wprox   []float32
}

func (c *Compressor) get() *work {
	if w, ok := c.pool.Get().(*work); ok {
		return w
	}
	return &work{}
}

// Tuning (see docs/compression.md; fitted on XQuAD, checked on QMSum).
const (
	bm25K1       = 1.2
	bm25B        = 0.75
	neighbour    = 0.25 // share of the best neighbour's relevance a unit inherits
	capBonus     = 3.0  // bits added to capitalised words (names) not starting a sentence
	repeatFactor = 1.5  // bits removed per doubling of a word's earlier occurrences
	stopBits     = 10.0 // question words below this many bits are not terms
	histBins     = 512
	binsPerBit   = 8
)

// Compress compresses parts to the budget, using question (may be empty) to judge
// relevance. scorer may be nil (the statistical LM).
func (c *Compressor) Compress(ctx context.Context, parts []Part, question string, b Budget, scorer WordScorer) Result {
	w := c.get()
	defer c.pool.Put(w)
	w.seg.reset()
	w.seg.phraseMin = c.Tuning.PhraseMin
	w.partTok = w.partTok[:0]
	res := Result{Texts: make([]string, len(parts))}
	fixed := 0
	for i, p := range parts {
		res.Texts[i] = p.Text
		if p.Fixed {
			t := EstimateTokens(p.Text)
			fixed += t
			w.partTok = append(w.partTok, t)
			continue
		}
		n0 := len(w.seg.units)
		w.seg.segment(p.Text, int32(i))
		t := 0
		for _, u := range w.seg.units[n0:] {
			t += int(u.tokens)
		}
		w.partTok = append(w.partTok, t)
	}
	total := fixed
	for i, p := range parts {
		if !p.Fixed {
			total += w.partTok[i]
		}
	}
	res.Before, res.After = total, total
	target := b.Tokens
	if target <= 0 {
		if b.Ratio <= 1 {
			return res
		}
		target = int(float64(total) / b.Ratio)
	}
	budget := target - fixed
	compressible := total - fixed
	if compressible <= 0 || budget >= compressible {
		return res
	}
	if budget < 0 {
		budget = 0
	}
	c.rankUnits(w, parts, question)
	structKept := c.coarse(w, budget)
	c.fine(ctx, w, budget-structKept, scorer, parts)
	after := fixed
	for i, p := range parts {
		if p.Fixed {
			continue
		}
		s, t := w.render(p.Text, int32(i))
		res.Texts[i] = s
		after += t
	}
	res.After = after
	res.Changed = after < total
	c.learn(w)
	return res
}

// coarse keeps units by relevance while they fit: structured units at their full size,
// prose at its size divided by the slack the fine stage may still remove. It returns the
// tokens of the structured units kept.
func (c *Compressor) coarse(w *work, budget int) int {
	units := w.seg.units
	w.order = w.order[:0]
	for i := range units {
		w.order = append(w.order, int32(i))
	}
	slices.SortStableFunc(w.order, func(a, b int32) int {
		sa, sb := units[a].score, units[b].score
		switch {
		case sa > sb:
			return -1
		case sa < sb:
			return 1
		}
		return 0
	})
	slack := c.Tuning.Slack
	if slack < 1 {
		slack = 1
	}
	used, structKept := 0.0, 0
	kept := w.order[:0:0]
	for _, ui := range w.order {
		u := &units[ui]
		if u.dup {
			continue
		}
		cost := float64(u.tokens)
		if u.kind == kindProse {
			cost /= slack
		}
		if used+cost > float64(budget) {
			continue
		}
		used += cost
		u.keep = true
		kept = append(kept, ui)
		if u.kind != kindProse {
			structKept += int(u.tokens)
		}
	}
	if len(kept) == 0 {
		// Nothing fits whole: keep the most relevant unit for the fine stage to cut.
		for _, ui := range w.order {
			if u := &units[ui]; !u.dup && u.kind == kindProse {
				u.keep = true
				kept = append(kept, ui)
				break
			}
		}
	}
	w.rank = slices.Grow(w.rank[:0], len(units))[:len(units)]
	for i := range w.rank {
		w.rank[i] = -1
	}
	for r, ui := range kept {
		w.rank[ui] = int32(r)
	}
	return structKept
}

// fine scores the words of kept prose units and keeps the most informative ones that
// fit the budget; protected words (numbers, identifiers, URLs) and groups (quotes, names)
// are never cut.
func (c *Compressor) fine(ctx context.Context, w *work, budget int, scorer WordScorer, parts []Part) {
	units, words := w.seg.units, w.seg.words
	w.scores = slices.Grow(w.scores[:0], len(words))[:len(words)]
	nKept := 0
	for ui := range units {
		if units[ui].keep && units[ui].kind == kindProse {
			nKept++
		}
	}
	if nKept == 0 {
		return
	}
	// Base information of every word of a kept unit.
	usedScorer := false
	if scorer != nil {
		w.texts, w.spans = w.texts[:0], w.spans[:0]
		for ui := range units {
			u := &units[ui]
			if u.keep && u.kind == kindProse {
				w.texts = append(w.texts, parts[u.seg].Text)
				w.spans = append(w.spans, [2]int32{u.w0, u.w1})
			}
		}
		usedScorer = c.modelBits(ctx, w, scorer)
	}
	// The most relevant units, up to Verbatim of the budget, are kept whole.
	whole := c.Tuning.Verbatim * float64(budget)
	for _, ui := range w.order {
		u := &units[ui]
		u.whole = false
		if !u.keep || u.kind != kindProse {
			continue
		}
		if whole >= float64(u.tokens) {
			whole -= float64(u.tokens)
			u.whole = true
		}
	}
	w.counts.reset(len(words))
	maxRank := float32(0)
	for ui := range units {
		if units[ui].keep && units[ui].kind == kindProse && float32(w.rank[ui]) > maxRank {
			maxRank = float32(w.rank[ui])
		}
	}
	for ui := range units {
		u := &units[ui]
		if !u.keep || u.kind != kindProse {
			continue
		}
		r := c.Tuning.RankBonus
		switch {
		case c.Tuning.Decay > 0:
			r *= float32(math.Exp(-float64(float32(w.rank[ui]) / c.Tuning.Decay)))
		case maxRank > 0:
			r *= 1 - float32(w.rank[ui])/(maxRank+1)
		}
		for j := u.w0; j < u.w1; j++ {
			x := &words[j]
			var s float32
			if usedScorer {
				s = w.scores[j]
			} else {
				s = c.lm.Bits(x.hash)
			}
			if k := w.counts.inc(x.hash); k > 1 {
				s -= repeatFactor * float32(math.Log2(float64(k)))
			}
			if x.flags&fPunctOnly != 0 {
				s = 0
			}
			if x.flags&fCap != 0 && x.flags&fSentStart == 0 {
				s += capBonus
			}
			w.scores[j] = s + r
		}
	}
	if pw := c.Tuning.ProxWeight; pw != 0 && len(w.q) > 0 {
		for ui := range units {
			if u := &units[ui]; u.keep && u.kind == kindProse {
				for j := u.w0; j < u.w1; j++ {
					w.scores[j] += pw * w.wprox[j]
				}
			}
		}
	}
	// Names: runs of capitalised words (with the connectors and the article before
	// them) are kept or dropped together, as are quoted spans.
	c.groupNames(w)
	for ui := range units {
		u := &units[ui]
		if !u.keep || u.kind != kindProse {
			continue
		}
		for j := u.w0; j < u.w1; {
			g := words[j].group
			k := j + 1
			s := w.scores[j]
			prot := words[j].flags&fProtected != 0
			if g >= 0 {
				for k < u.w1 && words[k].group == g {
					s = max(s, w.scores[k])
					prot = prot || words[k].flags&fProtected != 0
					k++
				}
			}
			if prot || u.whole {
				s = float32(math.Inf(1))
			}
			for m := j; m < k; m++ {
				w.scores[m] = s
			}
			j = k
		}
	}
	c.threshold(w, budget)
}

// threshold keeps, in the kept prose units, the words whose score reaches the lowest
// histogram bin at which everything at or above it fits the budget. Units left with
// less than MinKeep of their tokens are dropped and the cut is made again without them.
func (c *Compressor) threshold(w *work, budget int) {
	units, words := w.seg.units, w.seg.words
	for round := 0; round < 4; round++ {
		var hist [histBins]int32
		protectedTok := 0
		for ui := range units {
			u := &units[ui]
			if !u.keep || u.kind != kindProse {
				continue
			}
			for j := u.w0; j < u.w1; j++ {
				if s := w.scores[j]; math.IsInf(float64(s), 1) {
					protectedTok += int(words[j].tokens)
				} else {
					hist[bin(s)] += int32(words[j].tokens)
				}
			}
		}
		left := budget - protectedTok
		cut := histBins // keep nothing but protected words
		acc := 0
		for b := histBins - 1; b >= 0; b-- {
			if acc+int(hist[b]) > left {
				break
			}
			acc += int(hist[b])
			cut = b
		}
		again := false
		for ui := range units {
			u := &units[ui]
			if !u.keep || u.kind != kindProse {
				continue
			}
			kept := 0
			for j := u.w0; j < u.w1; j++ {
				s := w.scores[j]
				if math.IsInf(float64(s), 1) || bin(s) >= cut {
					words[j].flags &^= fDropped
					kept += int(words[j].tokens)
				} else {
					words[j].flags |= fDropped
				}
			}
			if kept == 0 || float64(kept) < c.Tuning.MinKeep*float64(u.tokens) {
				u.keep = false
				again = again || kept > 0
			}
		}
		if !again {
			return
		}
	}
}

// fDropped marks a word the fine stage removed (only read for kept prose units).
const fDropped uint16 = 1 << 15

func bin(s float32) int {
	b := int(s * binsPerBit)
	if b < 0 {
		return 0
	}
	if b >= histBins {
		return histBins - 1
	}
	return b
}

// groupNames joins runs of capitalised words not starting a sentence, with connectors
// (of, the, de, and, ...) between them and an article before them, into groups.
func (c *Compressor) groupNames(w *work) {
	units, words := w.seg.units, w.seg.words
	for ui := range units {
		u := &units[ui]
		if !u.keep || u.kind != kindProse {
			continue
		}
		for j := u.w0; j < u.w1; j++ {
			if words[j].group >= 0 || !isName(&words[j]) {
				continue
			}
			end := j + 1
			for k := j + 1; k < u.w1; k++ {
				if words[k].group >= 0 {
					break
				}
				if isName(&words[k]) || words[k].flags&fDigit != 0 {
					end = k + 1
					continue
				}
				if (words[k].flags&fConnector != 0 || isConnector(words[k].hash)) && k+1 < u.w1 && isName(&words[k+1]) {
					continue
				}
				break
			}
			start := j
			if j > u.w0 && words[j-1].group < 0 && isArticle(words[j-1].hash) {
				start = j - 1
			}
			if end-start > 1 && end-start <= 12 {
				for k := start; k < end; k++ {
					words[k].group = int32(start)
				}
			}
			j = end - 1
		}
	}
}

func isName(x *word) bool {
	return x.flags&fCap != 0 && x.flags&fSentStart == 0
}

var (
	hOf, hThe, hDe, hAnd, hA, hAn, hFor, hVon, hVan, hDu, hLa, hOn, hIn, hUpon = hashWord("of"), hashWord("the"),
		hashWord("de"), hashWord("and"), hashWord("a"), hashWord("an"), hashWord("for"), hashWord("von"),
		hashWord("van"), hashWord("du"), hashWord("la"), hashWord("on"), hashWord("in"), hashWord("upon")
)

func isConnector(h uint64) bool {
	switch h {
	case hOf, hThe, hDe, hAnd, hFor, hVon, hVan, hDu, hLa, hOn, hUpon, hA, hAn:
		return true
	}
	return false
}

func isArticle(h uint64) bool { return h == hThe || h == hA || h == hAn }

// render writes part seg's kept units: kept words joined by single spaces, the
// strongest separator between kept units. It returns the text and its estimated tokens.
func (w *work) render(text string, seg int32) (string, int) {
	units, words := w.seg.units, w.seg.words
	out := w.out[:0]
	tok := 0
	pending := sepNone
	started := false
	for ui := range units {
		u := &units[ui]
		if u.seg != seg {
			continue
		}
		if u.keep {
			if started {
				switch pending {
				case sepPara:
					out = append(out, '\n', '\n')
				case sepLine:
					out = append(out, '\n')
				default:
					out = append(out, ' ')
				}
			}
			started = true
			pending = sepNone
			if u.kind != kindProse {
				out = append(out, text[u.start:u.end]...)
				tok += int(u.tokens)
			} else {
				first := true
				lastKept := int32(-1)
				for j := u.w0; j < u.w1; j++ {
					x := &words[j]
					if x.flags&fDropped != 0 {
						continue
					}
					if !first {
						out = append(out, ' ')
					}
					first = false
					out = append(out, text[x.start:x.end]...)
					tok += int(x.tokens)
					lastKept = j
				}
				// Keep the sentence's end mark when its last word went.
				if lw := &words[u.w1-1]; lastKept >= 0 && lastKept != u.w1-1 && lw.flags&fEndPunct != 0 &&
					words[lastKept].flags&fEndPunct == 0 {
					out = append(out, lastNonClose(text[lw.start:lw.end]))
					tok++
				}
			}
		}
		if u.sep > pending {
			pending = u.sep
		}
	}
	w.out = out
	return string(out), tok
}

// learn feeds a sample of prompts' words to the traffic model.
func (c *Compressor) learn(w *work) {
	if c.LearnEvery == 0 || c.lm.traffic == nil {
		return
	}
	c.learnMu.Lock()
	c.learnN++
	do := c.learnN%c.LearnEvery == 0
	c.learnMu.Unlock()
	if !do {
		return
	}
	hs := make([]uint64, 0, len(w.seg.words))
	for _, x := range w.seg.words {
		if x.flags&(fPunctOnly|fProtected) == 0 {
			hs = append(hs, x.hash)
		}
	}
	c.lm.Observe(hs)
}

// modelBits asks the scorer for the words' information and writes it to w.scores (the
// LM's where the scorer gave none).
func (c *Compressor) modelBits(ctx context.Context, w *work, scorer WordScorer) bool {
	n := 0
	for _, sp := range w.spans {
		n += int(sp[1] - sp[0])
	}
	bits := make([]float32, n)
	spans := make([][2]int32, 0, n)
	texts := make([]string, 0, n)
	for i, sp := range w.spans {
		for j := sp[0]; j < sp[1]; j++ {
			x := &w.seg.words[j]
			spans = append(spans, [2]int32{x.start, x.end})
			texts = append(texts, w.texts[i])
		}
	}
	if !scorer.Bits(ctx, texts, spans, bits) {
		return false
	}
	k := 0
	for _, sp := range w.spans {
		for j := sp[0]; j < sp[1]; j++ {
			b := bits[k]
			if b != b { // NaN: not scored
				b = c.lm.Bits(w.seg.words[j].hash)
			}
			w.scores[j] = b
			k++
		}
	}
	return true
}
