package sim

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/scheduler"
)

// epoch is virtual time zero as the core sees it (any fixed instant: the core only
// compares and subtracts times).
func epoch() time.Time { return time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC) }

// model is the single model every engine serves.
const model = "sim"

// state is one simulation in progress.
type state struct {
	cfg      Config
	base     time.Time // virtual time zero
	core     *scheduler.Core
	engines  []*engine
	byID     map[string]int // engine id -> index (lookups only)
	reqs     []request
	arrivals []arrival
	tenants  []string
	cands    []models.Candidate
	q        eventQueue
	wakeAt   time.Time  // the last Core.Wake an evWake was queued for
	done     []*request // scratch
	finished int        // requests completed or refused
	next     int        // closed loop: the next request to send
	lastDone int64
	err      error
}

// Run simulates cfg and returns its measurements. The same cfg always gives the same
// Result.
func Run(cfg Config) (Result, error) {
	s, err := simulate(cfg)
	if err != nil {
		return Result{}, err
	}
	return s.result(), nil
}

// Compare runs the same workload (same seed, so the same arrivals and prompts) under each
// policy (none given: sluice, least-loaded, round-robin), concurrently; results come back
// in the order of policies, each identical to what Run gives.
func Compare(cfg Config, policies ...scheduler.Policy) ([]Result, error) {
	if len(policies) == 0 {
		policies = []scheduler.Policy{scheduler.PolicySluice, scheduler.PolicyLeastLoaded, scheduler.PolicyRoundRobin}
	}
	out := make([]Result, len(policies))
	errs := make([]error, len(policies))
	var wg sync.WaitGroup
	for i, p := range policies {
		c := cfg
		c.Policy = p
		wg.Go(func() { out[i], errs[i] = Run(c) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err // the first: the policies share every other setting
		}
	}
	return out, nil
}

// simulate runs cfg to the last completion.
func simulate(cfg Config) (*state, error) {
	s, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	if err := s.loop(); err != nil {
		return nil, err
	}
	return s, nil
}

// prepare builds the core, the engines and the requests.
func prepare(cfg Config) (*state, error) {
	cfg, err := cfg.fill()
	if err != nil {
		return nil, err
	}
	w := cfg.Workload
	rate := w.Rate
	if rate <= 0 {
		rate = w.Load * Capacity(cfg)
	}
	if w.Clients > 0 {
		rate = 1 // the arrival times are not used: completions pace the clients
	}
	if rate <= 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
		return nil, fmt.Errorf("sim: workload: arrival rate %v is not a positive number", rate)
	}
	s := &state{
		cfg:  cfg,
		base: epoch(),
		// No SLO for the core: the simulator measures TTFT instead of refusing, and the
		// queue holds every request, so every request completes.
		core:     scheduler.NewCore(scheduler.Config{Policy: cfg.Policy, MaxQueue: w.Requests + 1, NoPrefixWait: cfg.NoPrefixWait}),
		byID:     make(map[string]int, cfg.GPUs),
		reqs:     make([]request, w.Requests),
		arrivals: generate(w, cfg.TokensPerBlock, rate),
		tenants:  tenantNames(w.Tenants),
	}
	for i := range cfg.GPUs {
		id := fmt.Sprintf("gpu%02d", i)
		// llama-server takes a slot id: addressable, and it serves any model it holds.
		s.core.AddEngine(id, cfg.Engine.Slots, true, false)
		if cfg.KVBudget {
			s.core.SetKVTokens(id, cfg.Engine.KVTokens)
		}
		e := &engine{id: id, slots: make([]slotState, cfg.Engine.Slots)}
		e.host.limit = cfg.Engine.HostCacheTokens
		s.engines = append(s.engines, e)
		s.byID[id] = i
		s.cands = append(s.cands, models.Candidate{Backend: id, UpstreamModel: model})
	}
	prompt := w.SystemTokens + w.UserTokens
	for i := range s.reqs {
		r := &s.reqs[i]
		a := &s.arrivals[i]
		r.idx, r.arrival, r.blocks, r.prompt, r.first = i, a.at, a.blocks, prompt, -1
		// Cost and Tokens as the live scheduler estimates them: prompt plus completion.
		r.job = scheduler.Job{Model: model, Candidates: s.cands, Tenant: s.tenants[a.tenant],
			Cost: float64(prompt + w.OutputTokens), Tokens: prompt + w.OutputTokens, PromptTokens: prompt}
		// The live scheduler hashes prompts only for the sluice policy.
		if cfg.Policy == scheduler.PolicySluice {
			r.job.Blocks = r.blocks
		}
		r.job.ID = uint64(i)
	}
	return s, nil
}

// loop runs the events until every request finished.
func (s *state) loop() error {
	if c := s.cfg.Workload.Clients; c > 0 {
		for s.next < min(c, len(s.reqs)) {
			s.q.push(event{at: 0, kind: evArrival, req: int32(s.next)})
			s.next++
		}
	} else {
		s.q.push(event{at: s.arrivals[0].at, kind: evArrival, req: 0})
	}
	s.q.push(event{at: int64(RefreshEvery), kind: evRefresh})
	for s.finished < len(s.reqs) && s.q.len() > 0 && s.err == nil {
		ev := s.q.pop()
		switch ev.kind {
		case evArrival:
			s.arrive(ev.at, int(ev.req))
		case evReady:
			e := s.engines[ev.eng]
			e.waiting = append(e.waiting, &s.reqs[ev.req])
			s.kick(int(ev.eng), ev.at)
		case evStepStart:
			s.stepStart(int(ev.eng), ev.at)
		case evStepEnd:
			s.stepEnd(int(ev.eng), ev.at)
		case evRefresh:
			s.refresh(ev.at)
		case evWake:
			s.startAll(ev.at, s.dispatch(ev.at))
		}
	}
	if s.err != nil {
		return s.err
	}
	if s.finished < len(s.reqs) {
		return fmt.Errorf("sim: stalled with %d of %d requests finished", s.finished, len(s.reqs))
	}
	return nil
}

func (s *state) now(at int64) time.Time { return s.base.Add(time.Duration(at)) }

// arrive submits request i as the live scheduler does: Submit, and Dispatch unless it
// started at once.
func (s *state) arrive(at int64, i int) {
	r := &s.reqs[i]
	if s.cfg.Workload.Clients > 0 {
		r.arrival = at
	} else if i+1 < len(s.arrivals) {
		s.q.push(event{at: s.arrivals[i+1].at, kind: evArrival, req: int32(i + 1)})
	}
	now := s.now(at)
	if err := s.core.Submit(now, &r.job); err != nil {
		s.finished++ // refused: counts against Completed and goodput
		s.sendNext(at)
		return
	}
	if r.job.Running() {
		s.assign(r, at)
		return
	}
	s.startAll(at, s.dispatch(at))
}

// dispatch runs the core's Dispatch and, as the live scheduler's timer does, wakes it
// again when a job it left waiting for a busy slot with its prompt stops waiting.
func (s *state) dispatch(at int64) []*scheduler.Job {
	started := s.core.Dispatch(s.now(at))
	if w := s.core.Wake(); !w.IsZero() && !w.Equal(s.wakeAt) {
		s.wakeAt = w
		s.q.push(event{at: max(at, int64(w.Sub(s.base))), kind: evWake})
	}
	return started
}

// sendNext is a closed-loop client sending its next request as its last one finished.
func (s *state) sendNext(at int64) {
	if s.cfg.Workload.Clients > 0 && s.next < len(s.reqs) {
		s.q.push(event{at: at, kind: evArrival, req: int32(s.next)})
		s.next++
	}
}

func (s *state) startAll(at int64, jobs []*scheduler.Job) {
	for _, j := range jobs {
		s.assign(&s.reqs[j.ID], at)
	}
}

// assign hands a dispatched request to its engine: the slot the core chose when it
// addresses slots, else the one llama-server would pick itself.
func (s *state) assign(r *request, at int64) {
	ei, ok := s.byID[r.job.Engine]
	if !ok {
		s.fail(fmt.Errorf("sim: request %d dispatched to unknown engine %q", r.idx, r.job.Engine))
		return
	}
	e := s.engines[ei]
	slot := -1
	if r.job.HasSlot {
		if r.job.Slot >= 0 && r.job.Slot < len(e.slots) && !e.slots[r.job.Slot].busy {
			slot = r.job.Slot
		}
	} else {
		slot = e.chooseSlot(r, s.cfg.TokensPerBlock)
	}
	if slot < 0 {
		s.fail(fmt.Errorf("sim: request %d: no free slot on %s (core slot %d, addressed %v)", r.idx, e.id, r.job.Slot, r.job.HasSlot))
		return
	}
	r.eng, r.slot, r.dispatched = e, slot, at
	r.reused = e.occupy(r, slot, &s.cfg.Engine, s.cfg.TokensPerBlock)
	r.remaining = r.prompt - r.reused
	if d := s.cfg.Engine.RequestOverhead; d > 0 {
		s.q.push(event{at: at + int64(d), kind: evReady, eng: int32(ei), req: int32(r.idx)})
		return
	}
	e.waiting = append(e.waiting, r)
	s.kick(ei, at)
}

// kick makes sure engine ei starts a step at `at` unless one runs or is due.
func (s *state) kick(ei int, at int64) {
	e := s.engines[ei]
	if e.stepping || e.startQueued {
		return
	}
	e.startQueued = true
	s.q.push(event{at: at, kind: evStepStart, eng: int32(ei)})
}

func (s *state) stepStart(ei int, at int64) {
	e := s.engines[ei]
	e.startQueued = false
	if e.stepping {
		return
	}
	e.admit(&s.cfg.Engine, s.cfg.Workload.OutputTokens)
	if len(e.active) == 0 {
		return
	}
	d := e.plan(&s.cfg.Engine)
	e.stepping, e.stepBegan = true, at
	s.q.push(event{at: at + int64(d), kind: evStepEnd, eng: int32(ei)})
}

// stepEnd finishes engine ei's step: first tokens and completions happen now; each
// completion is released to the core (with its time to first token from dispatch) and
// followed by a Dispatch, as the live scheduler does when a stream closes.
func (s *state) stepEnd(ei int, at int64) {
	e := s.engines[ei]
	e.busy += at - e.stepBegan
	e.stepping = false
	s.done = e.advance(at, s.cfg.Workload.OutputTokens, s.done[:0])
	now := s.now(at)
	// First tokens that came out in this step: their prompts no longer weigh on the
	// engine's load (the live scheduler reports this when a stream's first token arrives).
	for _, r := range e.active {
		if r.first == at {
			s.core.Prefilled(&r.job)
		}
	}
	for _, r := range s.done {
		if r.first == at {
			s.core.Prefilled(&r.job)
		}
	}
	for _, r := range s.done {
		r.completed++
		if r.completed != 1 {
			s.fail(fmt.Errorf("sim: request %d completed %d times", r.idx, r.completed))
			return
		}
		s.finished++
		s.lastDone = at
		s.core.Release(now, &r.job, true, time.Duration(r.first-r.dispatched))
		s.sendNext(at)
		s.startAll(at, s.dispatch(at))
	}
	clear(s.done)
	if len(e.active)+len(e.waiting) > 0 {
		s.kick(ei, at)
	}
}

// refresh is the live scheduler's periodic probe: each engine's GPU utilization over the
// last period and its KV use go to the core, then Expire and Dispatch. Health never
// changes here.
func (s *state) refresh(at int64) {
	now := s.now(at)
	kvCap := float64(s.cfg.Engine.KVTokens)
	for _, e := range s.engines {
		b := e.busyUntil(at)
		util := min(1, float64(b-e.busySeen)/float64(RefreshEvery))
		e.busySeen = b
		kv := 0.0
		if kvCap > 0 {
			kv = min(1, float64(e.kvUsed)/kvCap)
		}
		s.core.SetEngine(e.id, 0, true, "", kv, util)
	}
	for _, j := range s.core.Expire(now) {
		if r := &s.reqs[j.ID]; r != nil {
			s.finished++
			s.sendNext(at) // a closed-loop client whose request expired sends its next
		}
	}
	s.startAll(at, s.dispatch(at))
	if s.finished < len(s.reqs) {
		s.q.push(event{at: at + int64(RefreshEvery), kind: evRefresh})
	}
}

func (s *state) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

// result measures a finished simulation.
func (s *state) result() Result {
	res := Result{Policy: string(s.cfg.Policy), GPUs: s.cfg.GPUs, Requests: len(s.reqs)}
	ttfts := make([]int64, 0, len(s.reqs))
	var prompt, reused int64
	slo := int64(s.cfg.SLO)
	good := 0
	for i := range s.reqs {
		r := &s.reqs[i]
		if r.completed == 0 {
			continue
		}
		res.Completed++
		res.OutputTokens += int64(r.out)
		prompt += int64(r.prompt)
		reused += int64(r.reused)
		t := r.first - r.arrival
		ttfts = append(ttfts, t)
		if t <= slo {
			good++
		}
	}
	slices.Sort(ttfts)
	res.TTFTp50 = time.Duration(percentile(ttfts, 0.50))
	res.TTFTp90 = time.Duration(percentile(ttfts, 0.90))
	res.TTFTp99 = time.Duration(percentile(ttfts, 0.99))
	res.Goodput = float64(good) / float64(len(s.reqs))
	if prompt > 0 {
		res.PrefixHitRatio = float64(reused) / float64(prompt)
	}
	if len(s.arrivals) > 0 {
		res.Simulated = time.Duration(s.lastDone - s.arrivals[0].at)
		if s.cfg.Workload.Clients > 0 {
			res.Simulated = time.Duration(s.lastDone)
		}
	}
	if res.Simulated > 0 {
		res.OutputTokensPerSec = float64(res.OutputTokens) / res.Simulated.Seconds()
	}
	res.Rate = s.cfg.Workload.Rate
	if res.Rate <= 0 {
		res.Rate = s.cfg.Workload.Load * Capacity(s.cfg)
	}
	if s.cfg.Workload.Clients > 0 && res.Simulated > 0 {
		res.Rate = float64(res.Completed) / res.Simulated.Seconds()
	}
	return res
}

// percentile is the nearest-rank percentile of sorted values (0 when empty).
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(k, 0), len(sorted)-1)]
}
