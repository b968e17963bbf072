package scheduler

import (
	"fmt"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sluice-llm/sluice/models"
)

// Core is the scheduler's state and every decision it makes: which waiting job runs
// next, on which engine and slot, and which job is refused. It is deterministic and
// single-threaded (no goroutines, no clocks: callers pass now), so the live Scheduler
// runs it under one mutex and the simulator (scheduler/sim) runs the very same code on
// virtual time.
type Core struct {
	cfg     Config
	engines map[string]*Engine
	order   []string
	queues  [2]*fairQueue // by priority class
	seq     uint64
	rr      uint64
	stats   Stats
	// wake is when the first job that Dispatch left waiting for a busy slot holding its
	// prompt stops waiting for it (zero: none); holders counts such jobs per prompt
	// family during one pass (scratch).
	wake     time.Time
	holders  []holder
	waits    []float64 // scratch: the busy slots' expected remaining seconds
	pass     uint64    // Dispatch (or fast-path Submit) passes, for hold's decisions
	heldHigh int       // interactive jobs waiting for their own slot in this pass
}

// lookahead is how far into a tenant's queue Dispatch looks for a job that fits a free
// slot when the first does not (a job for a model no free engine holds must not block
// the tenant's other work).
const lookahead = 8

// affinityWindow is how many waiting jobs, in fair order, Dispatch considers for one
// whose prefix a free slot holds; maxOvertaken is how often a waiting job may be
// passed that way before fair order resumes.
const (
	affinityWindow = 32
	maxOvertaken   = 32
)

// Config tunes the core.
type Config struct {
	Policy  Policy
	Weights Weights
	// MaxQueue bounds the jobs waiting in all (default 256); more are refused at once.
	MaxQueue int
	// SLO is the time to first token each class should get (index: models.Priority);
	// a job expected to wait longer is refused as saturated (0: never).
	SLO [2]time.Duration
	// SwapAfter is how long a job for another model waits before an engine that holds
	// one model at a time stops taking new work for its current one (default 5s).
	SwapAfter time.Duration
	// TenantWeights gives tenants more (or less) of the capacity than 1.
	TenantWeights map[string]float64
	// NoPrefixWait turns off cost-aware waiting (sluice policy): by default a job whose
	// prompt is cached on a busy slot waits for that slot instead of taking a free one
	// where it would be processed from scratch, as long as the expected wait is shorter
	// than the prefill it saves (see Core.hold).
	NoPrefixWait bool
}

// Stats are cumulative counters (for metrics and benchmarks).
type Stats struct {
	Dispatched, Queued, Rejected, Saturated, Expired, Cancelled uint64
	// PrefixBlocks counts prompt blocks of dispatched jobs; PrefixHits those found
	// cached on the slot or engine the job went to.
	PrefixBlocks, PrefixHits uint64
	Swaps                    uint64
	// Overloads counts engines' refusals of work for now (they stayed in rotation).
	Overloads uint64
	// PrefixWaits counts jobs that waited for a busy slot holding their prompt while
	// another slot was free (cost-aware waiting); a job counts once.
	PrefixWaits uint64
}

// Engine is one backend's state as the core sees it.
type Engine struct {
	ID string
	// Slots are the engine's slots, indexed by the engine's own slot id. The first
	// Size() are in service; any beyond are retiring: the engine reported fewer slots
	// while they were busy, so they stay (busy) until their job ends, then go.
	Slots       []Slot
	Healthy     bool
	Reason      string
	KVUse       float64 // 0..1
	GPUUtil     float64 // 0..1
	Addressable bool    // the engine takes a slot id (llama-server id_slot)
	Exclusive   bool    // the engine holds one model at a time (swaps to serve another)
	// KVTokens is the engine's KV cache in tokens (0: unknown, not checked); a job whose
	// tokens do not fit beside those in flight waits, unless the engine is idle.
	KVTokens int
	tokens   int // tokens of the jobs in flight
	prefill  int // prompt tokens in flight not yet processed (not cached where they went)

	size     int // slots in service (what the engine last reported)
	inflight int
	backoff  time.Time // overloaded: takes no new work before then
	active   string    // model in flight on an exclusive engine
	drainFor string    // model waiting to swap in
	recent   [][]uint64
	hash     uint64     // for rendezvous hashing of prompt families
	freq     *freqTable // how often each prompt family came lately
	svc      ewma       // seconds a request holds a slot
	ttft     ewma       // seconds to first token once dispatched
	cold     ewma       // seconds to first token per uncached prompt token (of misses)
}

// Slot is one sequence an engine decodes.
type Slot struct {
	Busy     bool
	Blocks   []uint64 // the prompt whose KV the slot holds
	LastUsed time.Time
	job      *Job // the job holding the slot while Busy
}

// Job is one request inside the core.
type Job struct {
	Model      string
	Candidates []models.Candidate
	Priority   models.Priority
	Tenant     string
	Blocks     []uint64 // PrefixBlocks of the prompt
	Cost       float64  // work estimate for fairness (tokens); 0 counts as 1
	Tokens     int      // KV tokens the job may hold (prompt + completion), for the KV budget
	// PromptTokens estimates the prompt's tokens (the prefill work, less what is cached).
	PromptTokens int
	// ID is the caller's own handle for the job (the core does not read it).
	ID       uint64
	Deadline time.Time
	Enqueued time.Time

	// Set when dispatched.
	Engine        string
	UpstreamModel string
	Slot          int
	HasSlot       bool // Slot names an engine slot (pass it as id_slot)
	Matched       int  // prompt blocks already cached where it went
	Dispatched    time.Time

	// Ready is closed when a queued job is dispatched or refused (live scheduler).
	Ready chan struct{}
	// Err is why a queued job was refused (expired, engine gone).
	Err error

	state          jobState
	prefill        int  // uncached prompt tokens charged to the engine until Prefilled
	prefilled      bool // its first token came (Prefilled)
	ended          Outcome
	prevBlocks     []uint64
	prevUsed       time.Time // the slot's prompt and last use before this job took it
	overtaken      int       // times a job behind it ran first for its cached prefix
	seq            uint64
	start, finish  float64
	slotIdx        int
	swapWaitSince  time.Time
	queuedPriority models.Priority
	coldTokens     int       // uncached prompt tokens where it went (its prefill work)
	holdUntil      time.Time // waiting for a busy slot with its prompt until then (Dispatch)
	holdFirst      time.Time // the bound it was first given (a later one is never later)
	holdPass       uint64    // the Dispatch pass that decided holdUntil
}

type jobState uint8

const (
	jobNew jobState = iota
	jobQueued
	jobRunning
	jobDone
)

// Queued reports whether the job is waiting.
func (j *Job) Queued() bool { return j.state == jobQueued }

// Running reports whether the job holds a slot.
func (j *Job) Running() bool { return j.state == jobRunning }

// NewCore returns an empty core.
func NewCore(cfg Config) *Core {
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = 256
	}
	if cfg.SwapAfter <= 0 {
		cfg.SwapAfter = 5 * time.Second
	}
	if cfg.Policy == "" {
		cfg.Policy = PolicySluice
	}
	if cfg.Weights == (Weights{}) {
		cfg.Weights = DefaultWeights()
	}
	return &Core{cfg: cfg, engines: map[string]*Engine{}, queues: [2]*fairQueue{newFairQueue(), newFairQueue()}}
}

// AddEngine registers a backend with slots slots.
func (c *Core) AddEngine(id string, slots int, addressable, exclusive bool) {
	e := &Engine{ID: id, Healthy: true, Addressable: addressable, Exclusive: exclusive,
		hash: xxhash.Sum64String(id)}
	e.size = max(slots, 1)
	e.Slots = make([]Slot, e.size)
	c.engines[id] = e
	c.order = append(c.order, id)
}

// Engines returns the engines in registration order (read-only use).
func (c *Core) Engines() []*Engine {
	out := make([]*Engine, len(c.order))
	for i, id := range c.order {
		out[i] = c.engines[id]
	}
	return out
}

// InFlight is the number of jobs running on engine id.
func (e *Engine) InFlight() int { return e.inflight }

// Size is the number of slots in service (retiring slots not counted).
func (e *Engine) Size() int { return e.size }

// Stats returns the counters.
func (c *Core) Stats() Stats { return c.stats }

// QueueLen returns how many jobs of a class wait.
func (c *Core) QueueLen(p models.Priority) int { return c.queues[p].len() }

// SetKVTokens sets an engine's KV budget in tokens (0: not checked).
func (c *Core) SetKVTokens(id string, tokens int) {
	if e := c.engines[id]; e != nil {
		e.KVTokens = tokens
	}
}

// SetEngine updates an engine from a health probe (slots 0: unchanged). Slots may grow
// or shrink; a slot keeps its index (the engine's slot id) for good, and a busy slot
// beyond a smaller count retires: it takes no new work and goes once its job ends. Call
// Dispatch afterwards: capacity may have appeared.
func (c *Core) SetEngine(id string, slots int, healthy bool, reason string, kv, gpu float64) {
	e := c.engines[id]
	if e == nil {
		return
	}
	e.Healthy, e.Reason, e.KVUse, e.GPUUtil = healthy, reason, kv, gpu
	if slots > 0 {
		if slots > len(e.Slots) {
			e.Slots = append(e.Slots, make([]Slot, slots-len(e.Slots))...)
		}
		e.size = slots
		e.trim()
	}
}

// trim drops free slots past the engine's size from the end (retired slots whose jobs
// ended). A free retired slot below a busy one stays, out of service, until that one goes.
func (e *Engine) trim() {
	n := len(e.Slots)
	for n > e.size && !e.Slots[n-1].Busy {
		n--
	}
	clear(e.Slots[n:])
	e.Slots = e.Slots[:n]
}

// Submit takes a new job: it runs at once when a slot is free and nothing waits ahead
// of it, or waits in its class's fair queue, or is refused (no healthy engine, queue
// full, or expected to miss its class's SLO: models.ErrSaturated).
func (c *Core) Submit(now time.Time, j *Job) error {
	c.seq++
	j.seq, j.Enqueued, j.state = c.seq, now, jobNew
	if j.Priority > models.PriorityBatch {
		j.Priority = models.PriorityBatch
	}
	healthy := false
	for _, cd := range j.Candidates {
		if e := c.engines[cd.Backend]; e != nil && e.Healthy {
			healthy = true
			break
		}
	}
	if !healthy {
		c.stats.Rejected++
		return &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
			Msg: fmt.Sprintf("no engine serving %q is ready%s", j.Model, c.reasons(j))}
	}
	// Fast path: nothing waits, so nothing is overtaken.
	c.pass, c.heldHigh, c.holders = c.pass+1, 0, c.holders[:0]
	if c.queues[0].len()+c.queues[1].len() == 0 && !c.hold(now, j) && c.place(now, j) {
		return nil
	}
	if c.queues[0].len()+c.queues[1].len() >= c.cfg.MaxQueue {
		c.stats.Rejected++
		return &models.Error{Kind: models.ErrRejected, Code: "queue_full", RetryAfter: time.Second,
			Msg: fmt.Sprintf("sluice is busy: %d requests already wait", c.cfg.MaxQueue)}
	}
	// A job that can start now (it waits only for its own slot, or the jobs ahead wait
	// so) is not saturated: a slot it could take is free.
	if wait, over := c.expectedWait(j); over && !c.canStart(now, j) {
		c.stats.Saturated++
		return &models.Error{Kind: models.ErrSaturated, Code: "saturated", RetryAfter: max(wait, time.Second),
			Msg: fmt.Sprintf("local capacity for %q is saturated: expected wait %v exceeds the %v target", j.Model,
				wait.Round(time.Millisecond), c.cfg.SLO[j.Priority])}
	}
	j.state = jobQueued
	j.queuedPriority = j.Priority
	c.queues[j.Priority].push(j, c.cfg.TenantWeights[j.Tenant])
	c.stats.Queued++
	return nil // the caller runs Dispatch (which may start this job at once)
}

func (c *Core) reasons(j *Job) string {
	s := ""
	for _, cd := range j.Candidates {
		if e := c.engines[cd.Backend]; e != nil && e.Reason != "" {
			s += fmt.Sprintf("; %s: %s", e.ID, e.Reason)
		}
	}
	return s
}

// Dispatch runs waiting jobs on free slots, interactive before batch, tenants in fair
// order, until no waiting job fits a free slot (work-conserving: a free slot never idles
// while a job it can serve waits). It returns the jobs it started.
//
// The one exception is cost-aware waiting (Core.hold): a job whose prompt is cached on a
// busy slot may leave a free slot to others, or idle, for as long as waiting is expected
// to cost less than processing its prompt from scratch. Wake says when Dispatch must run
// again for such a job even if nothing else happens.
func (c *Core) Dispatch(now time.Time) []*Job {
	var started []*Job
	c.dropStaleDrains()
	c.wake, c.pass, c.heldHigh, c.holders = time.Time{}, c.pass+1, 0, c.holders[:0]
	for p := range c.queues {
		q := c.queues[p]
		for q.len() > 0 && c.anyFree(now) {
			if p > 0 && c.heldHigh > 0 && c.freeSlots(now) <= c.heldHigh {
				break // the free slots are the fallback of interactive jobs waiting for their own
			}
			if j := c.affine(now, q); j != nil {
				q.remove(j, true)
				started = append(started, j)
				continue
			}
			progressed := false
		scan:
			for _, tq := range q.order() {
				considered := 0
				for _, j := range tq.jobs {
					if considered == lookahead {
						break
					}
					if c.hold(now, j) {
						continue // a job waiting for its own slot does not count against lookahead
					}
					considered++
					if c.place(now, j) {
						q.remove(j, true)
						started = append(started, j)
						progressed = true
						break scan // tags moved: recompute the order
					}
					c.considerSwap(now, j)
				}
			}
			if !progressed {
				break
			}
		}
	}
	return started
}

// dropStaleDrains lets an engine that drains for another model take work for its
// current one again once no waiting job wants that model there (the jobs that asked for
// the swap were cancelled, expired or started elsewhere): otherwise it would idle, and
// its current model's jobs starve.
func (c *Core) dropStaleDrains() {
	for _, id := range c.order {
		e := c.engines[id]
		if e.drainFor == "" {
			continue
		}
		wanted := false
		for p := range c.queues {
			c.queues[p].each(func(j *Job) {
				if wanted || j.Model != e.drainFor {
					return
				}
				for _, cd := range j.Candidates {
					if cd.Backend == id {
						wanted = true
						return
					}
				}
			})
		}
		if !wanted {
			e.drainFor = ""
		}
	}
}

// anyFree reports whether some healthy engine that is not backing off has a free slot.
func (c *Core) anyFree(now time.Time) bool { return c.freeSlots(now) > 0 }

// place starts j on the best engine and slot that can take it now.
func (c *Core) place(now time.Time, j *Job) bool {
	e, cd, slot := c.pick(now, j)
	if e == nil || slot < 0 || slot >= e.size || e.Slots[slot].Busy {
		return false // cannot happen while eligible engines have a free slot in service
	}
	s := &e.Slots[slot]
	matched := 0
	if len(j.Blocks) > 0 {
		if e.Addressable && c.cfg.Policy == PolicySluice {
			matched = matchBlocks(j.Blocks, s.Blocks)
		} else {
			matched = bestRecent(e, j.Blocks)
		}
	}
	j.prevBlocks, j.prevUsed = s.Blocks, s.LastUsed
	s.Busy, s.LastUsed, s.job = true, now, j
	if e.Addressable {
		s.Blocks = j.Blocks // the slot's KV is about to hold this prompt
	}
	e.inflight++
	e.tokens += j.Tokens
	if len(j.Blocks) > 0 {
		if e.freq == nil {
			e.freq = new(freqTable)
		}
		e.freq.touch(j.Blocks[0], now)
	}
	j.prefill, j.prefilled = max(j.PromptTokens-matched*TokensPerBlock, 0), false
	j.coldTokens, j.holdUntil = j.prefill, time.Time{}
	e.prefill += j.prefill
	if e.Exclusive {
		e.active = j.Model
		if e.drainFor == j.Model {
			e.drainFor = ""
		}
	}
	j.state = jobRunning
	j.Engine, j.UpstreamModel, j.slotIdx = e.ID, cd.UpstreamModel, slot
	j.HasSlot = e.Addressable && c.cfg.Policy == PolicySluice
	j.Slot = slot
	j.Matched, j.Dispatched = matched, now
	c.stats.Dispatched++
	c.stats.PrefixBlocks += uint64(len(j.Blocks))
	c.stats.PrefixHits += uint64(matched)
	return true
}

func bestRecent(e *Engine, blocks []uint64) int {
	best := 0
	for _, r := range e.recent {
		best = max(best, matchBlocks(blocks, r))
	}
	return best
}

// considerSwap lets a job for another model claim an exclusive engine once it has waited
// SwapAfter: the engine then takes no new work for its current model and swaps when idle.
func (c *Core) considerSwap(now time.Time, j *Job) {
	if j.swapWaitSince.IsZero() {
		j.swapWaitSince = now
	}
	if now.Sub(j.swapWaitSince) < c.cfg.SwapAfter {
		return
	}
	var best *Engine
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if e == nil || !e.Healthy || !e.Exclusive || e.active == j.Model || e.drainFor != "" {
			continue
		}
		if best == nil || e.inflight < best.inflight {
			best = e
		}
	}
	if best != nil {
		best.drainFor = j.Model
		c.stats.Swaps++
	}
}

// Prefilled tells the core that j's prompt is processed (its first token came): its
// prefill no longer weighs on its engine's load.
func (c *Core) Prefilled(j *Job) {
	if j.state != jobRunning {
		return
	}
	j.prefilled = true
	if j.prefill == 0 {
		return
	}
	if e := c.engines[j.Engine]; e != nil {
		e.prefill -= j.prefill
	}
	j.prefill = 0
}

// affine looks, among the first affinityWindow waiting jobs in fair order (tenants in
// their turn, each tenant's jobs in arrival order), for one whose prompt is mostly
// cached on a free slot, and starts it: near saturation this keeps a slot's prefix in
// use instead of handing the slot to whoever is next and throwing the cache away. A job
// is overtaken only by jobs in the window behind it, and at most maxOvertaken times:
// then fair order resumes until it runs.
func (c *Core) affine(now time.Time, q *fairQueue) *Job {
	if c.cfg.Policy != PolicySluice {
		return nil
	}
	var best, cold *Job
	bestMatch, seen, bestAt, coldAt := 0, 0, 0, 0
	headCached := false
	var window [affinityWindow]*Job
scan:
	for _, tq := range q.order() {
		for _, j := range tq.jobs {
			if seen == affinityWindow {
				break scan
			}
			if seen == 0 && j.overtaken >= maxOvertaken {
				return nil // the first in line has waited its share: no more overtaking
			}
			window[seen] = j
			seen++
			if len(j.Blocks) == 0 {
				continue
			}
			for _, cd := range j.Candidates {
				e := c.engines[cd.Backend]
				if !eligible(now, e, j) || !e.Addressable {
					continue
				}
				if _, m := bestSlot(now, e, j.Blocks); 2*m >= len(j.Blocks) && m > bestMatch {
					best, bestMatch, bestAt = j, m, seen-1
				}
			}
			if best == nil {
				cached := c.cachedAnywhere(j)
				if seen == 1 {
					headCached = cached
				} else if headCached && cold == nil && !cached {
					cold, coldAt = j, seen-1
				}
			}
		}
	}
	if best == nil && cold != nil {
		// No waiting prompt is cached on a free slot, and the first in line has its
		// prompt cached on a busy one: a job that would miss anywhere takes the free
		// slot, and the first in line waits for its own (at most maxOvertaken times).
		best, bestAt = cold, coldAt
	}
	if best == nil || !c.place(now, best) {
		return nil
	}
	for _, j := range window[:bestAt] {
		j.overtaken++
	}
	return best
}

// cachedAnywhere reports whether half of j's prompt or more is cached on some slot,
// busy or free, of an engine that can serve it.
func (c *Core) cachedAnywhere(j *Job) bool {
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if e == nil || !e.Healthy || !e.Addressable {
			continue
		}
		for i := range e.size {
			if 2*matchBlocks(j.Blocks, e.Slots[i].Blocks) >= len(j.Blocks) {
				return true
			}
		}
	}
	return false
}

// Outcome is how a dispatched job ended (Finish).
type Outcome uint8

const (
	// Completed: the engine answered in full. The time the job held its slot feeds the
	// saturation estimate, and the slot holds the job's prompt.
	Completed Outcome = iota
	// Failed: the engine failed the request; what its slot holds is unknown.
	Failed
	// Abandoned: the caller left while the engine worked on the request. It did not run
	// its course, so its time says nothing of the service time; the slot holds the
	// prompt if its first token came (the prompt was processed), else nothing known.
	Abandoned
	// NotSent: the request never reached the engine (the caller left between dispatch
	// and sending, or the engine refused it as overloaded or unreachable): the slot is
	// left as it was before the job took it.
	NotSent
)

// Release ends a running job as Completed (ok) or Failed; see Finish.
func (c *Core) Release(now time.Time, j *Job, ok bool, ttft time.Duration) {
	o := Failed
	if ok {
		o = Completed
	}
	c.Finish(now, j, o, ttft)
}

// Finish ends a running job: it frees the slot and, for a Completed job, feeds the
// engine's service-time estimates (ttft: time to first token after dispatch, 0 if none).
// Call Dispatch afterwards.
func (c *Core) Finish(now time.Time, j *Job, o Outcome, ttft time.Duration) {
	if j.state != jobRunning {
		return
	}
	j.state, j.ended = jobDone, o
	e := c.engines[j.Engine]
	if e == nil {
		return
	}
	var s *Slot
	if i := e.slotOf(j); i >= 0 {
		s = &e.Slots[i]
		s.Busy, s.LastUsed, s.job = false, now, nil
		switch {
		case o == NotSent:
			s.Blocks, s.LastUsed = j.prevBlocks, j.prevUsed
		case o == Failed, o == Abandoned && !j.prefilled:
			s.Blocks = nil // unknown state after a failure or a prefill cut short
		}
	}
	j.prevBlocks = nil
	e.inflight--
	e.tokens -= j.Tokens
	e.prefill -= j.prefill
	j.prefill = 0
	if e.Exclusive && e.inflight == 0 {
		e.active = ""
	}
	if o == Completed {
		e.svc.add(now.Sub(j.Dispatched).Seconds())
		if ttft > 0 {
			e.ttft.add(ttft.Seconds())
			if j.Matched == 0 && j.coldTokens >= minColdTokens {
				e.cold.add(ttft.Seconds() / float64(j.coldTokens))
			}
		}
		if !e.Addressable || c.cfg.Policy != PolicySluice {
			e.recent = append(e.recent, j.Blocks)
			if len(e.recent) > 2*e.size {
				e.recent = e.recent[1:]
			}
		}
	}
	e.trim()
}

// Backoff keeps engine id from new work until until: it answered that it is overloaded
// (its own queue is full). It stays healthy and in rotation, and the jobs waiting for it
// keep waiting; call Dispatch once the time has passed.
func (c *Core) Backoff(id string, until time.Time) {
	if e := c.engines[id]; e != nil {
		e.backoff = until
		c.stats.Overloads++
	}
}

// Retry starts again a job that ended NotSent (its engine refused it), on an engine that
// can take it now; the engines backing off cannot. False: none can, the job stays ended.
func (c *Core) Retry(now time.Time, j *Job) bool {
	if j.state != jobDone || j.ended != NotSent {
		return false
	}
	return c.place(now, j)
}

// slotOf finds the slot j holds on e, by identity (-1: none): the index it was given
// first, else a search, so a slot table that changed shape cannot lose a busy slot.
func (e *Engine) slotOf(j *Job) int {
	if i := j.slotIdx; i >= 0 && i < len(e.Slots) && e.Slots[i].job == j {
		return i
	}
	for i := range e.Slots {
		if e.Slots[i].job == j {
			return i
		}
	}
	return -1
}

// Cancel removes a waiting job (the client gave up). It reports whether the job was
// still waiting; a running job must be Released instead.
func (c *Core) Cancel(j *Job) bool {
	if j.state != jobQueued {
		return false
	}
	if c.queues[j.queuedPriority].remove(j, false) {
		j.state = jobDone
		c.stats.Cancelled++
		return true
	}
	return false
}

// Expire refuses waiting jobs whose deadline has passed (or whose engines are all gone)
// and returns them with Err set.
func (c *Core) Expire(now time.Time) []*Job {
	var out []*Job
	for p := range c.queues {
		var drop []*Job
		c.queues[p].each(func(j *Job) {
			if !j.Deadline.IsZero() && !now.Before(j.Deadline) {
				j.Err = &models.Error{Kind: models.ErrTimeout, Code: "queue_timeout",
					Msg: fmt.Sprintf("waited %v for a slot serving %q", now.Sub(j.Enqueued).Round(time.Millisecond), j.Model)}
				drop = append(drop, j)
				return
			}
			alive := false
			for _, cd := range j.Candidates {
				if e := c.engines[cd.Backend]; e != nil && e.Healthy {
					alive = true
				}
			}
			if !alive {
				j.Err = &models.Error{Kind: models.ErrUnavailable, Code: "engine_unavailable", RetryAfter: time.Second,
					Msg: fmt.Sprintf("every engine serving %q went down while the request waited%s", j.Model, c.reasons(j))}
				drop = append(drop, j)
			}
		})
		for _, j := range drop {
			c.queues[p].remove(j, false)
			j.state = jobDone
			c.stats.Expired++
			out = append(out, j)
		}
	}
	return out
}

// expectedWait estimates how long j would wait for a slot, from the engines' measured
// service times, and whether that (plus their time to first token) misses j's SLO.
func (c *Core) expectedWait(j *Job) (time.Duration, bool) {
	slo := c.cfg.SLO[j.Priority]
	if slo <= 0 {
		return 0, false
	}
	var slots int
	var svc, ttft float64
	var n int
	for _, cd := range j.Candidates {
		e := c.engines[cd.Backend]
		if e == nil || !e.Healthy || !e.svc.ok() {
			continue
		}
		slots += e.size
		svc += e.svc.v
		ttft += e.ttft.v
		n++
	}
	if n == 0 || slots == 0 {
		return 0, false // nothing measured yet: admit
	}
	svc /= float64(n)
	ttft /= float64(n)
	ahead := 0
	for p := models.PriorityInteractive; p <= j.Priority; p++ {
		ahead += c.queues[p].len()
	}
	wait := time.Duration(float64(ahead+1) * svc / float64(slots) * float64(time.Second))
	return wait, wait+time.Duration(ttft*float64(time.Second)) > slo
}

// ewma is an exponentially weighted moving average.
type ewma struct {
	v float64
	n int
}

func (e *ewma) add(x float64) {
	if e.n == 0 {
		e.v = x
	} else {
		e.v += 0.2 * (x - e.v)
	}
	e.n++
}

func (e *ewma) ok() bool { return e.n >= 3 }
