package cache

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Opener is the next stage: the scheduler's shape.
type Opener interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
}

// Defaults.
const (
	DefaultTTL            = 24 * time.Hour
	DefaultMaxTemperature = 0.3
	// DefaultThresholdBuiltin is the similarity a semantic match needs with the built-in
	// embedder (its cosines run lower than a model's: few shared words for a paraphrase).
	DefaultThresholdBuiltin = 0.5
	// DefaultThresholdEngine is the cosine a semantic match needs with a model's
	// embeddings.
	DefaultThresholdEngine = 0.92
	// DefaultMargin: a match is refused when another candidate with a different answer
	// comes within this much of its similarity (two cached questions compete).
	DefaultMargin = 0.1
	// DefaultSubstitution: a match is refused when each question has more than this
	// share (by weight) of content words the other lacks.
	DefaultSubstitution = 0.45
	// DefaultIndexCPU is the share of one CPU the semantic indexer may use (about 700
	// questions of 1 KB a second on this project's 2-vCPU reference machine).
	DefaultIndexCPU = 0.1
	// DefaultMaxQuestion bounds the questions matched semantically (bytes; about 500
	// tokens, what sentence-embedding models read).
	DefaultMaxQuestion = 2048
)

// Options configure the cache stage.
type Options struct {
	Store Store // required
	// Embedder for the semantic index; nil: the built-in one.
	Embedder Embedder
	// Semantic turns the semantic lookup on (exact matching is always on).
	Semantic bool
	// Threshold is the similarity a semantic match needs (0: the embedder's default);
	// Thresholds overrides it per model (catalog name).
	Threshold  float64
	Thresholds map[string]float64
	// Margin and Substitution tune two of the guards (0: defaults; negative: off).
	Margin       float64
	Substitution float64
	// MaxQuestionBytes: longer questions (a pasted document, a RAG context) are matched
	// exactly only, neither looked up nor indexed semantically (0: DefaultMaxQuestion;
	// negative: no bound). A paraphrase of a multi-kilobyte text is rarely the same
	// question, sentence-embedding models truncate at a few hundred tokens anyway, and
	// analysing and indexing them costs the most.
	MaxQuestionBytes int
	// IndexCPU bounds the share of one CPU the writer spends adding stored answers to the
	// semantic index (analysing each question, learning its words, inserting it in the
	// graph): 0 is DefaultIndexCPU, negative is no bound. Answers over the budget wait in
	// a backlog of IndexBacklog (default 4096; the oldest leave it first) and are indexed
	// when the budget allows; every answer is stored and matched exactly at once either
	// way. Under a flood of new questions the semantic index lags instead of taking the
	// request path's CPU.
	IndexCPU     float64
	IndexBacklog int
	// TTL of an entry (default 24 h).
	TTL time.Duration
	// MaxTemperature: requests sampled above it are not cached unless the client says
	// X-Sluice-Cache: force (nil: 0.3). A request without a temperature uses the
	// engine's default (random) and is not cached either, unless it sets a seed.
	MaxTemperature *float64
	// StoreTruncated keeps answers cut at max_tokens (finish_reason "length") too; by
	// default only whole answers (stop, tool_calls) are kept.
	StoreTruncated bool
	// Disabled lists models never cached.
	Disabled []string
	// Queue bounds answers waiting to be stored (default 1024; more are dropped).
	Queue int
	// Counter counts prompt tokens of semantic hits (nil: scaled from the original).
	Counter  models.TokenCounter
	Registry prometheus.Registerer
	Logger   *slog.Logger
	Now      func() time.Time
}

// Stage is the answer cache: a stage of the scheduler's shape in front of next.
type Stage struct {
	next     Opener
	o        Options
	store    Store
	emb      Embedder
	builtin  *Builtin // always: guards, frequencies; also the embedder by default
	index    *Index
	keys     keyer
	m        *metrics
	log      *slog.Logger
	now      func() time.Time
	disabled map[string]bool
	maxTemp  float64
	writes   chan *pending
	hurry    chan struct{} // ends the writer's linger (enqueue, Flush)
	linger   time.Duration // defaultLinger; tests lengthen it
	stopped  chan struct{} // closed when the writer has stored its last batch (Run)
	idx      indexer       // the writer's alone
}

// New returns a cache stage in front of next. Run must run for answers to be stored and
// the semantic index to load.
func New(next Opener, o Options) (*Stage, error) {
	if o.Store == nil {
		return nil, errors.New("cache: a store is required")
	}
	s := &Stage{next: next, o: o, store: o.Store, log: o.Logger, now: o.Now, builtin: NewBuiltin()}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.emb = o.Embedder
	if s.emb == nil {
		s.emb = s.builtin
	}
	if s.o.TTL <= 0 {
		s.o.TTL = DefaultTTL
	}
	s.maxTemp = DefaultMaxTemperature
	if o.MaxTemperature != nil {
		s.maxTemp = *o.MaxTemperature
	}
	if s.o.Threshold <= 0 {
		s.o.Threshold = DefaultThresholdEngine
		if s.emb == s.builtin {
			s.o.Threshold = DefaultThresholdBuiltin
		}
	}
	if s.o.Margin == 0 {
		s.o.Margin = DefaultMargin
	}
	switch {
	case s.o.MaxQuestionBytes == 0:
		s.o.MaxQuestionBytes = DefaultMaxQuestion
	case s.o.MaxQuestionBytes < 0:
		s.o.MaxQuestionBytes = math.MaxInt
	}
	if s.o.Substitution == 0 {
		s.o.Substitution = DefaultSubstitution
	}
	if s.o.Queue <= 0 {
		s.o.Queue = 1024
	}
	if s.o.IndexCPU == 0 {
		s.o.IndexCPU = DefaultIndexCPU
	}
	if s.o.IndexBacklog <= 0 {
		s.o.IndexBacklog = 4096
	}
	s.disabled = map[string]bool{}
	for _, m := range o.Disabled {
		s.disabled[m] = true
	}
	s.index = NewIndex(s.emb.Dim())
	// Entries a local store evicts leave the index with them.
	if rs, ok := s.store.(interface{ SetOnRemove(func([]Key)) }); ok {
		rs.SetOnRemove(func(keys []Key) {
			s.idx.forget(keys...)
			s.index.Remove(keys...)
		})
	}
	s.writes = make(chan *pending, s.o.Queue)
	s.hurry, s.linger, s.stopped = make(chan struct{}, 1), defaultLinger, make(chan struct{})
	s.m = newMetrics(o.Registry, func() float64 { return float64(s.store.Len()) }, func() float64 { return float64(s.index.Len()) },
		func() float64 { return float64(s.idx.n.Load()) })
	return s, nil
}

// Index exposes the semantic index (benchmarks).
func (s *Stage) Index() *Index { return s.index }

func (s *Stage) threshold(model string) float64 {
	if t, ok := s.o.Thresholds[model]; ok {
		return t
	}
	return s.o.Threshold
}

// cacheable returns "" when r may be cached, else the bypass reason.
func (s *Stage) cacheable(t models.Target, r *models.Request) string {
	switch {
	case r.Cache&models.CacheNoStore != 0:
		return bypassDirective
	case r.Key != nil && r.Key.NoCache:
		return bypassKey
	case s.disabled[t.Model]:
		return bypassOff
	}
	if r.Cache&models.CacheForce == 0 {
		sp := &r.Sampling
		if sp.Seed == nil && (sp.Temperature == nil || *sp.Temperature > s.maxTemp) {
			return bypassSampling
		}
	}
	return ""
}

// Open answers r from the cache or opens the next stage and keeps its answer.
func (s *Stage) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	hit, c := s.prepare(ctx, t, r)
	if hit != nil {
		return hit, nil
	}
	st, err := s.next.Open(ctx, t, r)
	if c == nil || err != nil {
		c.release() // nil: bypassed
		return st, err
	}
	c.inner = st
	return c, nil
}

// prepare looks r up: a hit's replay, or the tee that keeps the next stage's answer (its
// inner stream unset), or neither when r bypasses the cache. Apart from Open, so that
// the lookup's frame is not on the stack below the stages that follow (the request's
// goroutine then stays within its first 8 KiB stack).
//
//go:noinline
func (s *Stage) prepare(ctx context.Context, t models.Target, r *models.Request) (models.Stream, *tee) {
	if r.Kind == models.KindEmbedding {
		return nil, nil
	}
	why := s.cacheable(t, r)
	var rk requestKey
	if why == "" {
		rk, why = s.keys.describe(t.Model, r)
	}
	if why != "" {
		r.Trace.Cache = ResultBypass
		s.m.bypass[why].Inc()
		return nil, nil
	}
	var q *query
	if r.Cache&models.CacheNoRead == 0 {
		start := time.Now()
		st, hq := s.lookup(ctx, t, r, &rk)
		s.m.lookup.Observe(time.Since(start).Seconds())
		if st != nil {
			return st, nil
		}
		q = hq
		if q != nil && s.emb == s.builtin {
			q = s.slim(q, r.Stream)
		}
	}
	r.Trace.Cache = ResultMiss
	s.m.miss.Inc()
	return nil, s.tee(nil, t, r, rk, q)
}

// slim gives the built-in analysis back: it is not held while the answer runs (a stream
// may last minutes). A non-streamed answer keeps what the indexer needs of it, when the
// lookup went as far as the vector (q.vec), so the indexer does not analyse the question
// again; a stream's is analysed again when stored. Not inlined: Open's frame is on every
// request's stack, and a stack grown past 16 KiB is slow to shrink back.
//
//go:noinline
func (s *Stage) slim(q *query, stream bool) *query {
	var kept *analysed
	if !stream && q.vec != nil {
		kept = s.builtin.keep(q.a, q.part)
	}
	q.free(s.builtin)
	if kept == nil {
		return nil
	}
	return &query{kept: kept}
}

// semanticFor reports whether question takes part in semantic matching.
func (s *Stage) semanticFor(question string) bool {
	return s.o.Semantic && question != "" && len(question) <= s.o.MaxQuestionBytes
}

// query is a request's analysed question, kept from the lookup for the store.
type query struct {
	a    *analysis // built-in analysis (pooled; nil once given back)
	part Scope     // the index partition it belongs to
	vec  []float32 // the embedder's vector, when made
	kept *analysed // what the indexer needs of a, for a non-streamed answer
}

// free gives the built-in analysis back to its pool.
func (q *query) free(b *Builtin) {
	if q != nil && q.a != nil {
		b.put(q.a)
		q.a = nil
	}
}

// lookup returns a replay of a cached answer, or nil and the analysed question (when
// the semantic lookup made one).
func (s *Stage) lookup(ctx context.Context, t models.Target, r *models.Request, rk *requestKey) (models.Stream, *query) {
	e, err := s.store.Get(ctx, rk.key)
	if err != nil {
		s.m.errors.WithLabelValues("get").Inc()
		s.log.Debug("cache get failed", "err", err)
		return nil, nil // fail open: the request goes on as a miss
	}
	if e != nil && e.Tenant == r.Tenant && e.Model == t.Model && e.Kind == r.Kind && e.Scope == rk.scope {
		if !r.Key.AllowsRegion(e.Region) {
			// Produced where this key's requests may not go: asked again, and the new
			// answer replaces it.
			s.m.guard[guardResidency].Inc()
			return nil, nil
		}
		r.Trace.Cache = ResultHitExact
		s.m.hitExact.Inc()
		return s.replay(t, r, e, e.Usage.PromptTokens, false), nil
	}
	if !s.semanticFor(rk.question) {
		return nil, nil
	}
	// The question's facts first: entries live in partitions of their scope by the
	// numbers, dates and negation the guards require to be equal, so a question whose
	// partition is empty is a miss without embedding anything or searching.
	q := &query{a: s.builtin.get()}
	s.builtin.scan(q.a, rk.question)
	q.part = partition(rk.scope, &q.a.facts)
	if !s.index.HasScope(q.part) {
		return nil, q
	}
	s.builtin.weigh(q.a, false)
	return s.semantic(ctx, t, r, rk, q)
}

// semantic looks the question up in its scope's index and checks the best match
// against the guards.
func (s *Stage) semantic(ctx context.Context, t models.Target, r *models.Request, rk *requestKey, q *query) (models.Stream, *query) {
	useBuiltin := s.emb == s.builtin
	if useBuiltin {
		q.a.dense = project(q.a.dense, q.a.feats, s.builtin.dim)
		q.vec = q.a.dense
	} else {
		vs, err := s.emb.Embed(ctx, []string{rk.question})
		if err != nil || len(vs) != 1 {
			s.m.errors.WithLabelValues("embed").Inc()
			s.log.Debug("cache embed failed", "err", err)
			return nil, q
		}
		q.vec = vs[0]
	}
	var buf [8]Match
	ms := s.index.Search(buf[:0], q.part, q.vec, 4)
	if len(ms) == 0 {
		return nil, q
	}
	// Exact similarity for the built-in embedder (the dense vector only found them).
	sims := [8]float64{}
	best := 0
	for i := range ms {
		sims[i] = float64(ms[i].Sim)
		if useBuiltin {
			c := s.builtin.get()
			s.builtin.analyze(c, ms[i].Question, false)
			sims[i] = cosine(q.a.feats, c.feats)
			s.builtin.put(c)
		}
		if sims[i] > sims[best] {
			best = i
		}
	}
	sim := sims[best]
	if sim < s.threshold(t.Model) {
		return nil, q
	}
	m := ms[best]
	if s.o.Margin > 0 {
		for i := range ms {
			if i != best && ms[i].Answer != m.Answer && sims[i] > sim-s.o.Margin {
				s.m.guard[guardAmbiguous].Inc()
				return nil, q
			}
		}
	}
	c := s.builtin.get()
	defer s.builtin.put(c)
	s.builtin.analyze(c, m.Question, false)
	if why := guard(&q.a.facts, &c.facts); why != "" {
		s.m.guard[why].Inc()
		return nil, q
	}
	if s.o.Substitution > 0 && substituted(q.a.content, c.content, s.o.Substitution) {
		s.m.guard[guardSubstituted].Inc()
		return nil, q
	}
	e, err := s.store.Get(ctx, m.Key)
	if err != nil {
		s.m.errors.WithLabelValues("get").Inc()
		return nil, q
	}
	if e == nil {
		s.index.Remove(m.Key) // expired or evicted
		return nil, q
	}
	if e.Tenant != r.Tenant || e.Model != t.Model || e.Kind != r.Kind || e.Scope != rk.scope {
		return nil, q // never across tenants, models or contexts
	}
	if !r.Key.AllowsRegion(e.Region) {
		s.m.guard[guardResidency].Inc()
		return nil, q // produced in a region this key's policy does not allow
	}
	r.Trace.Cache = ResultHitSemantic
	r.Trace.CacheSimilarity = sim
	s.m.hitSemantic.Inc()
	prompt := e.Usage.PromptTokens
	if s.o.Counter != nil {
		prompt = s.o.Counter.CountTokens(r.PromptText())
	} else if len(e.Question) > 0 {
		prompt += (len(rk.question) - len(e.Question)) / 4 // about 4 bytes a token
		prompt = max(prompt, 1)
	}
	s.builtin.put(q.a)
	return s.replay(t, r, e, prompt, true), nil
}

// Purge removes a tenant's or a model's entries (either may be "": all) from the store
// and the index, and tells other replicas.
func (s *Stage) Purge(ctx context.Context, tenant, model string) (int, error) {
	// Answers queued before the purge would otherwise be stored after it.
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if err := s.Flush(fctx); err != nil && ctx.Err() == nil {
		s.log.Warn("cache: purge: queued answers not stored before the purge", "err", err)
	}
	cancel()
	// Answers still waiting for the indexer's budget (a flush that timed out) are not
	// indexed after the purge either.
	s.idx.forgetScope(tenant, model)
	n, err := s.store.Purge(ctx, tenant, model)
	if err != nil {
		s.m.errors.WithLabelValues("purge").Inc()
		return n, err
	}
	s.index.Purge(tenant, model)
	return n, nil
}

// Preload stores entries and indexes them at once (benchmarks, warm-up tools).
func (s *Stage) Preload(ctx context.Context, es ...*Entry) error {
	if err := s.store.Put(ctx, es...); err != nil {
		return err
	}
	if s.o.Semantic {
		for _, e := range es {
			s.indexEntry(ctx, e)
		}
	}
	return nil
}

// Describe returns the key, scope and question a request would be cached under for
// model, or why it would not be cached (benchmarks, tools).
func (s *Stage) Describe(model string, r *models.Request) (Key, Scope, string, error) {
	rk, why := s.keys.describe(model, r)
	if why != "" {
		return Key{}, Scope{}, "", errors.New("cache: not cacheable: " + why)
	}
	return rk.key, rk.scope, rk.question, nil
}
