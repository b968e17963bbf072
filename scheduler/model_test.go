package scheduler

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// The model-based test drives a Core with random interleavings of everything that can
// happen to it live, and checks after every step that the core's state agrees with a
// model kept beside it. Flags:
//
//	-sched.seed=N    run only seed N (a failure prints the flag that reruns it)
//	-sched.seeds=N   how many seeds to run (default 400; e.g. 100000 for a long search)
//	-sched.steps=N   steps per seed (default 250)
//	-sched.trace     print every step of the seeds that run
var (
	modelSeed  = flag.Uint64("sched.seed", 0, "TestCoreModel: run only this seed")
	modelSeeds = flag.Int("sched.seeds", 400, "TestCoreModel: number of seeds")
	modelSteps = flag.Int("sched.steps", 250, "TestCoreModel: steps per seed")
	modelTrace = flag.Bool("sched.trace", false, "TestCoreModel: print every step")
)

func TestCoreModel(t *testing.T) {
	seeds := []uint64{}
	if *modelSeed != 0 {
		seeds = append(seeds, *modelSeed)
	} else {
		for i := range *modelSeeds {
			seeds = append(seeds, uint64(i+1))
		}
	}
	holds := 0
	for _, seed := range seeds {
		w := newWorld(seed)
		err := w.run(*modelSteps)
		holds += w.holds
		if *modelTrace || err != nil {
			t.Logf("seed %d trace:\n%s", seed, strings.Join(w.trace, "\n"))
		}
		if err != nil {
			t.Fatalf("seed %d: %v\nrerun: go test ./scheduler -run 'TestCoreModel$' -sched.seed=%d -sched.steps=%d -v",
				seed, err, seed, *modelSteps)
		}
	}
	if len(seeds) > 20 && holds == 0 {
		t.Errorf("no job waited for its own slot in %d seeds: cost-aware waiting was not exercised", len(seeds))
	}
	t.Logf("%d seeds: jobs seen waiting for their own slot %d times", len(seeds), holds)
}

// mstate is where the model says a job is.
type mstate uint8

const (
	mQueued mstate = iota + 1
	mRunning
	mDone
)

type world struct {
	rng     *rand.Rand
	c       *Core
	now     time.Time
	ids     []string
	models  []string
	homog   bool // every job has the same model and candidates: fair order is checkable
	state   map[*Job]mstate
	jobs    []*Job
	runs    map[*Job]int   // times each job was started
	retries map[*Job]int   // times each job was refused as overloaded and retried
	served  map[string]int // Completed jobs per engine (each feeds the service time once)
	passed  map[*Job]int   // times a later job of its class started while it waited (homog)
	tenants int
	trace   []string
	step    int
	holds   int // times a job was seen waiting for its own slot beside a free one
}

func newWorld(seed uint64) *world {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := &world{rng: rng, now: t0, state: map[*Job]mstate{}, runs: map[*Job]int{}, passed: map[*Job]int{},
		retries: map[*Job]int{}, served: map[string]int{}}
	cfg := Config{MaxQueue: 1 + rng.IntN(40), SwapAfter: time.Duration(1+rng.IntN(4)) * time.Second}
	switch rng.IntN(4) {
	case 0:
		cfg.Policy = PolicyRoundRobin
	case 1:
		cfg.Policy = PolicyLeastLoaded
	}
	if rng.IntN(3) == 0 {
		cfg.SLO = [2]time.Duration{time.Duration(1+rng.IntN(5)) * time.Second, 0}
	}
	w.c = NewCore(cfg)
	if rng.IntN(2) == 0 {
		for _, q := range w.c.queues {
			q.maxIdle = rng.IntN(4) // forget tenants that still owe, early and often
		}
	}
	w.homog = rng.IntN(3) == 0
	n := 1 + rng.IntN(4)
	exclusive := false
	for i := range n {
		id := fmt.Sprintf("e%d", i)
		ex := !w.homog && rng.IntN(3) == 0
		exclusive = exclusive || ex
		w.c.AddEngine(id, 1+rng.IntN(5), rng.IntN(3) > 0, ex)
		if !w.homog && rng.IntN(4) == 0 {
			w.c.SetKVTokens(id, 200+rng.IntN(800))
		}
		w.ids = append(w.ids, id)
	}
	w.models = []string{"m"}
	if exclusive {
		w.models = []string{"A", "B"}
	}
	w.logf("config: policy %q maxqueue %d slo %v homog %v engines %d exclusive %v idle tenants %d", cfg.Policy, cfg.MaxQueue, cfg.SLO, w.homog, n, exclusive, w.c.queues[0].maxIdle)
	return w
}

func (w *world) logf(format string, args ...any) {
	w.trace = append(w.trace, fmt.Sprintf("%4d ", w.step)+fmt.Sprintf(format, args...))
}

// run takes steps random actions, checking the invariants after each, then drains.
func (w *world) run(steps int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("step %d: panic: %v\n%s", w.step, r, debug.Stack())
		}
	}()
	for w.step = 0; w.step < steps; w.step++ {
		if err := w.act(); err != nil {
			return fmt.Errorf("step %d: %w", w.step, err)
		}
		if err := w.check(); err != nil {
			return fmt.Errorf("step %d: invariant: %w", w.step, err)
		}
	}
	return w.drain()
}

func (w *world) pick(s mstate) *Job {
	var c []*Job
	for _, j := range w.jobs {
		if w.state[j] == s {
			c = append(c, j)
		}
	}
	if len(c) == 0 {
		return nil
	}
	return c[w.rng.IntN(len(c))]
}

func (w *world) act() error {
	r := w.rng.IntN(100)
	switch {
	case r < 30:
		return w.submit()
	case r < 37:
		return w.dispatch()
	case r < 57:
		return w.release()
	case r < 62:
		if j := w.pick(mRunning); j != nil {
			w.logf("prefilled job %d", j.ID)
			w.c.Prefilled(j)
		}
	case r < 70:
		return w.cancel()
	case r < 72:
		return w.giveUpAfterDispatch()
	case r < 74:
		return w.overload()
	case r < 82:
		d := time.Duration(w.rng.IntN(3000)) * time.Millisecond
		w.now = w.now.Add(d)
		w.logf("advance %v", d)
		return w.expire()
	case r < 90:
		id := w.ids[w.rng.IntN(len(w.ids))]
		healthy := w.rng.IntN(3) > 0
		w.logf("health %s = %v", id, healthy)
		w.c.SetEngine(id, 0, healthy, "probe", w.rng.Float64(), w.rng.Float64())
		if err := w.expire(); err != nil {
			return err
		}
		return w.dispatch()
	default:
		id := w.ids[w.rng.IntN(len(w.ids))]
		slots := 1 + w.rng.IntN(6)
		w.logf("slots %s = %d", id, slots)
		w.c.SetEngine(id, slots, w.c.engines[id].Healthy, "", 0, 0)
		return w.dispatch()
	}
	return nil
}

func (w *world) submit() error {
	j := &Job{ID: uint64(len(w.jobs) + 1), Model: w.models[w.rng.IntN(len(w.models))], Cost: float64(1 + w.rng.IntN(100)),
		Tokens: w.rng.IntN(400), PromptTokens: w.rng.IntN(1200)}
	if w.rng.IntN(4) == 0 {
		w.tenants++
		j.Tenant = fmt.Sprintf("once%d", w.tenants) // a one-off tenant
	} else {
		j.Tenant = fmt.Sprintf("t%d", w.rng.IntN(4))
	}
	if w.rng.IntN(5) == 0 {
		j.Priority = models.PriorityBatch
	}
	if w.rng.IntN(4) > 0 {
		fam := uint64(w.rng.IntN(6) + 1)
		for i := range 1 + w.rng.IntN(4) {
			j.Blocks = append(j.Blocks, fam<<8|uint64(i))
		}
	}
	if w.rng.IntN(3) == 0 {
		j.Deadline = w.now.Add(time.Duration(w.rng.IntN(6000)) * time.Millisecond)
	}
	if w.homog {
		j.Model, j.Tokens = "m", 0
		j.Candidates = cands(w.ids...)
	} else {
		for _, id := range w.ids {
			if w.rng.IntN(2) == 0 {
				j.Candidates = append(j.Candidates, models.Candidate{Backend: id, UpstreamModel: j.Model})
			}
		}
		if len(j.Candidates) == 0 {
			id := w.ids[w.rng.IntN(len(w.ids))]
			j.Candidates = []models.Candidate{{Backend: id, UpstreamModel: j.Model}}
		}
	}
	w.jobs = append(w.jobs, j)
	err := w.c.Submit(w.now, j)
	switch {
	case err != nil:
		w.logf("submit job %d tenant %s model %s: refused: %v", j.ID, j.Tenant, j.Model, err)
		var me *models.Error
		if !errors.As(err, &me) {
			return fmt.Errorf("submit: error %v is not a *models.Error", err)
		}
		w.state[j] = mDone
	case j.Running():
		w.logf("submit job %d tenant %s model %s: runs on %s slot %d", j.ID, j.Tenant, j.Model, j.Engine, j.Slot)
		if err := w.started(j, false); err != nil {
			return err
		}
	default:
		w.logf("submit job %d tenant %s model %s prio %d: queued", j.ID, j.Tenant, j.Model, j.Priority)
		if !j.Queued() {
			return fmt.Errorf("job %d neither refused, running nor queued", j.ID)
		}
		w.state[j] = mQueued
		if w.rng.IntN(5) > 0 {
			return w.dispatch() // what the live scheduler does
		}
	}
	return nil
}

// started records that j was started (by Submit or Dispatch) and checks where it went.
func (w *world) started(j *Job, retry bool) error {
	if w.state[j] == mRunning {
		return fmt.Errorf("job %d started while running", j.ID)
	}
	if w.state[j] == mDone && !retry {
		return fmt.Errorf("job %d started after it ended", j.ID)
	}
	if w.homog && w.state[j] == mQueued {
		// Every job of its class that waited ahead of it was passed once.
		for _, k := range w.jobs {
			if k != j && w.state[k] == mQueued && k.queuedPriority == j.queuedPriority && before(k, j) {
				w.passed[k]++
			}
		}
	}
	w.state[j] = mRunning
	w.runs[j]++
	if w.runs[j] > 1+w.retries[j] {
		return fmt.Errorf("job %d started %d times (%d retries)", j.ID, w.runs[j], w.retries[j])
	}
	ok := false
	for _, cd := range j.Candidates {
		if cd.Backend == j.Engine && cd.UpstreamModel == j.UpstreamModel {
			ok = true
		}
	}
	if !ok {
		return fmt.Errorf("job %d went to %s/%s, not one of its candidates", j.ID, j.Engine, j.UpstreamModel)
	}
	if e := w.c.engines[j.Engine]; !e.Healthy || w.now.Before(e.backoff) {
		return fmt.Errorf("job %d went to %s, which is down or backing off", j.ID, j.Engine)
	}
	return nil
}

func (w *world) dispatch() error {
	got := w.c.Dispatch(w.now)
	for _, j := range got {
		w.logf("dispatch job %d -> %s slot %d", j.ID, j.Engine, j.Slot)
		if w.state[j] != mQueued {
			return fmt.Errorf("dispatched job %d was not waiting (state %d)", j.ID, w.state[j])
		}
		if err := w.started(j, false); err != nil {
			return err
		}
	}
	// Work conservation: no free slot is left that a waiting job (among the first
	// lookahead of its tenant) could take, unless the job waits for a busy slot that
	// holds its prompt (cost-aware waiting), within its bound, with the wake-up set.
	for p := range w.c.queues {
		for _, tq := range w.c.queues[p].order() {
			considered := 0
			for _, j := range tq.jobs {
				if considered == lookahead {
					break
				}
				held := j.holdPass == w.c.pass && !j.holdUntil.IsZero()
				if !held {
					considered++
				}
				for _, cd := range j.Candidates {
					if e := w.c.engines[cd.Backend]; eligible(w.now, e, j) {
						if held {
							if err := w.checkHold(j); err != nil {
								return err
							}
							w.holds++
							break
						}
						if j.Priority == models.PriorityBatch && w.c.heldHigh > 0 && w.c.freeSlots(w.now) <= w.c.heldHigh {
							break // the free slots are kept for interactive jobs waiting for their own
						}
						return fmt.Errorf("job %d waits while %s could take it", j.ID, e.ID)
					}
				}
			}
		}
	}
	return nil
}

// checkHold checks a job Dispatch left waiting for its own slot: the wait is still within
// its bound, the core will wake by then, and a busy slot of one of its engines holds
// most of its prompt, more than any free slot it could take.
func (w *world) checkHold(j *Job) error {
	if !w.now.Before(j.holdUntil) {
		return fmt.Errorf("job %d waits for its own slot past its bound %v (now %v)", j.ID, j.holdUntil, w.now)
	}
	if wk := w.c.Wake(); wk.IsZero() || wk.After(j.holdUntil) {
		return fmt.Errorf("job %d waits for its own slot until %v, but the core wakes at %v", j.ID, j.holdUntil, wk)
	}
	busy, free := 0, 0
	for _, cd := range j.Candidates {
		e := w.c.engines[cd.Backend]
		if e == nil || !e.Healthy {
			continue
		}
		for i := range e.size {
			m := matchBlocks(j.Blocks, e.Slots[i].Blocks)
			if e.Slots[i].Busy && e.Addressable {
				busy = max(busy, m)
			} else if !e.Slots[i].Busy && eligible(w.now, e, j) {
				free = max(free, m)
			}
		}
	}
	if 2*busy < len(j.Blocks) || busy <= free {
		return fmt.Errorf("job %d waits for its own slot, but no busy slot holds its prompt (%d of %d blocks; free slots %d)",
			j.ID, busy, len(j.Blocks), free)
	}
	return nil
}

func (w *world) release() error {
	j := w.pick(mRunning)
	if j == nil {
		return nil
	}
	o := []Outcome{Completed, Completed, Completed, Failed, Abandoned}[w.rng.IntN(5)]
	w.logf("release job %d from %s slot %d: outcome %d", j.ID, j.Engine, j.Slot, o)
	e := w.c.engines[j.Engine]
	w.c.Finish(w.now.Add(time.Duration(w.rng.IntN(50))*time.Millisecond), j, o, time.Duration(w.rng.IntN(100))*time.Millisecond)
	w.state[j] = mDone
	if o == Completed {
		w.served[e.ID]++
	}
	if j.slotIdx >= len(e.Slots) {
		return nil // a retired slot, gone with its job
	}
	if s := &e.Slots[j.slotIdx]; o != Completed && s.Blocks != nil && (o == Failed || !j.prefilled) {
		return fmt.Errorf("job %d ended %d, but its slot claims its prompt is cached", j.ID, o)
	}
	if w.rng.IntN(5) > 0 {
		return w.dispatch()
	}
	return nil
}

func (w *world) cancel() error {
	j := w.pick(mQueued)
	if j == nil {
		if j = w.pick(mRunning); j != nil && w.c.Cancel(j) {
			return fmt.Errorf("Cancel took running job %d", j.ID)
		}
		return nil
	}
	w.logf("cancel job %d", j.ID)
	if !w.c.Cancel(j) {
		return fmt.Errorf("Cancel refused waiting job %d", j.ID)
	}
	w.state[j] = mDone
	if w.c.Cancel(j) {
		return fmt.Errorf("job %d cancelled twice", j.ID)
	}
	return nil
}

// giveUpAfterDispatch is a caller that left just after its job was dispatched, before it
// reached the engine: the live scheduler hands the slot back.
func (w *world) giveUpAfterDispatch() error {
	j := w.pick(mRunning)
	if j == nil {
		return nil
	}
	w.logf("give up job %d after dispatch", j.ID)
	e := w.c.engines[j.Engine]
	before, used := j.prevBlocks, j.prevUsed
	w.c.Finish(w.now, j, NotSent, 0)
	w.state[j] = mDone
	if j.slotIdx >= len(e.Slots) {
		return w.dispatch() // a retired slot, gone with its job
	}
	if s := &e.Slots[j.slotIdx]; matchBlocks(s.Blocks, before) != len(before) || len(s.Blocks) != len(before) || !s.LastUsed.Equal(used) {
		return fmt.Errorf("job %d never reached %s, but its slot changed", j.ID, e.ID)
	}
	return w.dispatch()
}

// overload is an engine answering a dispatched job that it is overloaded: it backs off,
// and the job starts again elsewhere if it can.
func (w *world) overload() error {
	j := w.pick(mRunning)
	if j == nil {
		return nil
	}
	id := j.Engine
	d := time.Duration(w.rng.IntN(3000)) * time.Millisecond
	w.c.Finish(w.now, j, NotSent, 0)
	w.c.Backoff(id, w.now.Add(d))
	w.state[j] = mDone
	if w.c.Retry(w.now, j) {
		w.logf("overload on %s for %v: job %d retried on %s slot %d", id, d, j.ID, j.Engine, j.Slot)
		w.retries[j]++
		if j.Engine == id && d > 0 {
			return fmt.Errorf("job %d retried on %s, which backs off", j.ID, id)
		}
		if err := w.started(j, true); err != nil {
			return err
		}
	} else {
		w.logf("overload on %s for %v: job %d refused", id, d, j.ID)
	}
	if w.c.Retry(w.now, j) {
		return fmt.Errorf("job %d retried twice", j.ID)
	}
	return w.dispatch()
}

func (w *world) expire() error {
	for _, j := range w.c.Expire(w.now) {
		w.logf("expire job %d: %v", j.ID, j.Err)
		if w.state[j] != mQueued {
			return fmt.Errorf("expired job %d was not waiting", j.ID)
		}
		if j.Err == nil {
			return fmt.Errorf("expired job %d has no error", j.ID)
		}
		late := !j.Deadline.IsZero() && !w.now.Before(j.Deadline)
		if !late && !errors.Is(j.Err, models.ErrUnavailable) {
			return fmt.Errorf("job %d expired before its deadline: %v", j.ID, j.Err)
		}
		w.state[j] = mDone
	}
	return nil
}

// check compares the core with the model.
func (w *world) check() error {
	queued := 0
	running := map[string][]*Job{}
	for _, j := range w.jobs {
		switch w.state[j] {
		case mQueued:
			queued++
			if !j.Queued() {
				return fmt.Errorf("job %d should wait, core state %d", j.ID, j.state)
			}
		case mRunning:
			running[j.Engine] = append(running[j.Engine], j)
			if !j.Running() {
				return fmt.Errorf("job %d should run, core state %d", j.ID, j.state)
			}
		case mDone:
			if j.Queued() || j.Running() {
				return fmt.Errorf("job %d ended but the core still holds it (state %d)", j.ID, j.state)
			}
		}
	}
	if n := w.c.QueueLen(0) + w.c.QueueLen(1); n != queued {
		return fmt.Errorf("core has %d waiting, model %d", n, queued)
	}
	seen := map[*Job]bool{}
	for p, q := range w.c.queues {
		n := 0
		for i, tq := range q.sorted {
			if len(tq.jobs) == 0 {
				return fmt.Errorf("class %d: tenant %q in the order without jobs", p, tq.name)
			}
			if q.tenants[tq.name] != tq {
				return fmt.Errorf("class %d: tenant %q in the order but not in the map", p, tq.name)
			}
			if i > 0 && before(tq.jobs[0], q.sorted[i-1].jobs[0]) {
				return fmt.Errorf("class %d: tenants out of order at %d", p, i)
			}
			for _, j := range tq.jobs {
				if seen[j] || w.state[j] != mQueued {
					return fmt.Errorf("class %d: job %d in the queue twice or not waiting", p, j.ID)
				}
				seen[j] = true
				n++
			}
		}
		if n != q.n {
			return fmt.Errorf("class %d: counts %d jobs, holds %d", p, q.n, n)
		}
		// Tenants: those with jobs, plus at most maxIdleTenants that still owe.
		if len(q.idle) > q.maxIdle || len(q.tenants) != len(q.sorted)+len(q.idle) {
			return fmt.Errorf("class %d: %d tenants known, %d waiting, %d idle (bound %d)", p, len(q.tenants), len(q.sorted), len(q.idle), q.maxIdle)
		}
		for i, tq := range q.idle {
			if tq.idleAt != i || len(tq.jobs) > 0 || q.tenants[tq.name] != tq || tq.lastFinish <= q.vtime {
				return fmt.Errorf("class %d: idle tenant %q misfiled (at %d/%d, %d jobs, owes %v)", p, tq.name, tq.idleAt, i, len(tq.jobs), tq.lastFinish-q.vtime)
			}
			if i > 0 && q.less(i, (i-1)/2) {
				return fmt.Errorf("class %d: idle heap out of order at %d", p, i)
			}
		}
	}
	for _, id := range w.ids {
		e := w.c.engines[id]
		rs := running[id]
		busy := 0
		for i := range e.Slots {
			if e.Slots[i].Busy {
				busy++
			}
		}
		tokens, prefill := 0, 0
		for _, j := range rs {
			tokens += j.Tokens
			prefill += j.prefill
			if j.slotIdx >= len(e.Slots) || !e.Slots[j.slotIdx].Busy || e.Slots[j.slotIdx].job != j {
				return fmt.Errorf("%s: running job %d's slot %d is not busy with it (slots %d)", id, j.ID, j.slotIdx, len(e.Slots))
			}
			if e.Exclusive && j.Model != e.active {
				return fmt.Errorf("%s: holds %q but runs job %d for %q", id, e.active, j.ID, j.Model)
			}
		}
		if busy != len(rs) || e.inflight != len(rs) {
			return fmt.Errorf("%s: %d busy slots, %d in flight, %d running jobs", id, busy, e.inflight, len(rs))
		}
		if e.svc.n != w.served[id] {
			return fmt.Errorf("%s: %d service times recorded, %d jobs completed", id, e.svc.n, w.served[id])
		}
		if e.tokens != tokens || e.prefill != prefill {
			return fmt.Errorf("%s: tokens %d/%d, prefill %d/%d (core/model)", id, e.tokens, tokens, e.prefill, prefill)
		}
		if e.size < 1 || len(e.Slots) < e.size {
			return fmt.Errorf("%s: %d slots in service, %d in all", id, e.size, len(e.Slots))
		}
		if n := len(e.Slots); n > e.size && !e.Slots[n-1].Busy {
			return fmt.Errorf("%s: a free retired slot %d was kept", id, n-1)
		}
	}
	for _, j := range w.jobs {
		if w.homog && w.passed[j] > maxOvertaken {
			return fmt.Errorf("job %d was passed %d times (bound %d)", j.ID, w.passed[j], maxOvertaken)
		}
	}
	return nil
}

// drain brings every engine up and runs the work off: every waiting job must run or
// expire (nothing starves, nothing is lost).
func (w *world) drain() error {
	w.logf("drain")
	for _, id := range w.ids {
		w.c.SetEngine(id, w.c.engines[id].size, true, "", 0, 0)
	}
	for round := 0; ; round++ {
		if err := w.expire(); err != nil {
			return err
		}
		if err := w.dispatch(); err != nil {
			return err
		}
		if err := w.check(); err != nil {
			return fmt.Errorf("drain round %d: invariant: %w", round, err)
		}
		var run []*Job
		for _, j := range w.jobs {
			if w.state[j] == mRunning {
				run = append(run, j)
			}
		}
		if len(run) == 0 && w.pick(mQueued) == nil {
			return nil
		}
		if round > 10*len(w.jobs)+10 {
			return fmt.Errorf("drain: %d jobs still wait after %d rounds: %s", w.c.QueueLen(0)+w.c.QueueLen(1), round, w.dump())
		}
		w.now = w.now.Add(time.Second)
		for _, j := range run {
			w.c.Release(w.now, j, true, 0)
			w.state[j] = mDone
			w.served[j.Engine]++
		}
	}
}

// dump describes the engines and the waiting jobs, for failure messages.
func (w *world) dump() string {
	var b strings.Builder
	for _, id := range w.ids {
		e := w.c.engines[id]
		fmt.Fprintf(&b, "\n  engine %s: healthy %v size %d slots %d inflight %d exclusive %v active %q drainFor %q kv %d/%d",
			id, e.Healthy, e.size, len(e.Slots), e.inflight, e.Exclusive, e.active, e.drainFor, e.tokens, e.KVTokens)
	}
	for _, j := range w.jobs {
		if w.state[j] == mQueued {
			fmt.Fprintf(&b, "\n  waiting job %d: model %s tenant %s prio %d tokens %d candidates %v", j.ID, j.Model, j.Tenant, j.queuedPriority, j.Tokens, j.Candidates)
		}
	}
	return b.String()
}
