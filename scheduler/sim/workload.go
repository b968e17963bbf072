package sim

import (
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"time"
)

// arrival is one generated request.
type arrival struct {
	at     int64 // virtual ns
	tenant int
	blocks []uint64 // chained prefix block ids of the whole prompt
}

// generate draws the arrival sequence: Poisson arrivals at rate per second, tenants
// uniform or Zipf, prompt blocks chained per tenant (shared system prompt) then per
// request (unique user part). It depends on the workload and the block size only, never
// on the policy, so every policy of a Compare sees the same requests.
func generate(w Workload, tokensPerBlock int, rate float64) []arrival {
	rng := rand.New(rand.NewPCG(w.Seed, w.Seed^0x9e3779b97f4a7c15))
	pick := tenantPicker(w.Tenants, w.TenantSkew)
	nSys := w.SystemTokens / tokensPerBlock
	nAll := (w.SystemTokens + w.UserTokens) / tokensPerBlock
	sys := make([][]uint64, w.Tenants)
	for t := range sys {
		sys[t] = make([]uint64, nSys)
		h := mix(w.Seed ^ 0x5157454e)
		for i := range sys[t] {
			h = mix(h ^ (uint64(t)+1)*0x9e3779b97f4a7c15 ^ uint64(i))
			sys[t][i] = h
		}
	}
	out := make([]arrival, w.Requests)
	// One backing array for every prompt's blocks.
	all := make([]uint64, w.Requests*nAll)
	var at float64
	for i := range out {
		at += rng.ExpFloat64() / rate
		t := pick(rng)
		b := all[i*nAll : i*nAll : (i+1)*nAll]
		b = append(b, sys[t]...)
		h := uint64(0)
		if nSys > 0 {
			h = sys[t][nSys-1]
		}
		for k := nSys; k < nAll; k++ {
			h = mix(h ^ (uint64(i)+1)*0xbf58476d1ce4e5b9 ^ uint64(k)<<40)
			b = append(b, h)
		}
		out[i] = arrival{at: int64(at * float64(time.Second)), tenant: t, blocks: b}
	}
	return out
}

// tenantPicker returns a draw of tenant indices: uniform when skew is 0, else Zipf with
// exponent skew (tenant 0 the most popular).
func tenantPicker(n int, skew float64) func(*rand.Rand) int {
	if skew <= 0 || n == 1 {
		return func(r *rand.Rand) int { return r.IntN(n) }
	}
	cum := make([]float64, n)
	total := 0.0
	for k := range cum {
		total += 1 / math.Pow(float64(k+1), skew)
		cum[k] = total
	}
	return func(r *rand.Rand) int {
		x := r.Float64() * total
		return min(sort.SearchFloat64s(cum, x), n-1)
	}
}

// mix is splitmix64's finalizer: a cheap, well-spread 64-bit hash.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// tenantNames are the tenants' names as the core sees them.
func tenantNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "tenant-" + strconv.Itoa(i)
	}
	return out
}
