package scheduler

import (
	"slices"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Cost-aware waiting: a job whose prompt is cached on a busy slot may wait for that slot
// instead of taking a free one cold (Core.hold, called by Submit and Dispatch in core.go).

// holder counts, in one Dispatch pass, the jobs of one prompt family (its first block)
// already waiting for the busy slots that hold it.
type holder struct {
	family uint64
	n      int
}

// minColdTokens is the least prefill a completed job that found nothing cached must have
// had for its time to first token to feed the engine's cost per uncached prompt token
// (shorter ones are mostly fixed cost).
const minColdTokens = 4 * TokensPerBlock

// maxHold caps how long a job waits for its own slot, whatever the estimates say: they
// come from averages, and a wrong one must not idle a slot for long.
const maxHold = 2 * time.Second

// hold decides cost-aware waiting (sluice policy): j, whose prompt is cached on a slot
// that is busy, waits for it instead of taking a free slot where more of its prompt
// would have to be processed, when the wait is expected to cost less than the prefill
// it saves. The wait expected is the busy slot's remaining service time (the engine's
// mean time a job holds a slot less what the job there has had, plus the prefill of an
// uncached prompt it has not finished, or a whole mean once it has had more), for the
// k-th job of the family waiting in this Dispatch the k-th slot to free (a round of
// service more for each time round the family's slots). The saving
// is the engine's measured time to first token per uncached prompt token (from completed
// jobs that found nothing cached) times the tokens the busy slot has cached beyond the
// best free slot. A job waits so only until its bound (j.holdUntil): its arrival plus
// the saving, at most maxHold, half its class's SLO and half the time to its deadline,
// and never later than the bound it was first given; Wake tells the caller when the
// first bound passes. It is decided once per Dispatch (c.pass) for each job.
//
// Both estimates must be measured (three completed jobs at least) before a job waits:
// an engine that has served nothing yet is never waited for.
func (c *Core) hold(now time.Time, j *Job) bool {
	if j.holdPass == c.pass {
		return !j.holdUntil.IsZero() // decided in this pass already
	}
	j.holdPass = c.pass
	j.holdUntil = time.Time{}
	if c.cfg.Policy != PolicySluice || c.cfg.NoPrefixWait || len(j.Blocks) == 0 || j.PromptTokens <= 0 {
		return false
	}
	measured := false // some engine it could wait for has both estimates (cheap test first)
	for _, cd := range j.Candidates {
		if e := c.engines[cd.Backend]; e != nil && e.Addressable && e.svc.ok() && e.cold.ok() {
			measured = true
			break
		}
	}
	if !measured {
		return false
	}
	bestFree := -1 // the most of its prompt a free slot it could take holds
	for _, cd := range j.Candidates {
		if e := c.engines[cd.Backend]; eligible(now, e, j) {
			_, m := bestSlot(now, e, j.Blocks)
			bestFree = max(bestFree, m)
		}
	}
	if bestFree < 0 || bestFree == len(j.Blocks) {
		return false // no free slot to leave to others (it waits anyway), or one holds it all
	}
	c.waits = c.waits[:0]
	var gain, svc float64
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if e == nil || !e.Healthy || !e.Addressable || !e.svc.ok() || !e.cold.ok() || now.Before(e.backoff) {
			continue
		}
		if e.drainFor != "" && e.drainFor != j.Model || e.Exclusive && e.active != "" && e.active != j.Model {
			continue // it will not take j when the slot frees
		}
		for i := range e.size {
			s := &e.Slots[i]
			if !s.Busy || s.job == nil {
				continue
			}
			m := matchBlocks(j.Blocks, s.Blocks)
			if 2*m < len(j.Blocks) || m <= bestFree {
				continue
			}
			gain = max(gain, e.cold.v*float64(min((m-bestFree)*TokensPerBlock, j.PromptTokens)))
			svc = max(svc, e.svc.v)
			left := e.svc.v - now.Sub(s.job.Dispatched).Seconds()
			if !s.job.prefilled && s.job.prefill > 0 {
				// Still processing a prompt it did not find cached: the mean holds
				// mostly hits, so add the prefill it still has before it.
				left = max(left, 0) + e.cold.v*float64(s.job.prefill)
			}
			if left <= 0 {
				left = e.svc.v // running longer than the mean: no sign it ends soon
			}
			c.waits = append(c.waits, left)
		}
	}
	if len(c.waits) == 0 {
		return false
	}
	bound := j.Enqueued.Add(min(time.Duration(gain*float64(time.Second)), maxHold))
	if slo := c.cfg.SLO[j.Priority]; slo > 0 {
		bound = minTime(bound, j.Enqueued.Add(slo/2))
	}
	if !j.Deadline.IsZero() {
		bound = minTime(bound, j.Enqueued.Add(j.Deadline.Sub(j.Enqueued)/2))
	}
	if !j.holdFirst.IsZero() {
		bound = minTime(bound, j.holdFirst)
	}
	// The k-th job of this family to wait in this pass gets the k-th slot to free.
	fam, k := j.Blocks[0], 0
	hi := -1
	for i := range c.holders {
		if c.holders[i].family == fam {
			k, hi = c.holders[i].n, i
			break
		}
	}
	n := len(c.waits)
	slices.Sort(c.waits)
	wait := c.waits[k%n] + float64(k/n)*svc
	if !now.Add(time.Duration(wait * float64(time.Second))).Before(bound) {
		return false
	}
	if hi < 0 {
		c.holders = append(c.holders, holder{family: fam})
		hi = len(c.holders) - 1
	}
	c.holders[hi].n++
	j.holdUntil = bound
	if j.holdFirst.IsZero() {
		j.holdFirst = bound
		c.stats.PrefixWaits++
	}
	if c.wake.IsZero() || bound.Before(c.wake) {
		c.wake = bound
	}
	if j.Priority == models.PriorityInteractive {
		c.heldHigh++
	}
	return true
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// Wake is when Dispatch must run again although nothing else happens: a job that waits
// for a busy slot holding its prompt stops waiting then (zero: no job waits so). It is
// set by the last Dispatch.
func (c *Core) Wake() time.Time { return c.wake }

// canStart reports whether some engine that serves j could take it now.
func (c *Core) canStart(now time.Time, j *Job) bool {
	for _, cd := range j.Candidates {
		if eligible(now, c.engines[cd.Backend], j) {
			return true
		}
	}
	return false
}

// freeSlots counts the free slots of healthy engines that are not backing off.
func (c *Core) freeSlots(now time.Time) int {
	n := 0
	for _, e := range c.engines {
		if e.Healthy && e.inflight < e.size && !now.Before(e.backoff) {
			n += e.size - e.inflight
		}
	}
	return n
}
