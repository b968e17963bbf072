package compress

import (
	"bufio"
	"bytes"
	"compress/gzip"
	_ "embed"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// words.txt.gz is the base unigram table: the 30,000 most frequent English words of
// SUBTLEX-US with their counts (scripts/gen-wordfreq.sh makes it).
//
//go:embed data/words.txt.gz
var wordsGz []byte

// LM is the statistical language model the fine stage scores words with: a word's
// self-information, -log2 P(word), under a unigram model that mixes a base table from a
// corpus with counts learnt from the traffic itself (Observe), so words that are common
// in this deployment's prompts count as less informative. It is safe for concurrent use.
type LM struct {
	base    map[uint64]float32 // FNV-1a of the lower-cased word → self-information in bits
	unknown float32            // self-information of a word the base table lacks
	total   float64

	traffic *traffic // nil: the base table only
}

// traffic holds word counts learnt from prompts: a count-min sketch (two rows) of
// 32-bit counters, halved when the total passes a bound so recent traffic dominates.
type traffic struct {
	rows  [2][]atomic.Uint32
	mask  uint64
	total atomic.Uint64
	decay sync.Mutex
	limit uint64
}

// trafficBits is the size of each sketch row (2^16 counters, 256 KiB for both rows).
const trafficBits = 16

// NewLM loads the embedded base table. learn makes the model also learn from traffic.
func NewLM(learn bool) (*LM, error) {
	zr, err := gzip.NewReader(bytes.NewReader(wordsGz))
	if err != nil {
		return nil, fmt.Errorf("compress: word table: %w", err)
	}
	defer zr.Close()
	lm := &LM{base: make(map[uint64]float32, 30000)}
	sc := bufio.NewScanner(zr)
	type entry struct {
		h uint64
		c float64
	}
	var entries []entry
	for sc.Scan() {
		line := sc.Text()
		if t, ok := strings.CutPrefix(line, "#total "); ok {
			lm.total, err = strconv.ParseFloat(t, 64)
			if err != nil {
				return nil, fmt.Errorf("compress: word table total: %w", err)
			}
			continue
		}
		w, c, ok := strings.Cut(line, " ")
		if !ok {
			return nil, fmt.Errorf("compress: word table: bad line %q", line)
		}
		n, err := strconv.ParseFloat(c, 64)
		if err != nil {
			return nil, fmt.Errorf("compress: word table: bad count in %q", line)
		}
		entries = append(entries, entry{hashWord(w), n})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("compress: word table: %w", err)
	}
	if lm.total <= 0 || len(entries) == 0 {
		return nil, fmt.Errorf("compress: word table is empty")
	}
	for _, e := range entries {
		if _, dup := lm.base[e.h]; !dup {
			lm.base[e.h] = float32(-math.Log2(e.c / lm.total))
		}
	}
	// An unseen word is rarer than the rarest listed one.
	lm.unknown = float32(-math.Log2(0.5 / lm.total))
	if learn {
		t := &traffic{mask: 1<<trafficBits - 1, limit: 1 << 26}
		for i := range t.rows {
			t.rows[i] = make([]atomic.Uint32, 1<<trafficBits)
		}
		lm.traffic = t
	}
	return lm, nil
}

// hashWord hashes a word the way scanWord does.
func hashWord(w string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		h = (h ^ uint64(c)) * fnvPrime
	}
	return h
}

// Bits returns the self-information of the word with hash h, in bits.
func (lm *LM) Bits(h uint64) float32 {
	b, ok := lm.base[h]
	if !ok {
		b = lm.unknown
	}
	t := lm.traffic
	if t == nil {
		return b
	}
	n := t.total.Load()
	if n < 4096 {
		return b
	}
	c := min(t.rows[0][h&t.mask].Load(), t.rows[1][(h>>32)&t.mask].Load())
	// Mix the two unigram models, the traffic's weight growing to 1/3 as it is learnt.
	lambda := 1 - min(float64(n)/(1<<20), 1)/3
	p := lambda*math.Exp2(-float64(b)) + (1-lambda)*float64(c)/float64(n)
	return float32(-math.Log2(p))
}

// Known reports whether the base table lists the word.
func (lm *LM) Known(h uint64) bool {
	_, ok := lm.base[h]
	return ok
}

// Observe counts words (by hash) into the traffic model. Callers sample: counting
// every prompt is not needed to follow what the traffic talks about.
func (lm *LM) Observe(hashes []uint64) {
	t := lm.traffic
	if t == nil || len(hashes) == 0 {
		return
	}
	for _, h := range hashes {
		t.rows[0][h&t.mask].Add(1)
		t.rows[1][(h>>32)&t.mask].Add(1)
	}
	if t.total.Add(uint64(len(hashes))) > t.limit && t.decay.TryLock() {
		// Halve everything: old traffic fades, counters never overflow.
		for r := range t.rows {
			for i := range t.rows[r] {
				v := t.rows[r][i].Load()
				t.rows[r][i].Store(v / 2)
			}
		}
		t.total.Store(t.total.Load() / 2)
		t.decay.Unlock()
	}
}
