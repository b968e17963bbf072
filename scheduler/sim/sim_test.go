package sim

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/sluice-llm/sluice/scheduler"
)

func allPolicies() []scheduler.Policy {
	return []scheduler.Policy{scheduler.PolicySluice, scheduler.PolicyLeastLoaded, scheduler.PolicyRoundRobin}
}

// handEngine has round numbers for hand-computed checks.
func handEngine(slots int) EngineModel {
	return EngineModel{Slots: slots, StepBase: 10 * time.Millisecond, PerDecodeToken: 200 * time.Microsecond,
		PerPrefillToken: 100 * time.Microsecond, PrefillChunk: 512}
}

// sharedPrefix is a multi-tenant workload with long system prompts.
func sharedPrefix(tenants, out, requests int, load float64, seed uint64) Workload {
	return Workload{Tenants: tenants, SystemTokens: 1500, UserTokens: 64, OutputTokens: out,
		Requests: requests, Load: load, Seed: seed}
}

func TestDeterminism(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"sluice 8 gpus", Config{GPUs: 8, Engine: DefaultEngine(), Workload: sharedPrefix(128, 64, 3000, 0.9, 7)}},
		{"round-robin host cache skew", Config{GPUs: 4, Policy: scheduler.PolicyRoundRobin,
			Engine:   func() EngineModel { e := DefaultEngine(); e.HostCache = true; return e }(),
			Workload: Workload{Tenants: 64, SystemTokens: 1000, UserTokens: 200, OutputTokens: 32, Requests: 2000, Load: 1.0, TenantSkew: 1.1, Seed: 3}}},
		{"least-loaded tiny overloaded", Config{GPUs: 3, Policy: scheduler.PolicyLeastLoaded, Engine: TinyCPUEngine(),
			Workload: sharedPrefix(24, 32, 2000, 1.2, 11)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first, err := Run(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				again, err := Run(tc.cfg)
				if err != nil {
					t.Fatal(err)
				}
				if again != first {
					t.Fatalf("same config, different results:\n%+v\n%+v", first, again)
				}
			}
			// Compare runs policies concurrently: same results as one Run.
			rs, err := Compare(tc.cfg, tc.cfg.Policy)
			if err != nil || len(rs) != 1 || rs[0] != first {
				t.Fatalf("Compare = %+v, %v; Run = %+v", rs, err, first)
			}
			other := tc.cfg
			other.Workload.Seed++
			if r, _ := Run(other); r == first {
				t.Fatalf("another seed gave the very same result")
			}
		})
	}
}

func TestConservation(t *testing.T) {
	kvTight := DefaultEngine()
	kvTight.KVTokens = 3 * (1564 + 64) // three sequences at once in 8 slots
	hostCache := DefaultEngine()
	hostCache.HostCache = true
	cases := []struct {
		name   string
		engine EngineModel
		gpus   int
		w      Workload
		budget bool
	}{
		{"default", DefaultEngine(), 4, sharedPrefix(64, 64, 2000, 0.9, 1), false},
		{"kv-limited", kvTight, 2, sharedPrefix(16, 64, 1000, 0.9, 2), false},
		{"kv-limited, budget in the core", kvTight, 2, sharedPrefix(16, 64, 1000, 0.9, 2), true},
		{"host cache, skewed tenants", hostCache, 3, Workload{Tenants: 40, SystemTokens: 700, UserTokens: 300, OutputTokens: 50, Requests: 1500, Load: 0.95, TenantSkew: 0.8, Seed: 3}, false},
		{"overloaded tiny, one output token", TinyCPUEngine(), 2, sharedPrefix(10, 1, 1000, 1.5, 4), false},
		{"no system prompt", DefaultEngine(), 2, Workload{UserTokens: 500, OutputTokens: 20, Requests: 800, Rate: 20, Seed: 5}, false},
	}
	for _, tc := range cases {
		for _, pol := range allPolicies() {
			t.Run(tc.name+"/"+string(pol), func(t *testing.T) {
				s, err := simulate(Config{GPUs: tc.gpus, Engine: tc.engine, Policy: pol, Workload: tc.w, KVBudget: tc.budget})
				if err != nil {
					t.Fatal(err)
				}
				out := max(tc.w.OutputTokens, 1)
				for i := range s.reqs {
					r := &s.reqs[i]
					if r.completed != 1 || r.out != out || r.first < r.dispatched || r.dispatched < r.arrival {
						t.Fatalf("request %d: completed %d times, %d tokens, arrival %d dispatch %d first token %d",
							i, r.completed, r.out, r.arrival, r.dispatched, r.first)
					}
				}
				for _, e := range s.engines {
					if e.kvUsed != 0 || len(e.active)+len(e.waiting) != 0 || e.stepping {
						t.Fatalf("%s not drained: kv %d, %d active, %d waiting", e.id, e.kvUsed, len(e.active), len(e.waiting))
					}
				}
				st := s.core.Stats()
				if st.Dispatched != uint64(tc.w.Requests) || st.Rejected+st.Saturated+st.Expired != 0 {
					t.Fatalf("core stats %+v", st)
				}
				res := s.result()
				if res.Completed != tc.w.Requests || res.OutputTokens != int64(tc.w.Requests*out) {
					t.Fatalf("completed %d of %d, %d tokens out, want %d", res.Completed, tc.w.Requests, res.OutputTokens, tc.w.Requests*out)
				}
				if res.Goodput < 0 || res.Goodput > 1 || res.PrefixHitRatio < 0 || res.PrefixHitRatio >= 1 ||
					res.TTFTp50 > res.TTFTp90 || res.TTFTp90 > res.TTFTp99 || res.OutputTokensPerSec <= 0 {
					t.Fatalf("implausible result %+v", res)
				}
			})
		}
	}
}

func TestMoreGPUsLowerTTFT(t *testing.T) {
	base := Config{GPUs: 1, Engine: DefaultEngine(), Workload: sharedPrefix(16, 64, 2000, 0, 1)}
	base.Workload.Rate = 0.9 * Capacity(base) // 90% of one GPU, for every fleet size
	for _, pol := range allPolicies() {
		t.Run(string(pol), func(t *testing.T) {
			var prev time.Duration
			for _, gpus := range []int{1, 2, 4, 8} {
				c := base
				c.GPUs, c.Policy = gpus, pol
				r, err := Run(c)
				if err != nil {
					t.Fatal(err)
				}
				if gpus > 1 && r.TTFTp90 > prev {
					t.Errorf("%d GPUs: TTFT p90 %v, above the %v of half as many", gpus, r.TTFTp90, prev)
				}
				prev = r.TTFTp90
			}
		})
	}
}

// TestSluiceBeatsRoundRobin: shared prefixes, more tenants than slots, no host cache,
// near capacity. Seen (seed 1): default engine 48.7% vs 10.1% of prompt tokens reused,
// TTFT p90 368 vs 534 ms (0.69x); tiny engine 47.6% vs 12.9%, 99 vs 175 ms (0.57x);
// over seeds 1-8 the p90 ratio stayed at or below 0.75 and 0.63.
func TestSluiceBeatsRoundRobin(t *testing.T) {
	cases := []struct {
		name   string
		engine EngineModel
		gpus   int
		w      Workload
	}{
		{"default engine, 4x8 slots, 40 tenants", DefaultEngine(), 4, sharedPrefix(40, 16, 3000, 0.85, 1)},
		{"tiny engine, 4x4 slots, 20 tenants", TinyCPUEngine(), 4, sharedPrefix(20, 16, 3000, 0.85, 1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Compare(Config{GPUs: tc.gpus, Engine: tc.engine, Workload: tc.w}, scheduler.PolicySluice, scheduler.PolicyRoundRobin)
			if err != nil {
				t.Fatal(err)
			}
			sl, rr := rs[0], rs[1]
			t.Logf("prefix hit %.1f%% vs %.1f%%, TTFT p90 %v vs %v", 100*sl.PrefixHitRatio, 100*rr.PrefixHitRatio, sl.TTFTp90, rr.TTFTp90)
			if sl.PrefixHitRatio < rr.PrefixHitRatio+0.15 {
				t.Errorf("prefix hit ratio: sluice %.3f, round-robin %.3f: want sluice ahead by 0.15", sl.PrefixHitRatio, rr.PrefixHitRatio)
			}
			if float64(sl.TTFTp90) > 0.9*float64(rr.TTFTp90) {
				t.Errorf("TTFT p90: sluice %v, round-robin %v: want sluice below 0.9x", sl.TTFTp90, rr.TTFTp90)
			}
		})
	}
}

// TestOneGPUByHand checks the engine model against hand-computed times. Prompt: 960
// system tokens (15 blocks of 64) + 40 user tokens = 1,000; 5 output tokens.
// Cold: steps of 512 and 488 prompt tokens, 10 + 51.2 and 10 + 48.8 ms: first token at
// 120 ms; 4 decode steps of 10.2 ms: done at 160.8 ms. The same tenant again on the
// same engine reuses 960 tokens: one step of 40 tokens, 14 ms.
func TestOneGPUByHand(t *testing.T) {
	const ms = time.Millisecond
	for _, pol := range allPolicies() {
		t.Run(string(pol), func(t *testing.T) {
			w := Workload{Tenants: 1, SystemTokens: 960, UserTokens: 40, OutputTokens: 5, Requests: 2, Rate: 0.01, Seed: 1}
			s, err := simulate(Config{GPUs: 1, Engine: handEngine(2), Policy: pol, Workload: w})
			if err != nil {
				t.Fatal(err)
			}
			a, b := &s.reqs[0], &s.reqs[1]
			if b.arrival < a.arrival+int64(161*ms) {
				t.Fatalf("second request arrived too early (%v) for the hand computation", time.Duration(b.arrival-a.arrival))
			}
			if got := time.Duration(a.first - a.arrival); got != 120*ms || a.reused != 0 {
				t.Errorf("cold TTFT %v (reused %d), want 120ms", got, a.reused)
			}
			if got := time.Duration(b.first - b.arrival); got != 14*ms || b.reused != 960 {
				t.Errorf("warm TTFT %v (reused %d), want 14ms reusing 960", got, b.reused)
			}
			r := s.result()
			if want := time.Duration(b.arrival-a.arrival) + 14*ms + 4*10200*time.Microsecond; r.Simulated != want {
				t.Errorf("simulated %v, want %v", r.Simulated, want)
			}
			if r.PrefixHitRatio != 0.48 || r.TTFTp50 != 14*ms || r.TTFTp99 != 120*ms || r.Goodput != 1 {
				t.Errorf("result %+v", r)
			}
			// A single request: TTFT is its prefill steps, the span adds its decode steps.
			w.Requests = 1
			one, err := Run(Config{GPUs: 1, Engine: handEngine(2), Policy: pol, Workload: w})
			if err != nil {
				t.Fatal(err)
			}
			if one.TTFTp50 != 120*ms || one.Simulated != 160800*time.Microsecond || one.OutputTokens != 5 {
				t.Errorf("single request: %+v", one)
			}
		})
	}
}

// TestClosedLoopByHand: one client sends its next request when the last one completed
// (160.8 ms for a cold one, 54.8 ms warm: TestOneGPUByHand's costs), so requests never
// overlap; the achieved rate is what completed over the span.
func TestClosedLoopByHand(t *testing.T) {
	const us = time.Microsecond
	for _, pol := range allPolicies() {
		w := Workload{Tenants: 1, SystemTokens: 960, UserTokens: 40, OutputTokens: 5, Requests: 3, Clients: 1, Seed: 1}
		s, err := simulate(Config{GPUs: 1, Engine: handEngine(2), Policy: pol, Workload: w})
		if err != nil {
			t.Fatal(err)
		}
		wantArrival := []time.Duration{0, 160800 * us, 215600 * us}
		wantTTFT := []time.Duration{120000 * us, 14000 * us, 14000 * us}
		for i := range s.reqs {
			r := &s.reqs[i]
			if time.Duration(r.arrival) != wantArrival[i] || time.Duration(r.first-r.arrival) != wantTTFT[i] {
				t.Errorf("%s: request %d sent at %v (TTFT %v), want %v (%v)", pol, i,
					time.Duration(r.arrival), time.Duration(r.first-r.arrival), wantArrival[i], wantTTFT[i])
			}
		}
		r := s.result()
		if r.Simulated != 270400*us || r.Completed != 3 || r.Rate != 3/0.2704 {
			t.Errorf("%s: result %+v", pol, r)
		}
	}
	// Many clients: in flight never exceeds them, so an overloaded engine's queue stays
	// bounded (an open loop at the same throughput queues without end).
	closed, err := Run(Config{GPUs: 2, Engine: TinyCPUEngine(), Policy: scheduler.PolicyRoundRobin,
		Workload: Workload{Tenants: 12, SystemTokens: 1500, UserTokens: 60, OutputTokens: 8, Requests: 1500, Clients: 32, Seed: 2}})
	if err != nil {
		t.Fatal(err)
	}
	open, err := Run(Config{GPUs: 2, Engine: TinyCPUEngine(), Policy: scheduler.PolicyRoundRobin,
		Workload: Workload{Tenants: 12, SystemTokens: 1500, UserTokens: 60, OutputTokens: 8, Requests: 1500, Rate: 2 * closed.Rate, Seed: 2}})
	if err != nil {
		t.Fatal(err)
	}
	if closed.Completed != 1500 || closed.TTFTp99*5 > open.TTFTp99 {
		t.Errorf("closed loop p99 %v, open loop at twice its rate %v", closed.TTFTp99, open.TTFTp99)
	}
}

// TestKVCapacity: an engine whose KV holds one request (1,000 prompt + 5 output tokens)
// runs a second one only after the first finished (at 160.8 ms), although a slot is free.
// Unknown to the core, the second request waits in the engine, in the slot it was given
// at once (empty: 120 ms of prefill); with the budget given to the core, it waits in the
// core's queue and then goes to the slot holding its tenant's prefix (14 ms).
func TestKVCapacity(t *testing.T) {
	const ms = time.Millisecond
	cases := []struct {
		budget          bool
		dispatch, first time.Duration // of the second request, from the first's arrival
	}{
		{false, 0, 160800*time.Microsecond + 120*ms},
		{true, 160800 * time.Microsecond, 160800*time.Microsecond + 14*ms},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("budget=%v", tc.budget), func(t *testing.T) {
			e := handEngine(2)
			e.KVTokens = 1005
			w := Workload{Tenants: 1, SystemTokens: 960, UserTokens: 40, OutputTokens: 5, Requests: 2, Rate: 1e6, Seed: 1}
			s, err := simulate(Config{GPUs: 1, Engine: e, Workload: w, KVBudget: tc.budget})
			if err != nil {
				t.Fatal(err)
			}
			a, b := &s.reqs[0], &s.reqs[1]
			if !tc.budget && (b.dispatched != b.arrival || a.slot == b.slot) {
				t.Fatalf("second request should take the free slot at once")
			}
			if tc.dispatch > 0 && time.Duration(b.dispatched-a.arrival) != tc.dispatch {
				t.Fatalf("second dispatched %v after the first arrival, want %v", time.Duration(b.dispatched-a.arrival), tc.dispatch)
			}
			if got := time.Duration(b.first - a.arrival); got != tc.first {
				t.Fatalf("second first token %v after the first arrival, want %v", got, tc.first)
			}
		})
	}
}

// TestHostCache: with an engine-wide prompt cache, the baseline policies reuse prefixes
// that slots alone would have lost.
func TestHostCache(t *testing.T) {
	for _, pol := range []scheduler.Policy{scheduler.PolicyRoundRobin, scheduler.PolicyLeastLoaded} {
		t.Run(string(pol), func(t *testing.T) {
			cfg := Config{GPUs: 2, Policy: pol, Engine: DefaultEngine(), Workload: sharedPrefix(48, 32, 1500, 0.8, 1)}
			off, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Engine.HostCache = true
			on, err := Run(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if on.PrefixHitRatio < off.PrefixHitRatio+0.3 || on.TTFTp50 >= off.TTFTp50 {
				t.Fatalf("host cache: hit %.3f -> %.3f, TTFT p50 %v -> %v", off.PrefixHitRatio, on.PrefixHitRatio, off.TTFTp50, on.TTFTp50)
			}
		})
	}
}

func TestInvalidConfig(t *testing.T) {
	good := Config{GPUs: 1, Engine: DefaultEngine(), Workload: sharedPrefix(2, 8, 10, 0.5, 1)}
	cases := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"no gpus", func(c *Config) { c.GPUs = 0 }, "gpus"},
		{"no slots", func(c *Config) { c.Engine.Slots = 0 }, "engine.slots"},
		{"no step cost", func(c *Config) { c.Engine.StepBase = 0 }, "step base"},
		{"kv too small", func(c *Config) { c.Engine.KVTokens = 100 }, "engine.kv_tokens"},
		{"no requests", func(c *Config) { c.Workload.Requests = 0 }, "workload.requests"},
		{"no rate", func(c *Config) { c.Workload.Load = 0 }, "rate or load"},
		{"empty prompt", func(c *Config) { c.Workload.SystemTokens, c.Workload.UserTokens = 0, 0 }, "prompt"},
		{"unknown policy", func(c *Config) { c.Policy = "random" }, "policy"},
		{"negative skew", func(c *Config) { c.Workload.TenantSkew = -1 }, "tenant_skew"},
	}
	if _, err := Run(good); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.edit(&c)
			if _, err := Run(c); err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %q", err, tc.field)
			}
		})
	}
}

func TestWriteTable(t *testing.T) {
	rs, err := Compare(Config{GPUs: 2, Engine: DefaultEngine(), Workload: sharedPrefix(32, 16, 300, 0.8, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	WriteTable(&buf, rs)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "ttft p90") {
		t.Fatalf("table:\n%s", buf.String())
	}
	for i, p := range allPolicies() {
		if !strings.Contains(lines[i+1], string(p)) {
			t.Errorf("row %d: %q, want policy %s", i+1, lines[i+1], p)
		}
	}
}

// BenchmarkSim64GPUs: 64 GPUs x 8 slots, 5,000 requests, 1,024 tenants with 1,500-token
// system prompts at 90% of capacity, under the sluice policy.
func BenchmarkSim64GPUs(b *testing.B) {
	cfg := Config{GPUs: 64, Engine: DefaultEngine(), Workload: Workload{Tenants: 1024, SystemTokens: 1500,
		UserTokens: 64, OutputTokens: 200, Requests: 5000, Load: 0.9, Seed: 1}}
	for b.Loop() {
		if _, err := Run(cfg); err != nil {
			b.Fatal(err)
		}
	}
}
