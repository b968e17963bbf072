package overflow_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/sluice-llm/sluice/models"
	"github.com/sluice-llm/sluice/overflow"
	"github.com/sluice-llm/sluice/router"
	"github.com/sluice-llm/sluice/scheduler"
)

// The residency property: over thousands of generated catalogs, key policies, engine
// failures (before and after the first token), saturation (the real scheduler's, with
// a tiny SLO and a short queue, and injected refusals) and fallback chains, no request
// of a key with a restricted policy is opened on a backend outside it. The check is in
// each backend's Open, where a request would leave the box.

// regions a generated remote backend may be in.
var regions = []string{"eu", "us", "apac", "eu", "us"}

type world struct {
	regionOf map[string]string
	v        *violations
}

type violations struct {
	mu   sync.Mutex
	list []string
	// opens counts backend opens by the request key's policy and the backend's region kind.
	restrictedRemote, restrictedLocal, anyRemote atomic.Int64
}

func (v *violations) check(backend, region string, r *models.Request) {
	if r.Key != nil && !models.ResidencyAllows(r.Key.Residency, region) {
		v.mu.Lock()
		v.list = append(v.list, fmt.Sprintf("key %q (%s) opened on %s in %s (model %s)", r.Key.ID, r.Key.Residency, backend, region, r.Model))
		v.mu.Unlock()
	}
	restricted := r.Key != nil && r.Key.Residency != "" && r.Key.Residency != models.ResidencyAny
	switch {
	case restricted && region != models.RegionLocal:
		v.restrictedRemote.Add(1)
	case restricted:
		v.restrictedLocal.Add(1)
	case region != models.RegionLocal:
		v.anyRemote.Add(1)
	}
}

// backend is a fake engine: it checks residency at Open, then fails at open, fails
// before or after the first token, or answers, at random.
type backend struct {
	id, region string
	w          *world
	failRate   float64
	rng        *lockedRand
	slots      int
}

func (b *backend) Open(_ context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	b.w.v.check(b.id, b.region, r)
	if t.Backend != b.id {
		return nil, fmt.Errorf("backend %s opened for target %s", b.id, t.Backend)
	}
	if b.rng.Float64() < b.failRate {
		switch b.rng.IntN(6) {
		case 0:
			return nil, &models.Error{Kind: models.ErrOverloaded, Msg: "529"}
		case 1:
			return nil, &models.Error{Kind: models.ErrRejected, Msg: "429", RetryAfter: time.Second}
		case 2:
			return nil, &models.Error{Kind: models.ErrUpstream, Msg: "500"}
		case 3:
			return nil, &models.Error{Kind: models.ErrInvalid, Code: models.CodeContextLength, Msg: "too long"}
		case 4:
			return &stream{fail: true}, nil // fails before the first token
		default:
			return &stream{fail: true, tokens: 1 + b.rng.IntN(2)}, nil // fails mid-stream
		}
	}
	return &stream{tokens: 3}, nil
}

func (b *backend) Capacity() models.Capacity {
	return models.Capacity{Slots: b.slots, Healthy: true}
}

type stream struct {
	tokens, i int
	fail      bool
}

func (s *stream) Recv() (models.Chunk, error) {
	if s.i < s.tokens {
		s.i++
		return models.Chunk{Text: "t"}, nil
	}
	if s.fail {
		return models.Chunk{}, &models.Error{Kind: models.ErrUpstream, Msg: "stream broke"}
	}
	return models.Chunk{}, io.EOF
}
func (s *stream) Usage() models.Usage { return models.Usage{PromptTokens: 10, CompletionTokens: s.i} }
func (s *stream) Close() error        { return nil }

type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func (l *lockedRand) Float64() float64 { l.mu.Lock(); defer l.mu.Unlock(); return l.r.Float64() }
func (l *lockedRand) IntN(n int) int   { l.mu.Lock(); defer l.mu.Unlock(); return l.r.IntN(n) }

// saturating refuses a share of requests the way a full scheduler does, before the
// real scheduler sees the rest.
type saturating struct {
	next overflow.Opener
	rate float64
	rng  *lockedRand
}

func (s *saturating) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if s.rng.Float64() < s.rate {
		return nil, &models.Error{Kind: models.ErrSaturated, Code: "saturated", Msg: "saturated"}
	}
	return s.next.Open(ctx, t, r)
}

func TestResidencyProperty(t *testing.T) {
	configs := 2000
	if testing.Short() {
		configs = 300
	}
	v := &violations{}
	var served, failed, overflowed, routed atomic.Int64
	for seed := 0; seed < configs; seed++ {
		// Each world runs in a synctest bubble: the scheduler's back-off after an
		// overloaded engine, queue deadlines and the stage's backoff pass on virtual time,
		// so thousands of worlds take seconds, not the minutes of real waits.
		synctest.Test(t, func(t *testing.T) {
			runConfig(t, uint64(seed), v, &served, &failed, &overflowed, &routed)
		})
		if t.Failed() {
			return
		}
	}
	for _, s := range v.list[:min(len(v.list), 10)] {
		t.Error(s)
	}
	if len(v.list) > 0 {
		t.Fatalf("%d residency violations", len(v.list))
	}
	t.Logf("%d configs, %d requests routed: %d served, %d failed, %d overflowed; opens of restricted keys: %d local, %d remote (allowed regions); unrestricted remote opens %d",
		configs, routed.Load(), served.Load(), failed.Load(), overflowed.Load(), v.restrictedLocal.Load(), v.restrictedRemote.Load(), v.anyRemote.Load())
	// The property must have been exercised, not passed vacuously.
	if v.restrictedRemote.Load() < 100 || v.anyRemote.Load() < 100 || overflowed.Load() < 100 || failed.Load() < 100 {
		t.Fatal("the generated cases did not exercise remote targets, overflow and failures enough")
	}
}

func runConfig(t *testing.T, seed uint64, v *violations, served, failed, overflowed, routed *atomic.Int64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	lr := &lockedRand{r: rand.New(rand.NewPCG(seed, 1))}
	w := &world{regionOf: map[string]string{}, v: v}
	tiers := []string{"small", "large", "frontier"}[:1+rng.IntN(3)]

	var ids []string
	local := map[string]scheduler.Backend{}
	remote := map[string]overflow.Remote{}
	nLocal, nRemote := 1+rng.IntN(3), rng.IntN(5)
	for i := 0; i < nLocal+nRemote; i++ {
		id, region := fmt.Sprintf("L%d", i), models.RegionLocal
		if i >= nLocal {
			id, region = fmt.Sprintf("R%d", i), regions[rng.IntN(len(regions))]
		}
		b := &backend{id: id, region: region, w: w, failRate: []float64{0, 0.1, 0.5, 1}[rng.IntN(4)], rng: lr, slots: 1 + rng.IntN(2)}
		w.regionOf[id] = region
		ids = append(ids, id)
		if region == models.RegionLocal {
			local[id] = b
		} else {
			remote[id] = overflow.Remote{Backend: b, Region: region, MaxConcurrency: 1 + rng.IntN(3),
				Prices: map[string]overflow.Price{}}
		}
	}
	var entries []router.Entry
	var names []string
	for m := 0; m < 1+rng.IntN(6); m++ {
		name := fmt.Sprintf("m%d", m)
		names = append(names, name)
		tier := tiers[rng.IntN(len(tiers))]
		caps := router.Caps(rng.IntN(8))
		ctxw := []int{0, 100, 4096}[rng.IntN(3)]
		perm := rng.Perm(len(ids))
		for _, k := range perm[:1+rng.IntN(min(3, len(ids)))] {
			entries = append(entries, router.Entry{Name: name, Backend: ids[k], Region: w.regionOf[ids[k]], Tier: tier,
				Caps: caps, ContextWindow: ctxw, InputPrice: rng.Float64(), OutputPrice: rng.Float64()})
			if p, ok := remote[ids[k]]; ok {
				p.Prices[name] = overflow.Price{Input: 1, Output: 2}
			}
		}
	}
	rt, err := router.NewWithOptions(entries, router.Options{Tiers: tiers, Remote: rng.IntN(4) > 0,
		MaxFallbacks: 1 + rng.IntN(8)})
	if err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	slo := time.Duration(0)
	if rng.IntN(2) == 0 {
		slo = time.Microsecond // the real scheduler refuses as saturated once it has measured
	}
	sched := scheduler.New(local, scheduler.Options{MaxQueue: 1 + rng.IntN(3), SLO: [2]time.Duration{slo, slo}})
	var next overflow.Opener = sched
	if rng.IntN(2) == 0 {
		next = &saturating{next: sched, rate: []float64{0.3, 0.9, 1}[rng.IntN(3)], rng: lr}
	}
	st := overflow.New(next, overflow.Options{Remote: remote, MaxAttempts: 1 + rng.IntN(4), Backoff: time.Microsecond,
		MaxWait:    []time.Duration{0, 0, time.Millisecond, 20 * time.Microsecond}[rng.IntN(4)],
		MaxBackoff: time.Microsecond, BreakerFailures: 1 + rng.IntN(3), BreakerCooldown: time.Millisecond, MinRetries: 5})

	policies := []string{models.ResidencyEU, models.ResidencyLocalOnly, models.ResidencyEU, "", models.ResidencyAny, "mars"}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		grng := rand.New(rand.NewPCG(seed, uint64(g)+7))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 6; i++ {
				r := genRequest(grng, names, tiers, policies)
				tgt, err := rt.Route(context.Background(), r)
				if err != nil {
					continue
				}
				routed.Add(1)
				for _, c := range append(append([]models.Candidate(nil), tgt.Candidates...), tgt.Fallbacks...) {
					if r.Key != nil && !models.ResidencyAllows(r.Key.Residency, c.Region) {
						v.mu.Lock()
						v.list = append(v.list, fmt.Sprintf("router offered %s (%s) to a %s key", c.Backend, c.Region, r.Key.Residency))
						v.mu.Unlock()
					}
				}
				s, err := st.Open(context.Background(), tgt, r)
				if err != nil {
					failed.Add(1)
					continue
				}
				if r.Trace.Overflow != "" {
					overflowed.Add(1)
				}
				if ts, ok := s.(interface{ Target() models.Target }); ok {
					used := ts.Target()
					if r.Key != nil && (!models.ResidencyAllows(r.Key.Residency, w.regionOf[used.Backend]) ||
						!models.ResidencyAllows(r.Key.Residency, r.Trace.Region) || used.Region != w.regionOf[used.Backend]) {
						v.mu.Lock()
						v.list = append(v.list, fmt.Sprintf("served on %s (%s), trace region %s, for a %s key", used.Backend, used.Region, r.Trace.Region, r.Key.Residency))
						v.mu.Unlock()
					}
				}
				for {
					if _, err := s.Recv(); err != nil {
						if !errors.Is(err, io.EOF) {
							failed.Add(1)
						} else {
							served.Add(1)
						}
						break
					}
				}
				s.Close()
			}
		}()
	}
	wg.Wait()
}

func genRequest(rng *rand.Rand, names, tiers []string, policies []string) *models.Request {
	model := names[rng.IntN(len(names))]
	switch rng.IntN(5) {
	case 0:
		model = "auto"
	case 1:
		model = "auto-" + tiers[rng.IntN(len(tiers))]
	}
	r := &models.Request{Kind: models.KindChat, Model: model, Stream: rng.IntN(2) == 0,
		Messages: []models.Message{{Role: "user", Content: string(make([]byte, rng.IntN(800)))}},
		Arrived:  time.Now(), Deadline: time.Now().Add(time.Second)}
	if rng.IntN(4) == 0 {
		r.Tier = tiers[rng.IntN(len(tiers))]
	}
	if rng.IntN(3) == 0 {
		r.Tools = []byte(`[{}]`)
	}
	if rng.IntN(6) > 0 {
		k := &models.Key{ID: fmt.Sprintf("key-%d", rng.IntN(100)), Residency: policies[rng.IntN(len(policies))]}
		if rng.IntN(5) == 0 {
			k.Tiers = []string{tiers[rng.IntN(len(tiers))]}
		}
		if rng.IntN(5) == 0 {
			k.Models = []string{names[rng.IntN(len(names))], "auto"}
		}
		r.Key = k
	}
	return r
}
