package scheduler

import (
	"math"
	"time"
)

// freqTable counts how often each prompt family came to an engine lately, each count
// halving every freqHalfLife. It is a fixed set-associative table (freqSets sets of
// freqWays entries, indexed by a mix of the family's hash): a new family takes the entry
// of its set whose count has faded most, so touching and reading cost O(freqWays) with no
// allocation, and the memory is fixed however many families pass. Families that collide
// in a full set lose only their history (a count that starts again from 1); the counts
// that matter, those of the prompts cached on slots, are the ones touched often.
type freqTable struct {
	sets [freqSets][freqWays]freqEntry
}

const (
	freqSets = 512
	freqWays = 4
)

// freqHalfLife is how fast a prompt family's request count fades.
const freqHalfLife = 30 * time.Second

type freqEntry struct {
	family uint64
	count  float64 // as of at; 0: empty
	at     int64   // unix nanoseconds
}

func (d *freqEntry) value(now int64) float64 {
	dt := now - d.at
	if dt <= 0 || d.count == 0 {
		return d.count
	}
	return d.count * math.Exp2(-float64(dt)/float64(freqHalfLife))
}

func (t *freqTable) set(f uint64) *[freqWays]freqEntry {
	return &t.sets[mix(f)&(freqSets-1)]
}

// touch counts a request of prompt family f.
func (t *freqTable) touch(f uint64, now time.Time) {
	ns := now.UnixNano()
	set := t.set(f)
	victim, least := 0, math.Inf(1)
	for i := range set {
		d := &set[i]
		if d.count > 0 && d.family == f {
			d.count, d.at = d.value(ns)+1, ns
			return
		}
		if v := d.value(ns); v < least {
			victim, least = i, v
		}
	}
	set[victim] = freqEntry{family: f, count: 1, at: ns}
}

// at is how often prompt family f came lately (0 for a table never touched).
func (t *freqTable) at(f uint64, now time.Time) float64 {
	if t == nil {
		return 0
	}
	set := t.set(f)
	for i := range set {
		if d := &set[i]; d.count > 0 && d.family == f {
			return d.value(now.UnixNano())
		}
	}
	return 0
}
