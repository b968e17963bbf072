package models

import "time"

// Residency policies: where a key's requests may be served.
const (
	ResidencyAny       = "any"        // any region, cloud included
	ResidencyEU        = "eu"         // the box's own engines (region local) and EU endpoints
	ResidencyLocalOnly = "local-only" // the box's own engines only
)

// RegionLocal is the region of the box's own engines.
const RegionLocal = "local"

// Key is an authenticated API key: who it is and what it may do. The gateway attaches
// it to the request (Request.Key); nil means authentication is off.
type Key struct {
	// ID is a stable, non-secret id ("key-" and the first hex digits of the key's
	// SHA-256): safe for logs, metrics and the ledger. The key itself is never kept.
	ID     string
	Name   string
	Tenant string // scopes caches, fair queuing and budgets (default: ID)
	// Residency is one of the Residency* policies (default ResidencyAny).
	Residency string
	Tiers     []string // allowed tiers; empty: all
	Models    []string // allowed models (names or aliases as clients send them); empty: all
	// NoCache turns the answer cache off for this key.
	NoCache bool
	// Limits; 0: none.
	RequestsPerMinute int
	TokensPerMinute   int
	DailyUSD          float64
	MonthlyUSD        float64
}

// AllowsRegion reports whether the key's residency policy lets a request be served in
// region ("local" for the box's own engines, else a provider region such as "eu" or
// "us"). A nil key allows everything.
func (k *Key) AllowsRegion(region string) bool {
	if k == nil {
		return true
	}
	return ResidencyAllows(k.Residency, region)
}

// ResidencyAllows reports whether policy admits region. Unknown policies admit only
// the local region (fail closed).
func ResidencyAllows(policy, region string) bool {
	switch policy {
	case "", ResidencyAny:
		return true
	case ResidencyEU:
		return region == RegionLocal || region == "eu"
	default:
		return region == RegionLocal
	}
}

// Trace is what the stages did with one request, filled in as it passes through them
// and reported by the gateway in response headers, the usage record and the ledger.
type Trace struct {
	// Cache is "" (no cache stage), "miss", "hit-exact", "hit-semantic" or "bypass".
	Cache           string
	CacheSimilarity float64 // of a semantic hit
	// PromptTokensBefore and PromptTokensAfter are set when compression ran.
	PromptTokensBefore, PromptTokensAfter int
	// Route explains the router's choice (X-Sluice-Route): tier, target, reason, score.
	Route string
	// Region is where the request was served (Target.Region of the backend used).
	Region string
	// Overflow is why a request left the local engines for a cloud target ("" if not).
	Overflow string
	// Attempts counts targets tried (1 without fallbacks).
	Attempts int
	// Set by the gateway when the request ends, before the Record hook runs: the HTTP
	// status the client gets (499: it went away), the time from arrival to the end of
	// the answer and to its first token (0: none).
	Status  int
	Latency time.Duration
	TTFT    time.Duration
}

// KeyID is the id of the key whose SHA-256 digest is d: "key-" and its first 12 hex
// digits. It is not a secret (a digest prefix reveals nothing usable about the key).
func KeyID(d [32]byte) string {
	const hexd = "0123456789abcdef"
	b := make([]byte, 0, 16)
	b = append(b, "key-"...)
	for _, c := range d[:6] {
		b = append(b, hexd[c>>4], hexd[c&15])
	}
	return string(b)
}

// Limited reports whether the key has any rate limit or budget.
func (k *Key) Limited() bool {
	return k != nil && (k.RequestsPerMinute > 0 || k.TokensPerMinute > 0 || k.DailyUSD > 0 || k.MonthlyUSD > 0)
}
