package cache

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Run stores answers queued by misses, loads the semantic index from the store, and,
// when the store is shared (a Watcher), follows the entries other replicas write. It
// returns when ctx ends, after storing what was queued. Call it once.
func (s *Stage) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if s.o.Semantic {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.load(ctx)
		}()
		if w, ok := s.store.(Watcher); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.watch(ctx, w)
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.sweep(ctx)
		}()
	}
	s.write(ctx)
	close(s.stopped)
	wg.Wait()
	return nil
}

// defaultLinger is how long the writer waits for more answers after the first of a batch:
// one transaction (and one fsync) per batch instead of per answer under load. The writer
// sleeps through it and then takes everything queued at once, so a busy request path
// wakes it once a batch, not once an answer (~9% less CPU per request in `sluice bench
// gateway` than draining the queue answer by answer). A queue half full, or a Flush
// barrier, ends the wait at once (hurry).
const defaultLinger = 100 * time.Millisecond

// write stores queued answers in batches (one transaction or pipeline each).
func (s *Stage) write(ctx context.Context) {
	batch := make([]*pending, 0, cap(s.writes)+1)
	for {
		select {
		case <-ctx.Done():
			s.drainQueue(ctx, batch)
			return
		case <-s.idx.wake():
			s.drainIndex(ctx, false)
		case p := <-s.writes:
			batch = append(batch[:0], p)
			if p.done == nil {
				t := time.NewTimer(s.linger)
				select {
				case <-t.C:
				case <-s.hurry:
				case <-ctx.Done():
				}
				t.Stop()
				batch = s.take(batch)
			}
			if ctx.Err() != nil { // the shutdown ended the linger
				s.drainQueue(ctx, batch)
				return
			}
			s.flush(ctx, batch)
			clear(batch)
			batch = batch[:0]
		}
	}
}

// drainQueue stores batch and then what is still queued (past any barrier), a batch at a
// time, with a context the shutdown does not cancel (a Redis store refuses a cancelled
// one). The request path has stopped queueing by now (serve drains the gateway first).
func (s *Stage) drainQueue(ctx context.Context, batch []*pending) {
	ctx = context.WithoutCancel(ctx)
	for {
		for n := -1; n != len(batch); { // take stops at each barrier: go past them
			n = len(batch)
			batch = s.take(batch)
		}
		if len(batch) == 0 {
			return
		}
		s.flush(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// take appends what is queued now to batch, up to and including a Flush barrier, and
// at most up to the batch's capacity (the queue's and one), so a batch's transaction
// stays bounded while the request path keeps queueing.
func (s *Stage) take(batch []*pending) []*pending {
	for len(batch) < cap(batch) {
		select {
		case p := <-s.writes:
			batch = append(batch, p)
			if p.done != nil {
				return batch
			}
		default:
			return batch
		}
	}
	return batch
}

// enqueue queues p for the writer without blocking (false: the queue is full), and
// ends the writer's linger when the queue is half full.
func (s *Stage) enqueue(p *pending) bool {
	select {
	case s.writes <- p:
	default:
		return false
	}
	if len(s.writes) >= cap(s.writes)/2 {
		s.poke()
	}
	return true
}

// poke ends the writer's linger. A poke while the writer is not lingering stays in
// hurry and shortens its next linger: one smaller batch, nothing lost.
func (s *Stage) poke() {
	select {
	case s.hurry <- struct{}{}:
	default:
	}
}

func (s *Stage) flush(ctx context.Context, batch []*pending) {
	defer func() {
		for _, p := range batch {
			if p.done != nil {
				close(p.done)
			}
		}
	}()
	es := make([]*Entry, 0, len(batch))
	for _, p := range batch {
		if p.e != nil {
			es = append(es, p.e)
		}
	}
	if len(es) == 0 {
		s.drainIndex(ctx, batch[len(batch)-1].done != nil)
		return
	}
	// Vectors of an engine embedder travel with the entry (an index rebuild needs no
	// engine call); the lookup made them when the scope had entries, else make them now.
	if s.o.Semantic && s.emb != s.builtin {
		var texts []string
		var idx []int
		for i, p := range batch {
			if p.e == nil {
				continue
			}
			if p.vec != nil {
				p.e.Vector = p.vec
			} else if s.semanticFor(p.e.Question) {
				texts = append(texts, p.e.Question)
				idx = append(idx, i)
			}
			p.e.EmbedderID = s.emb.ID()
		}
		if len(texts) > 0 {
			vs, err := s.emb.Embed(ctx, texts)
			if err != nil || len(vs) != len(texts) {
				s.m.errors.WithLabelValues("embed").Inc()
				s.log.Warn("cache: embedding answers to store failed; stored for exact matches only", "err", err)
			} else {
				for j, i := range idx {
					batch[i].e.Vector = vs[j]
				}
			}
		}
	}
	// Into the indexing backlog before the store: a shared store's put event for them
	// (Redis) must find them waiting, and an eviction during the put takes them out.
	var queued []Key
	if s.o.Semantic {
		for _, p := range batch {
			if p.e != nil && s.semanticFor(p.e.Question) {
				s.queueIndex(p.e, p.kept)
				queued = append(queued, p.e.Key)
			}
		}
	}
	if err := s.store.Put(ctx, es...); err != nil {
		s.idx.forget(queued...)
		s.m.errors.WithLabelValues("put").Inc()
		s.log.Warn("cache: store failed", "err", err, "entries", len(es))
		s.drainIndex(ctx, batch[len(batch)-1].done != nil)
		return
	}
	s.m.stored.Add(float64(len(es)))
	// A Flush barrier means "indexed" too.
	s.drainIndex(ctx, batch[len(batch)-1].done != nil)
}

// indexer is the writer's semantic-indexing budget: a backlog of stored entries (slim
// copies: what the index needs, not the answer) and a credit of CPU time that refills at
// Options.IndexCPU (capped at indexBurst). Entries that leave the store while they wait
// (evicted, deleted, purged, here or by another replica) leave the backlog too, so they
// are never indexed after their removal.
type indexer struct {
	mu       sync.Mutex // backlog and waiting: the writer, the store's evictions, the watcher, Purge
	backlog  []*waitEntry
	waiting  map[Key]*waitEntry
	credit   time.Duration // the writer's alone, as refilled and timer
	refilled time.Time
	timer    *time.Timer
	n        atomic.Int64 // len(waiting), for the gauge
}

// waitEntry is an entry waiting to be indexed.
type waitEntry struct {
	e      *Entry    // without its answer
	answer uint64    // the answer's hash
	kept   *analysed // the question's analysis, when the lookup's was kept
	gone   bool      // left the store meanwhile: skip it
}

// drop marks w gone and lets go of what it holds: it stays in the backlog, a few words,
// until it reaches the front or the backlog is compacted.
func (w *waitEntry) drop() {
	w.gone = true
	w.e = nil
	w.kept = nil
}

// indexBurst is the most indexing time the budget lets accumulate (a burst of ~300
// questions of 1 KB is indexed at once).
const indexBurst = 50 * time.Millisecond

// indexRetry is how soon the writer comes back to a backlog the budget held up.
const indexRetry = 20 * time.Millisecond

// wake fires when a backlog held up by the budget may be indexed (nil: none waits).
func (x *indexer) wake() <-chan time.Time {
	if x.timer == nil || x.n.Load() == 0 {
		return nil
	}
	return x.timer.C
}

// forget takes keys out of the backlog (they left the store).
func (x *indexer) forget(keys ...Key) {
	x.mu.Lock()
	for _, k := range keys {
		if w := x.waiting[k]; w != nil {
			w.drop()
			delete(x.waiting, k)
		}
	}
	x.n.Store(int64(len(x.waiting)))
	x.mu.Unlock()
}

// forgetScope takes a tenant's or a model's entries ("" for any) out of the backlog.
func (x *indexer) forgetScope(tenant, model string) {
	match := keyMatch(tenant, model)
	x.mu.Lock()
	for k, w := range x.waiting {
		if match(k) {
			w.drop()
			delete(x.waiting, k)
		}
	}
	x.n.Store(int64(len(x.waiting)))
	x.mu.Unlock()
}

// isWaiting reports whether k waits in the backlog (this replica stored it and will
// index it: its own put event needs nothing more).
func (x *indexer) isWaiting(k Key) bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.waiting[k] != nil
}

// queueIndex adds a stored entry to the indexing backlog, dropping the oldest when full.
func (s *Stage) queueIndex(e *Entry, kept *analysed) {
	x := &s.idx
	w := &waitEntry{answer: e.Answer.hash(), kept: kept, e: &Entry{Key: e.Key, Scope: e.Scope, Tenant: e.Tenant, Model: e.Model,
		Kind: e.Kind, Question: e.Question, Vector: e.Vector, EmbedderID: e.EmbedderID, Expires: e.Expires}}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.waiting == nil {
		x.waiting = map[Key]*waitEntry{}
	}
	if old := x.waiting[e.Key]; old != nil {
		old.drop() // replaced: the newer answer is indexed
	}
	for len(x.waiting) >= s.o.IndexBacklog && len(x.backlog) > 0 {
		old := x.backlog[0]
		x.backlog[0] = nil
		x.backlog = x.backlog[1:]
		if !old.gone {
			delete(x.waiting, old.e.Key)
			s.m.indexDropped.Inc()
		}
	}
	x.waiting[e.Key] = w
	x.backlog = append(x.backlog, w)
	if len(x.backlog) > 2*len(x.waiting)+64 {
		// Mostly entries gone meanwhile (replaced, evicted, purged) while the budget held
		// the backlog up: keep the live ones, in order.
		live := x.backlog[:0]
		for _, b := range x.backlog {
			if !b.gone {
				live = append(live, b)
			}
		}
		clear(x.backlog[len(live):])
		x.backlog = live
	}
	x.n.Store(int64(len(x.waiting)))
}

// drainIndex indexes the backlog while the budget has credit (all of it when force: a
// Flush; forced work is not charged to the budget).
func (s *Stage) drainIndex(ctx context.Context, force bool) {
	x := &s.idx
	now := time.Now()
	if x.refilled.IsZero() {
		x.refilled = now // the credit starts at zero and refills from here
	}
	unbounded := s.o.IndexCPU < 0
	if !unbounded {
		x.credit = min(indexBurst, x.credit+time.Duration(float64(now.Sub(x.refilled))*s.o.IndexCPU))
	}
	x.refilled = now
	for force || unbounded || x.credit > 0 {
		x.mu.Lock()
		if len(x.backlog) == 0 {
			x.backlog = nil // let the array go
			x.mu.Unlock()
			break
		}
		w := x.backlog[0]
		x.backlog[0] = nil
		x.backlog = x.backlog[1:]
		if w.gone {
			x.mu.Unlock()
			continue
		}
		delete(x.waiting, w.e.Key)
		x.n.Store(int64(len(x.waiting)))
		// Indexed under the lock: a removal of this key now waits, then finds it in the
		// index.
		start := time.Now()
		s.indexEntryAnswer(ctx, w.e, w.answer, w.kept)
		x.mu.Unlock()
		if !unbounded && !force {
			x.credit -= time.Since(start)
		}
	}
	if x.n.Load() > 0 {
		// Back when the credit is positive again (at least indexRetry from now).
		d := indexRetry
		if x.credit < 0 {
			d = max(d, time.Duration(float64(-x.credit)/s.o.IndexCPU))
		}
		if x.timer == nil {
			x.timer = time.NewTimer(d)
		} else {
			x.timer.Reset(d)
		}
	}
}

// indexEntry adds an entry to the semantic index (learning its words' frequencies).
func (s *Stage) indexEntry(ctx context.Context, e *Entry) {
	s.indexEntryAnswer(ctx, e, e.Answer.hash(), nil)
}

// indexEntryAnswer is indexEntry with the answer's hash given (a backlog entry holds the
// hash, not the answer).
func (s *Stage) indexEntryAnswer(ctx context.Context, e *Entry, answer uint64, kept *analysed) {
	if !s.semanticFor(e.Question) {
		return
	}
	if s.index.Has(e.Key, answer) {
		return
	}
	var part Scope
	var v []float32
	if kept != nil && s.emb == s.builtin {
		// The lookup's analysis of the same question, weighed with the document
		// frequencies of before the engine call (and the wait in the backlog): this
		// vector only finds candidates, and a match's similarity is computed afresh.
		s.builtin.learnKept(kept)
		part, v = kept.part, kept.dense
	} else {
		a := s.builtin.get()
		s.builtin.analyze(a, e.Question, s.emb == s.builtin)
		s.builtin.learn(a)
		part = partition(e.Scope, &a.facts)
		if s.emb == s.builtin {
			v = slices.Clone(a.dense)
		}
		s.builtin.put(a)
	}
	if s.emb != s.builtin {
		if e.EmbedderID != s.emb.ID() || len(e.Vector) == 0 {
			vs, err := s.emb.Embed(ctx, []string{e.Question})
			if err != nil || len(vs) != 1 {
				s.m.errors.WithLabelValues("embed").Inc()
				return
			}
			v = vs[0]
		} else {
			v = e.Vector
		}
	}
	s.index.Add(part, e.Key, e.Question, answer, v, e.Expires)
}

// load fills the semantic index from the store (at start: entries kept across restarts
// or written by other replicas).
func (s *Stage) load(ctx context.Context) {
	start := time.Now()
	n := 0
	err := s.store.Scan(ctx, func(e *Entry) bool {
		s.indexEntry(ctx, e)
		n++
		return ctx.Err() == nil
	})
	if err != nil && ctx.Err() == nil {
		s.m.errors.WithLabelValues("load").Inc()
		s.log.Warn("cache: loading the semantic index failed", "err", err)
		return
	}
	s.log.Info("cache: semantic index loaded", "entries", n, "took", time.Since(start).Round(time.Millisecond))
}

// watch follows a shared store's changes until ctx ends, reconnecting after errors.
func (s *Stage) watch(ctx context.Context, w Watcher) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := w.Watch(ctx, func(ev Event) {
			switch ev.Op {
			case OpPut:
				if s.index.Contains(ev.Key) || s.idx.isWaiting(ev.Key) {
					return // indexed, or this replica's own answer waiting for the budget
				}
				e, err := s.store.Get(ctx, ev.Key)
				if err != nil {
					s.m.errors.WithLabelValues("get").Inc()
					return
				}
				if e != nil {
					s.indexEntry(ctx, e)
				}
			case OpDelete:
				s.idx.forget(ev.Key)
				s.index.Remove(ev.Key)
			case OpPurge:
				s.idx.forgetScope(ev.Tenant, ev.Model)
				s.index.Purge(ev.Tenant, ev.Model)
			}
		})
		if ctx.Err() != nil {
			return
		}
		s.m.errors.WithLabelValues("watch").Inc()
		s.log.Warn("cache: following the shared store failed; retrying", "err", err, "in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// sweepEvery is how often expired entries leave the semantic index.
const sweepEvery = time.Minute

// sweep drops expired entries from the index every sweepEvery until ctx ends.
func (s *Stage) sweep(ctx context.Context) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.index.Sweep(s.now())
		}
	}
}

// errStopped is Flush's answer once the writer has stopped (Run returned).
var errStopped = errors.New("cache: the answer writer has stopped")

// Flush waits until the answers queued so far are stored and indexed (tests, bench). It
// returns an error once Run has returned, instead of waiting for a writer that is gone.
func (s *Stage) Flush(ctx context.Context) error {
	p := &pending{done: make(chan struct{})}
	select {
	case s.writes <- p:
		s.poke()
	case <-s.stopped:
		return errStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-p.done:
		return nil
	case <-s.stopped:
		select {
		case <-p.done: // the shutdown took it
			return nil
		default:
			return errStopped
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}
