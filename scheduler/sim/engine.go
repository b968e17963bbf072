package sim

import (
	"time"

	"github.com/sluice-llm/sluice/scheduler"
)

// request is one simulated request through its life.
type request struct {
	idx     int
	arrival int64
	blocks  []uint64
	prompt  int // tokens
	job     scheduler.Job

	eng        *engine
	slot       int
	dispatched int64
	reserved   int  // KV tokens held while in the batch
	remaining  int  // prompt tokens still to prefill
	chunk      int  // prompt tokens processed in the current step (0: decoding)
	started    bool // its first prompt chunk has been planned (RequestBusy charged)
	out        int  // tokens generated
	first      int64
	reused     int // prompt tokens restored from a cache
	completed  int // times completed (must end at exactly 1)
}

// slotState is what the engine really holds in one slot (not what the core believes).
type slotState struct {
	busy     bool
	blocks   []uint64 // the prompt whose KV the slot holds
	tokens   int
	lastUsed int64
}

// hostEntry is one prompt in the engine-wide host cache.
type hostEntry struct {
	blocks []uint64
	tokens int
	used   uint64 // LRU stamp
}

// hostCache is llama-server's --cache-ram prompt cache: prompts leaving slots, bounded
// in tokens, least recently used dropped first.
type hostCache struct {
	entries []hostEntry
	tokens  int
	limit   int
	clock   uint64
}

// save keeps a prompt evicted from a slot (an identical one is only refreshed).
func (h *hostCache) save(blocks []uint64, tokens int) {
	if len(blocks) == 0 || tokens > h.limit {
		return
	}
	h.clock++
	for i := range h.entries {
		e := &h.entries[i]
		if len(e.blocks) == len(blocks) && matchBlocks(e.blocks, blocks) == len(blocks) {
			e.used = h.clock
			return
		}
	}
	for h.tokens+tokens > h.limit && len(h.entries) > 0 {
		old := 0
		for i := range h.entries {
			if h.entries[i].used < h.entries[old].used {
				old = i
			}
		}
		h.tokens -= h.entries[old].tokens
		h.entries = append(h.entries[:old], h.entries[old+1:]...)
	}
	h.entries = append(h.entries, hostEntry{blocks: blocks, tokens: tokens, used: h.clock})
	h.tokens += tokens
}

// restore returns the longest prefix of blocks held in the cache (and refreshes it).
func (h *hostCache) restore(blocks []uint64) int {
	best, at := 0, -1
	for i := range h.entries {
		if m := matchBlocks(blocks, h.entries[i].blocks); m > best {
			best, at = m, i
		}
	}
	if at >= 0 {
		h.clock++
		h.entries[at].used = h.clock
	}
	return best
}

// engine is one simulated GPU engine running continuous batching.
type engine struct {
	id      string
	slots   []slotState
	waiting []*request // ready to join the batch (FIFO), held back by KV capacity
	active  []*request // in the running batch
	kvUsed  int
	host    hostCache

	stepping    bool  // a step is in flight
	stepBegan   int64 // when it started
	startQueued bool  // a step start event is pending
	busy        int64 // virtual ns spent in steps (for GPU utilization)
	busySeen    int64 // busy at the last refresh
}

// matchBlocks counts the leading blocks two prompts share.
func matchBlocks(a, b []uint64) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// slotSimilarity is llama-server's --slot-prompt-similarity default: a free slot whose
// cached prompt shares more than this fraction of the new prompt is preferred.
const slotSimilarity = 0.1

// chooseSlot is llama-server's own choice when the request names no slot: the free slot
// sharing the longest prefix (above slotSimilarity of the prompt), else the free slot
// used least recently.
func (e *engine) chooseSlot(r *request, tokensPerBlock int) int {
	best, bestMatch := -1, 0
	for i := range e.slots {
		s := &e.slots[i]
		if s.busy {
			continue
		}
		m := matchBlocks(r.blocks, s.blocks)
		if m > bestMatch && float64(m*tokensPerBlock) > slotSimilarity*float64(r.prompt) {
			best, bestMatch = i, m
		}
	}
	if best >= 0 {
		return best
	}
	for i := range e.slots {
		s := &e.slots[i]
		if !s.busy && (best < 0 || s.lastUsed < e.slots[best].lastUsed) {
			best = i
		}
	}
	return best
}

// occupy puts r in slot i and returns the prompt tokens the engine can reuse: the
// longest common block prefix with what the slot holds or, with a host cache, with any
// prompt the engine kept. At least one prompt token is always computed (the engine
// needs its logits).
func (e *engine) occupy(r *request, i int, m *EngineModel, tokensPerBlock int) int {
	s := &e.slots[i]
	match := matchBlocks(r.blocks, s.blocks)
	if m.HostCache {
		e.host.save(s.blocks, s.tokens)
		match = max(match, e.host.restore(r.blocks))
	}
	s.busy, s.blocks, s.tokens = true, r.blocks, r.prompt
	if match == 0 {
		return 0
	}
	return min(match*tokensPerBlock, r.prompt-1)
}

// admit moves waiting requests into the batch, first come first served, while their
// prompt and output fit the KV capacity (a lone request always fits: Config.fill checks).
func (e *engine) admit(m *EngineModel, output int) {
	n := 0
	for _, r := range e.waiting {
		need := r.prompt + output
		if m.KVTokens > 0 && e.kvUsed+need > m.KVTokens && len(e.active) > 0 {
			break
		}
		e.kvUsed += need
		r.reserved = need
		e.active = append(e.active, r)
		n++
	}
	e.waiting = e.waiting[:copy(e.waiting, e.waiting[n:])]
}

// plan sets each running sequence's work for the next step and returns its duration.
func (e *engine) plan(m *EngineModel) time.Duration {
	d := m.StepBase
	for _, r := range e.active {
		if r.remaining > 0 {
			r.chunk = min(m.PrefillChunk, r.remaining)
			d += time.Duration(r.chunk) * m.PerPrefillToken
			if !r.started {
				r.started = true
				d += m.RequestBusy
			}
		} else {
			r.chunk = 0
			d += m.PerDecodeToken
		}
	}
	return d
}

// advance applies a finished step at now: prompts progress, first tokens come out,
// sequences decode. It appends the sequences that produced their last token to done and
// removes them from the batch.
func (e *engine) advance(now int64, output int, done []*request) []*request {
	keep := e.active[:0]
	for _, r := range e.active {
		if r.chunk > 0 {
			r.remaining -= r.chunk
			if r.remaining == 0 {
				r.first, r.out = now, 1
			}
		} else {
			r.out++
		}
		if r.out >= output {
			done = append(done, r)
			e.kvUsed -= r.reserved
			s := &e.slots[r.slot]
			s.busy, s.lastUsed = false, now
			continue
		}
		keep = append(keep, r)
	}
	clear(e.active[len(keep):])
	e.active = keep
	return done
}

// busyUntil is the engine's step time up to now.
func (e *engine) busyUntil(now int64) int64 {
	if e.stepping {
		return e.busy + now - e.stepBegan
	}
	return e.busy
}
