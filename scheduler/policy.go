package scheduler

import (
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Policy names how the core picks an engine among those that can take a job.
type Policy string

// Policies. Round-robin and least-loaded are the baselines `sluice bench sched`
// compares against; they let the engine choose its slot.
const (
	PolicySluice      Policy = "sluice"       // weighted scorers: prefix cache, load, KV, GPU
	PolicyLeastLoaded Policy = "least-loaded" // the engine with the most free slots
	PolicyRoundRobin  Policy = "round-robin"  // the next engine with a free slot
)

// Weights weigh the scorers of the sluice policy; each scorer is in [0,1].
type Weights struct {
	Prefix float64 // share of the prompt already cached on the slot
	Load   float64 // share of the engine's slots that are free
	KV     float64 // share of the engine's KV cache that is free
	GPU    float64 // share of the GPU that is idle
	// Evict favours slots whose cached prompt is worth least: empty, or unused longest,
	// so a new prompt does not push out one that is still being reused.
	Evict float64
}

// DefaultWeights favour a cached prefix strongly: reusing a long prompt saves more than a
// slightly emptier engine gains.
func DefaultWeights() Weights { return Weights{Prefix: 4, Load: 1, KV: 0.5, GPU: 0.5, Evict: 1} }

// evictHorizon is the age at which a slot's cached prompt counts as half stale.
const evictHorizon = 10 * time.Second

// eligible is the filter every policy applies: the engine serves the model, is healthy,
// has a free slot and room in its KV cache, and (if it holds one model at a time) holds
// this one or none.
func eligible(e *Engine, j *Job) bool {
	if e == nil || !e.Healthy || e.inflight >= len(e.Slots) {
		return false
	}
	if e.KVTokens > 0 && e.inflight > 0 && e.tokens+j.Tokens > e.KVTokens {
		return false // its KV would not fit beside the work in flight
	}
	if e.drainFor != "" && e.drainFor != j.Model {
		return false
	}
	if e.Exclusive && e.active != "" && e.active != j.Model {
		return false
	}
	return true
}

// pick chooses the engine, candidate and slot for j under the core's policy (nil when no
// engine can take it now). It reads the state and changes nothing.
func (c *Core) pick(now time.Time, j *Job) (*Engine, models.Candidate, int) {
	var best *Engine
	var bestCd models.Candidate
	bestScore, chosen := -1.0, -1
	switch c.cfg.Policy {
	case PolicyRoundRobin:
		n := len(j.Candidates)
		for k := range n {
			cd := j.Candidates[(int(c.rr)+k)%n]
			if e := c.engines[cd.Backend]; eligible(e, j) {
				c.rr = uint64((int(c.rr) + k + 1) % n)
				return e, cd, freeSlot(e)
			}
		}
		return nil, models.Candidate{}, -1
	case PolicyLeastLoaded:
		for _, cd := range j.Candidates {
			e := c.engines[cd.Backend]
			if !eligible(e, j) {
				continue
			}
			if s := loadScore(e); s > bestScore {
				best, bestCd, bestScore = e, cd, s
			}
		}
		if best == nil {
			return nil, models.Candidate{}, -1
		}
		return best, bestCd, freeSlot(best)
	}
	w := c.cfg.Weights
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if !eligible(e, j) {
			continue
		}
		slot, match := bestSlot(e, j.Blocks)
		prefix := 0.0
		if len(j.Blocks) > 0 {
			prefix = float64(match) / float64(len(j.Blocks))
		}
		score := w.Prefix*prefix + w.Load*workScore(e) + w.KV*(1-e.KVUse) + w.GPU*(1-e.GPUUtil) +
			w.Evict*evictScore(now, e, slot, match)
		if score > bestScore {
			best, bestCd, bestScore, chosen = e, cd, score, slot
		}
	}
	if best == nil {
		return nil, models.Candidate{}, -1
	}
	return best, bestCd, chosen
}

// evictScore is 1 when taking the slot overwrites nothing (it is empty, or the job reuses
// what it holds), and falls towards 0 the more recently the slot's prompt was used.
func evictScore(now time.Time, e *Engine, slot, match int) float64 {
	if !e.Addressable {
		return 0.5
	}
	s := &e.Slots[slot]
	if len(s.Blocks) == 0 || match == len(s.Blocks) {
		return 1
	}
	age := now.Sub(s.LastUsed)
	if age < 0 {
		age = 0
	}
	return float64(age) / float64(age+evictHorizon)
}

// workScore is how free an engine is: half its free slots, half how little prompt it
// still has to process (a sequence in prefill slows every step of its engine far more
// than one decoding, so slot counts alone stack cold prompts on the same engine).
func workScore(e *Engine) float64 {
	return 0.5*loadScore(e) + 0.5/(1+float64(e.prefill)/prefillScale)
}

// prefillScale is the prompt backlog (tokens) at which an engine counts as half busy.
const prefillScale = 2048

func loadScore(e *Engine) float64 {
	return float64(len(e.Slots)-e.inflight) / float64(len(e.Slots))
}

// bestSlot returns the free slot holding the longest prefix of blocks (for engines whose
// slots sluice addresses; for others, the engine's recent prompts), and the match. Among
// equal matches it takes the slot unused the longest, so that a slot holding a valuable
// prefix is overwritten last.
func bestSlot(e *Engine, blocks []uint64) (int, int) {
	if !e.Addressable {
		return freeSlot(e), bestRecent(e, blocks)
	}
	best, bestMatch := -1, -1
	for i := range e.Slots {
		s := &e.Slots[i]
		if s.Busy {
			continue
		}
		m := matchBlocks(blocks, s.Blocks)
		if m > bestMatch || (m == bestMatch && cheaper(s, &e.Slots[best])) {
			best, bestMatch = i, m
		}
	}
	return best, max(bestMatch, 0)
}

// cheaper reports whether overwriting a costs less than overwriting b: an empty slot
// first, then the one unused longest.
func cheaper(a, b *Slot) bool {
	if (len(a.Blocks) == 0) != (len(b.Blocks) == 0) {
		return len(a.Blocks) == 0
	}
	return a.LastUsed.Before(b.LastUsed)
}

// freeSlot is the first free slot (for engines that choose their own slot it is only
// bookkeeping).
func freeSlot(e *Engine) int {
	for i := range e.Slots {
		if !e.Slots[i].Busy {
			return i
		}
	}
	return -1
}
