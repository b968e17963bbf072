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
	// Evict favours slots whose cached prompt is worth least: empty, held twice, asked
	// for rarely, or unused longest, so a new prompt does not push out one still in use.
	Evict float64
	// Home favours the engine a prompt family hashes to (rendezvous hashing on its first
	// block) when nothing is cached yet, so each engine caches its own share of the
	// families. Off by default: in the simulator it unbalanced engines more than it saved
	// (scheduler/sim); a tie-breaker for traffic that arrives one request at a time.
	Home float64
}

// DefaultWeights favour a cached prefix strongly: reusing a long prompt saves more than a
// slightly emptier engine gains. They were tuned in scheduler/sim (`sluice bench sched`
// prints its tables).
func DefaultWeights() Weights {
	return Weights{Prefix: 4, Load: 1, KV: 0.5, GPU: 0.5, Evict: 1, Home: 0}
}

// evictHorizon is the age at which a slot's cached prompt counts as half stale.
const evictHorizon = 10 * time.Second

// eligible is the filter every policy applies: the engine serves the model, is healthy
// and not backing off after an overload answer, has a free slot and room in its KV
// cache, and (if it holds one model at a time) holds this one or none.
func eligible(now time.Time, e *Engine, j *Job) bool {
	if e == nil || !e.Healthy || e.inflight >= e.size || now.Before(e.backoff) {
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
			if e := c.engines[cd.Backend]; eligible(now, e, j) {
				c.rr = uint64((int(c.rr) + k + 1) % n)
				return e, cd, freeSlot(e)
			}
		}
		return nil, models.Candidate{}, -1
	case PolicyLeastLoaded:
		for _, cd := range j.Candidates {
			e := c.engines[cd.Backend]
			if !eligible(now, e, j) {
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
	home := c.home(j)
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if !eligible(now, e, j) {
			continue
		}
		slot, match := bestSlot(now, e, j.Blocks)
		if slot < 0 {
			continue // no free slot in service (eligible rules this out)
		}
		prefix := 0.0
		if len(j.Blocks) > 0 {
			prefix = float64(match) / float64(len(j.Blocks))
		}
		score := w.Prefix*prefix + w.Load*workScore(e) + w.KV*(1-e.KVUse) + w.GPU*(1-e.GPUUtil) +
			w.Evict*evictScore(now, e, slot, match)
		if e == home {
			score += w.Home
		}
		if score > bestScore {
			best, bestCd, bestScore, chosen = e, cd, score, slot
		}
	}
	if best == nil {
		return nil, models.Candidate{}, -1
	}
	return best, bestCd, chosen
}

// home is the engine j's prompt family hashes to among its candidates (rendezvous
// hashing: adding or losing an engine moves only the families that hashed to it).
func (c *Core) home(j *Job) *Engine {
	if len(j.Blocks) == 0 || len(j.Candidates) < 2 {
		return nil
	}
	var best *Engine
	var bestH uint64
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if e == nil || !e.Healthy {
			continue
		}
		if h := mix(j.Blocks[0] ^ e.hash); best == nil || h > bestH {
			best, bestH = e, h
		}
	}
	return best
}

// mix is a 64-bit finalizer (splitmix64), enough to spread rendezvous scores.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// evictScore is 1 when taking the slot overwrites nothing of value (it is empty, the job
// reuses what it holds, or another slot holds the same prompt family), and otherwise
// falls with how often and how recently the slot's prompt family was asked for.
func evictScore(now time.Time, e *Engine, slot, match int) float64 {
	if !e.Addressable {
		return 0.5
	}
	return 1 - slotValue(now, e, slot, match)
}

// slotValue is what a slot's cached prompt is worth keeping, in [0,1).
func slotValue(now time.Time, e *Engine, slot, match int) float64 {
	s := &e.Slots[slot]
	if len(s.Blocks) == 0 || match == len(s.Blocks) || duplicated(e, slot) {
		return 0
	}
	age := now.Sub(s.LastUsed)
	if age < 0 {
		age = 0
	}
	fresh := float64(evictHorizon) / float64(age+evictHorizon) // 1 just used, falls with age
	f := e.freq.at(s.Blocks[0], now)
	return fresh * f / (1 + f)
}

// duplicated reports whether another slot of e holds the same prompt family as slot.
func duplicated(e *Engine, slot int) bool {
	b := e.Slots[slot].Blocks
	for i := range e.size {
		if i != slot && len(e.Slots[i].Blocks) > 0 && e.Slots[i].Blocks[0] == b[0] {
			return true
		}
	}
	return false
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
	return max(float64(e.size-e.inflight), 0) / float64(e.size)
}

// bestSlot returns the free slot holding the longest prefix of blocks (for engines whose
// slots sluice addresses; for others, the engine's recent prompts), and the match. Among
// equal matches it takes the slot whose cached prompt is worth least, so that a prefix
// still in use is overwritten last.
func bestSlot(now time.Time, e *Engine, blocks []uint64) (int, int) {
	if !e.Addressable {
		return freeSlot(e), bestRecent(e, blocks)
	}
	best, bestMatch, bestValue := -1, -1, 0.0
	for i := range e.size {
		s := &e.Slots[i]
		if s.Busy {
			continue
		}
		m := matchBlocks(blocks, s.Blocks)
		if m < bestMatch {
			continue
		}
		v := slotValue(now, e, i, m)
		if m > bestMatch || v < bestValue || (v == bestValue && s.LastUsed.Before(e.Slots[best].LastUsed)) {
			best, bestMatch, bestValue = i, m, v
		}
	}
	return best, max(bestMatch, 0)
}

// freeSlot is the first free slot (for engines that choose their own slot it is only
// bookkeeping).
func freeSlot(e *Engine) int {
	for i := range e.size {
		if !e.Slots[i].Busy {
			return i
		}
	}
	return -1
}
