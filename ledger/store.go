package ledger

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Store keeps records, usage windows, reservations, hardware cost and API keys. SQLite
// (OpenSQLite) is the default; several processes may share one. Another database
// (PostgreSQL, for replicas on several machines) implements the same methods.
type Store interface {
	// Apply writes records, ignoring any whose UID is already stored, adds each new one
	// to its key's usage windows and drops its reservation, all in one transaction.
	Apply(ctx context.Context, recs []Record) error
	// AddHardware records what hardware pools cost per minute (the larger value wins
	// when two processes report the same pool and minute).
	AddHardware(ctx context.Context, rows []HardwareCost) error
	// Reserve admits a request against its key's limits, counting what is recorded and
	// what other requests have reserved, atomically across processes; over a limit it
	// returns a *models.Error wrapping a *LimitError.
	Reserve(ctx context.Context, res Reservation, lim Limits, now time.Time) error

	CreateKey(ctx context.Context, k StoredKey) error
	// RevokeKey marks a key revoked; false if no such key (or already revoked).
	RevokeKey(ctx context.Context, id string, at time.Time) (bool, error)
	Keys(ctx context.Context) ([]StoredKey, error)
	// KeysVersion changes whenever a key is created or revoked.
	KeysVersion(ctx context.Context) (int64, error)

	// Aggregate sums the records matching q by q.GroupBy, pool and day.
	Aggregate(ctx context.Context, q Query) ([]Aggregate, error)
	// PoolDays returns each hardware pool's cost and the marginal cost of the requests it
	// served, per day, in [from, to).
	PoolDays(ctx context.Context, from, to time.Time) ([]PoolDay, error)

	Close() error
}

// Reservation holds a request's estimated use against its key's limits from admission
// until its record is stored (or Expires, if the process serving it died).
type Reservation struct {
	UID     string
	KeyID   string
	Time    time.Time // arrival: the windows it counts in
	Expires time.Time
	Tokens  int
	USD     float64
}

// Limits are a key's rate limits and budgets; 0: none.
type Limits struct {
	RequestsPerMinute int
	TokensPerMinute   int
	DailyUSD          float64
	MonthlyUSD        float64
}

// LimitsOf returns k's limits.
func LimitsOf(k *models.Key) Limits {
	return Limits{RequestsPerMinute: k.RequestsPerMinute, TokensPerMinute: k.TokensPerMinute,
		DailyUSD: k.DailyUSD, MonthlyUSD: k.MonthlyUSD}
}

// Limit names, as in LimitError and metrics.
const (
	LimitRequests = "requests_per_minute"
	LimitTokens   = "tokens_per_minute"
	LimitDaily    = "daily_usd"
	LimitMonthly  = "monthly_usd"
)

// LimitError says which limit a request would pass and when its window resets.
type LimitError struct {
	Limit string
	Used  float64 // recorded plus reserved
	Max   float64
	Reset time.Time
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("%s: %g of %g used, resets at %s", e.Limit, e.Used, e.Max, e.Reset.UTC().Format(time.RFC3339))
}

// USD reports whether the limit is a budget in dollars (not a rate limit).
func (e *LimitError) USD() bool { return e.Limit == LimitDaily || e.Limit == LimitMonthly }

// overLimit builds the client's error: 429 in OpenAI's format with the reset time.
func overLimit(keyID string, le *LimitError, now time.Time) error {
	kind, code := models.ErrRejected, "rate_limit_exceeded"
	var what string
	switch le.Limit {
	case LimitRequests:
		what = fmt.Sprintf("the limit of %d requests per minute", int(le.Max))
	case LimitTokens:
		what = fmt.Sprintf("the limit of %d tokens per minute (%d used or reserved)", int(le.Max), int(le.Used))
	case LimitDaily:
		kind, code = models.ErrOverBudget, "budget_exceeded"
		what = fmt.Sprintf("the daily budget of $%s ($%s spent or reserved)", money(le.Max), money(le.Used))
	case LimitMonthly:
		kind, code = models.ErrOverBudget, "budget_exceeded"
		what = fmt.Sprintf("the monthly budget of $%s ($%s spent or reserved)", money(le.Max), money(le.Used))
	}
	wait := le.Reset.Sub(now)
	if wait < time.Second {
		wait = time.Second
	}
	return &models.Error{Kind: kind, Code: code, RetryAfter: wait, Err: le,
		Msg: fmt.Sprintf("API key %s has reached %s; it resets at %s", keyID, what, le.Reset.UTC().Format(time.RFC3339))}
}

// money formats dollars: cents for sums of a dollar or more, else 6 significant digits.
func money(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.2f", v)
	}
	return strconv.FormatFloat(v, 'g', 6, 64)
}

// AsLimit returns the LimitError inside err, if any.
func AsLimit(err error) (*LimitError, bool) {
	var le *LimitError
	ok := errors.As(err, &le)
	return le, ok
}

// StoredKey is an API key kept in the store: its digest (never the key) and policy.
type StoredKey struct {
	Digest  [32]byte
	Key     models.Key
	Created time.Time
	Revoked time.Time // zero: active
}

// HardwareCost is what a pool cost in one minute.
type HardwareCost struct {
	Pool   string
	Minute time.Time
	USD    float64
}

// Query selects and groups records for a report.
type Query struct {
	From, To time.Time
	GroupBy  []string // see Groups
	// Filters; "": any.
	Key, Tenant, User, Feature, Model, Target, Region string
}

// Groups are the dimensions a report can group by.
var Groups = []string{"key", "tenant", "user", "feature", "model", "target", "region", "day"}

// Aggregate is the sum of one group's records on one pool and day. Sums marked
// "priced" leave out requests whose target has no price (Unpriced counts them).
type Aggregate struct {
	Group []string // values in Query.GroupBy order
	Pool  string
	Day   int64 // days since 1970-01-01 (UTC)

	Requests, Errors, Unpriced, CacheHits int64
	PromptTokens, PromptTokensBefore      int64
	CompletionTokens, CachedTokens        int64
	LatencyUS, TTFTUS, TTFTCount          int64 // sums, and how many had a first token

	CostUSD   float64 // marginal cost
	BilledUSD float64 // per-token spend (budgets)

	ReferenceUSD     float64 // priced: the baseline reference
	RefHitUSD        float64 // priced: the baseline of cache hits
	RefSavedCompress float64 // priced, not hits: baseline minus the same model on the tokens sent
	RefSavedRouting  float64 // priced, not hits: that minus the served class's reference
	ServedRefUSD     float64 // priced, not hits: the served class's reference
	MissCostUSD      float64 // priced, not hits: marginal cost (scaled to effective on a pool)
}

// PoolDay is a pool's hardware cost and served marginal cost on one day.
type PoolDay struct {
	Pool        string
	Day         int64
	HardwareUSD float64
	BusyUSD     float64
}
