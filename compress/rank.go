package compress

import (
	"math"
	"slices"
)

// rankUnits scores every unit's relevance to the question (BM25 over stems, with the
// global LM's information as IDF prior), marks near-duplicates, and smooths scores with
// the neighbours in the same part.
func (c *Compressor) rankUnits(w *work, parts []Part, question string) {
	units, words := w.seg.units, w.seg.words
	w.q = w.q[:0]
	wantNum, wantName := questionType(question)
	for i := 0; i < len(question); {
		for i < len(question) && isSpace(question[i]) {
			i++
		}
		if i >= len(question) {
			break
		}
		s := i
		for i < len(question) && !isSpace(question[i]) {
			i++
		}
		qw := scanWord(question, s, i)
		if qw.letters == 0 {
			continue
		}
		bits := c.lm.Bits(qw.hash)
		if bits < stopBits && qw.flags&(fDigit|fCap) == 0 {
			continue
		}
		if qw.flags&fSentStart == 0 && qw.flags&fCap != 0 && bits < stopBits {
			continue
		}
		dup := false
		for _, t := range w.q {
			dup = dup || t.stem == qw.stem
		}
		if !dup && len(w.q) < 32 {
			w.q = append(w.q, qterm{stem: qw.stem, idf: bits})
		}
	}
	nq := len(w.q)
	w.tf = slices.Grow(w.tf[:0], len(units)*nq)[:len(units)*nq]
	clear(w.tf)
	w.set.reset(len(words) * 2)
	totalLen := 0
	prose := 0
	for ui := range units {
		u := &units[ui]
		u.keep, u.dup = false, false
		if u.kind != kindProse {
			if u.end-u.start >= 16 && w.set.add(lineHash(parts[u.seg].Text[u.start:u.end])) {
				u.dup = true
			}
			continue
		}
		prose++
		totalLen += int(u.w1 - u.w0)
		tf := w.tf[ui*nq : ui*nq+nq]
		for j := u.w0; j < u.w1; j++ {
			st := words[j].stem
			for k := range w.q {
				if w.q[k].stem == st && tf[k] < 255 {
					tf[k]++
				}
			}
		}
		for k := range tf {
			if tf[k] > 0 {
				w.q[k].df++
			}
		}
		u.dup = w.dedup(words[u.w0:u.w1])
	}
	if prose == 0 {
		prose = 1
	}
	avgLen := float64(totalLen) / float64(prose)
	n := float64(len(units))
	for k := range w.q {
		df := float64(w.q[k].df)
		local := math.Log(1 + (n-df+0.5)/(df+0.5))
		w.q[k].idf = float32(local * float64(w.q[k].idf) / 10)
		w.q[k].df = 0
	}
	for ui := range units {
		u := &units[ui]
		var s float64
		if u.kind == kindProse {
			l := float64(u.w1 - u.w0)
			tf := w.tf[ui*nq : ui*nq+nq]
			for k, f := range tf {
				if f == 0 {
					continue
				}
				ff := float64(f)
				s += float64(w.q[k].idf) * ff * (bm25K1 + 1) / (ff + bm25K1*(1-bm25B+bm25B*l/avgLen))
			}
			if wantNum || wantName {
				// The kind of answer asked for, not already in the question.
				for j := u.w0; j < u.w1; j++ {
					f := words[j].flags
					if wantNum && f&fDigit != 0 || wantName && f&fCap != 0 && f&fSentStart == 0 {
						inQ := false
						for _, t := range w.q {
							inQ = inQ || t.stem == words[j].stem
						}
						if !inQ {
							s += float64(c.Tuning.TypeBonus)
							break
						}
					}
				}
			}
			if nq == 0 { // no question: information density
				var bits float64
				for j := u.w0; j < u.w1; j++ {
					bits += float64(c.lm.Bits(words[j].hash))
				}
				s = bits / math.Max(l, 1)
			}
		} else if nq > 0 {
			s = c.lineScore(w, parts[u.seg].Text[u.start:u.end])
		}
		u.score = float32(s)
	}
	c.computeProx(w)
	if up := c.Tuning.UnitProx; up != 0 && nq > 0 {
		for ui := range units {
			u := &units[ui]
			if u.kind != kindProse || u.w1 == u.w0 {
				continue
			}
			var sum float32
			for j := u.w0; j < u.w1; j++ {
				sum += w.wprox[j]
			}
			u.score += up * sum / float32(u.w1-u.w0)
		}
	}
	// Clauses share their sentence's relevance; neighbours in the same part share some
	// relevance (pronouns, continuations).
	w.scores = slices.Grow(w.scores[:0], len(units))[:len(units)]
	if share := c.Tuning.SentShare; share > 0 {
		for ui := 0; ui < len(units); {
			end, sum := ui, float32(0)
			for end < len(units) && units[end].sent == units[ui].sent && units[end].seg == units[ui].seg {
				sum += units[end].score
				end++
			}
			for k := ui; k < end; k++ {
				w.scores[k] = units[k].score + share*(sum-units[k].score)
			}
			ui = end
		}
		for ui := range units {
			units[ui].score = w.scores[ui]
		}
	}
	for ui := range units {
		best := float32(0)
		if ui > 0 && units[ui-1].seg == units[ui].seg {
			best = units[ui-1].score
		}
		if ui+1 < len(units) && units[ui+1].seg == units[ui].seg {
			best = max(best, units[ui+1].score)
		}
		w.scores[ui] = units[ui].score + neighbour*best
	}
	// Later parts (recent history) are slightly preferred; duplicates go last.
	nparts := float32(len(parts))
	for ui := range units {
		s := w.scores[ui] + 0.01*float32(units[ui].seg)/nparts
		if units[ui].dup {
			s = -1
		}
		units[ui].score = s
	}
}

// lineScore scores a structured line by the question terms it contains.
func (c *Compressor) lineScore(w *work, line string) float64 {
	var s float64
	for i := 0; i < len(line); {
		for i < len(line) && !isWordByte(line[i]) {
			i++
		}
		st := i
		for i < len(line) && isWordByte(line[i]) {
			i++
		}
		if st == i {
			continue
		}
		h := scanWord(line, st, i).stem
		for _, t := range w.q {
			if t.stem == h {
				s += float64(t.idf)
			}
		}
	}
	return s
}

// dedup reports whether a prose unit repeats text seen earlier in the prompt: at least
// 80 % of its word trigrams (or the whole of a short unit) were seen.
func (w *work) dedup(ws []word) bool {
	if len(ws) < 6 {
		h := uint64(fnvOffset)
		for _, x := range ws {
			h = (h ^ x.hash) * fnvPrime
		}
		return len(ws) >= 3 && w.set.add(h^0x9e3779b97f4a7c15)
	}
	seen := 0
	for i := 0; i+2 < len(ws); i++ {
		h := ((ws[i].hash*fnvPrime)^ws[i+1].hash)*fnvPrime ^ ws[i+2].hash
		if w.set.add(h) {
			seen++
		}
	}
	return seen*5 >= (len(ws)-2)*4
}

func lineHash(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * fnvPrime
	}
	return h ^ 0x5bd1e995
}

// questionType reports questions that ask for a number or a name.
func questionType(q string) (num, name bool) {
	lq := lowerPrefix(q, 256)
	has := func(p string) bool {
		for i := 0; i+len(p) <= len(lq); i++ {
			if lq[i:i+len(p)] == p && (i == 0 || lq[i-1] == ' ') {
				return true
			}
		}
		return false
	}
	num = has("how many") || has("how much") || has("when") || has("what year") || has("how long") ||
		has("how old") || has("what percent") || has("how far") || has("how large") || has("how big")
	name = has("who") || has("whom") || has("whose") || has("where")
	return
}

// lowerPrefix is the first n bytes of s in ASCII lower case.
func lowerPrefix(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	b := make([]byte, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	return string(b)
}

// computeProx sets w.wprox[j], for every prose word, to the question terms found near
// it in its sentence, weighted by their IDF and decaying by ProxDecay a word: answers sit
// next to the words the question shares with the context.
func (c *Compressor) computeProx(w *work) {
	units, words := w.seg.units, w.seg.words
	w.wprox = slices.Grow(w.wprox[:0], len(words))[:len(words)]
	clear(w.wprox)
	if len(w.q) == 0 {
		return
	}
	decay := c.Tuning.ProxDecay
	for ui := 0; ui < len(units); {
		end := ui + 1
		if units[ui].kind != kindProse {
			ui = end
			continue
		}
		for end < len(units) && units[end].sent == units[ui].sent && units[end].seg == units[ui].seg && units[end].kind == kindProse {
			end++
		}
		w0, w1 := units[ui].w0, units[end-1].w1
		m := w.prox[:0]
		for j := w0; j < w1; j++ {
			v := float32(0)
			if words[j].flags&fPunctOnly == 0 {
				for _, t := range w.q {
					if t.stem == words[j].stem {
						v = max(v, t.idf)
					}
				}
			}
			m = append(m, v)
		}
		w.prox = m
		// Forward then backward, each term counted once at distance 0.
		acc := float32(0)
		fwd := w.fwd[:0]
		for j := range m {
			acc = acc*decay + m[j]
			fwd = append(fwd, acc)
		}
		w.fwd = fwd
		acc = 0
		for j := len(m) - 1; j >= 0; j-- {
			acc = acc*decay + m[j]
			w.wprox[int32(j)+w0] = fwd[j] + acc - m[j]
		}
		ui = end
	}
}
