package ledger

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Savings is what requests saved against the reference cloud model, by cause.
type Savings struct {
	Cache       float64 `json:"cache_usd"`       // answered from the cache
	Routing     float64 `json:"routing_usd"`     // a cheaper class of model than the one asked for
	Compression float64 `json:"compression_usd"` // fewer prompt tokens sent
	Local       float64 `json:"local_usd"`       // own hardware (effective cost) instead of the cloud
}

// Total is the sum of the causes.
func (s Savings) Total() float64 { return s.Cache + s.Routing + s.Compression + s.Local }

// Row is one group of a usage report.
type Row struct {
	Group            map[string]string `json:"group,omitempty"`
	Requests         int64             `json:"requests"`
	Errors           int64             `json:"errors"`
	CacheHits        int64             `json:"cache_hits"`
	PromptTokens     int64             `json:"prompt_tokens"`
	PromptBefore     int64             `json:"prompt_tokens_before_compression"`
	CompletionTokens int64             `json:"completion_tokens"`
	CachedTokens     int64             `json:"cached_tokens"`
	// CostUSD is the marginal cost: hardware time in flight, plus per-token spend.
	CostUSD float64 `json:"cost_usd"`
	// EffectiveCostUSD spreads each pool's whole hourly price (idle time and GPUs
	// without engines included) over the requests it served, in proportion to their
	// marginal cost, day by day; per-token spend counts as is.
	EffectiveCostUSD float64 `json:"effective_cost_usd"`
	BilledUSD        float64 `json:"billed_usd"` // per-token spend: what budgets count
	ReferenceUSD     float64 `json:"reference_cost_usd"`
	// SavingsUSD = ReferenceUSD - EffectiveCostUSD over priced requests.
	SavingsUSD float64 `json:"savings_usd"`
	Savings    Savings `json:"savings"`
	// Unpriced requests went to a target without a price: their cost is unknown and
	// they are left out of cost-based figures rather than counted as free.
	Unpriced     int64   `json:"unpriced_requests"`
	LatencyMsAvg float64 `json:"latency_ms_avg"`
	TTFTMsAvg    float64 `json:"ttft_ms_avg"`

	latencyUS, ttftUS, ttftN int64
}

// Report is a usage report.
type Report struct {
	Object  string    `json:"object"` // "usage.report"
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	GroupBy []string  `json:"group_by"`
	Rows    []Row     `json:"data"`
	Total   Row       `json:"total"`
	// HardwareUSD is what the hardware pools cost over the period (while sluice ran);
	// IdleUSD the part of it on days a pool served nothing, which no request carries.
	HardwareUSD float64 `json:"hardware_usd"`
	IdleUSD     float64 `json:"idle_usd"`
}

// ParseQuery reads a report's query string: from and to (RFC 3339 or YYYY-MM-DD; default
// the current month to now), group_by (a comma list of Groups), filters key, tenant,
// user, feature, model, target, region, and format (json or csv).
func ParseQuery(raw string, now time.Time) (Query, string, error) {
	v, err := url.ParseQuery(raw)
	if err != nil {
		return Query{}, "", models.InvalidParam("query", "malformed query string: %v", err)
	}
	now = now.UTC()
	q := Query{To: now, From: time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)}
	format := "json"
	for name, vals := range v {
		val := vals[len(vals)-1]
		switch name {
		case "from", "to":
			t, err := parseTime(val)
			if err != nil {
				return Query{}, "", models.InvalidParam(name, "%s must be RFC 3339 (2026-06-01T00:00:00Z) or a date (2026-06-01), got %q", name, val)
			}
			if name == "from" {
				q.From = t
			} else {
				q.To = t
			}
		case "group_by":
			for _, g := range strings.Split(val, ",") {
				g = strings.TrimSpace(g)
				if g == "" {
					continue
				}
				if !slices.Contains(Groups, g) {
					return Query{}, "", models.InvalidParam("group_by", "cannot group by %q; use %s", g, strings.Join(Groups, ", "))
				}
				if !slices.Contains(q.GroupBy, g) {
					q.GroupBy = append(q.GroupBy, g)
				}
			}
		case "key":
			q.Key = val
		case "tenant":
			q.Tenant = val
		case "user":
			q.User = val
		case "feature":
			q.Feature = val
		case "model":
			q.Model = val
		case "target":
			q.Target = val
		case "region":
			q.Region = val
		case "":
			// "=" or "&&": nothing asked
		case "format":
			if val != "json" && val != "csv" {
				return Query{}, "", models.InvalidParam("format", "format must be json or csv, got %q", val)
			}
			format = val
		default:
			return Query{}, "", models.InvalidParam(name, "unknown parameter %q; use from, to, group_by, key, tenant, user, feature, model, target, region or format", name)
		}
	}
	if !q.To.After(q.From) {
		return Query{}, "", models.InvalidParam("to", "to (%s) must be after from (%s)", q.To.Format(time.RFC3339), q.From.Format(time.RFC3339))
	}
	return q, format, nil
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	return time.Parse("2006-01-02", s)
}

// BuildReport runs q against store.
func BuildReport(ctx context.Context, store Store, q Query) (*Report, error) {
	aggs, err := store.Aggregate(ctx, q)
	if err != nil {
		return nil, err
	}
	days, err := store.PoolDays(ctx, q.From, q.To)
	if err != nil {
		return nil, err
	}
	rep := &Report{Object: "usage.report", From: q.From, To: q.To, GroupBy: q.GroupBy, Rows: []Row{}}
	if rep.GroupBy == nil {
		rep.GroupBy = []string{}
	}
	type pd struct {
		pool string
		day  int64
	}
	scale := map[pd]float64{}
	for _, d := range days {
		rep.HardwareUSD += d.HardwareUSD
		k := 1.0
		switch {
		case d.BusyUSD > 0 && d.HardwareUSD > d.BusyUSD:
			k = d.HardwareUSD / d.BusyUSD
		case d.BusyUSD == 0:
			rep.IdleUSD += d.HardwareUSD
		}
		scale[pd{d.Pool, d.Day}] = k
	}
	rows := map[string]*Row{}
	var order []string
	for _, a := range aggs {
		if i := slices.Index(q.GroupBy, "day"); i >= 0 {
			if n, err := strconv.ParseInt(a.Group[i], 10, 64); err == nil {
				a.Group[i] = time.Unix(n*86400, 0).UTC().Format("2006-01-02")
			}
		}
		id := strings.Join(a.Group, "\x00")
		r := rows[id]
		if r == nil {
			r = &Row{}
			if len(q.GroupBy) > 0 {
				r.Group = make(map[string]string, len(q.GroupBy))
				for i, g := range q.GroupBy {
					r.Group[g] = a.Group[i]
				}
			}
			rows[id] = r
			order = append(order, id)
		}
		k := 1.0
		if a.Pool != "" {
			if s, ok := scale[pd{a.Pool, a.Day}]; ok {
				k = s
			}
		}
		add(r, &a, k)
		add(&rep.Total, &a, k)
	}
	sort.Strings(order)
	for _, id := range order {
		rep.Rows = append(rep.Rows, finish(*rows[id]))
	}
	rep.Total = finish(rep.Total)
	return rep, nil
}

func add(r *Row, a *Aggregate, k float64) {
	r.Requests += a.Requests
	r.Errors += a.Errors
	r.CacheHits += a.CacheHits
	r.Unpriced += a.Unpriced
	r.PromptTokens += a.PromptTokens
	r.PromptBefore += a.PromptTokensBefore
	r.CompletionTokens += a.CompletionTokens
	r.CachedTokens += a.CachedTokens
	r.CostUSD += a.CostUSD
	r.EffectiveCostUSD += a.CostUSD * k
	r.BilledUSD += a.BilledUSD
	r.ReferenceUSD += a.ReferenceUSD
	r.Savings.Cache += a.RefHitUSD
	r.Savings.Compression += a.RefSavedCompress
	r.Savings.Routing += a.RefSavedRouting
	r.Savings.Local += a.ServedRefUSD - a.MissCostUSD*k
	r.latencyUS += a.LatencyUS
	r.ttftUS += a.TTFTUS
	r.ttftN += a.TTFTCount
}

func finish(r Row) Row {
	r.SavingsUSD = r.Savings.Total()
	if r.Requests > 0 {
		r.LatencyMsAvg = float64(r.latencyUS) / float64(r.Requests) / 1e3
	}
	if r.ttftN > 0 {
		r.TTFTMsAvg = float64(r.ttftUS) / float64(r.ttftN) / 1e3
	}
	return r
}

// JSON encodes the report.
func (rep *Report) JSON() []byte {
	b, _ := json.Marshal(rep)
	return b
}

// CSVHeader is the metric columns of CSV reports, after the group columns.
var CSVHeader = []string{"requests", "errors", "cache_hits", "prompt_tokens", "prompt_tokens_before_compression",
	"completion_tokens", "cached_tokens", "cost_usd", "effective_cost_usd", "billed_usd", "reference_cost_usd",
	"savings_usd", "savings_cache_usd", "savings_routing_usd", "savings_compression_usd", "savings_local_usd",
	"unpriced_requests", "latency_ms_avg", "ttft_ms_avg"}

// CSV encodes the report's rows, one line per group (no total line).
func (rep *Report) CSV() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	_ = w.Write(append(slices.Clone(rep.GroupBy), CSVHeader...))
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 8, 64) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, r := range rep.Rows {
		line := make([]string, 0, len(rep.GroupBy)+len(CSVHeader))
		for _, g := range rep.GroupBy {
			line = append(line, csvSafe(r.Group[g]))
		}
		line = append(line, i(r.Requests), i(r.Errors), i(r.CacheHits), i(r.PromptTokens), i(r.PromptBefore),
			i(r.CompletionTokens), i(r.CachedTokens), f(r.CostUSD), f(r.EffectiveCostUSD), f(r.BilledUSD),
			f(r.ReferenceUSD), f(r.SavingsUSD), f(r.Savings.Cache), f(r.Savings.Routing), f(r.Savings.Compression),
			f(r.Savings.Local), i(r.Unpriced), strconv.FormatFloat(r.LatencyMsAvg, 'f', 1, 64),
			strconv.FormatFloat(r.TTFTMsAvg, 'f', 1, 64))
		_ = w.Write(line)
	}
	w.Flush()
	return buf.Bytes()
}

// csvSafe defuses values a spreadsheet would run as a formula (user and feature names
// come from clients).
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// Usage answers GET /v1/usage: caller is the request's key (nil when authentication is
// off); a caller that is not admin sees only its own key's usage. Records still on
// their way to the store are written first, so a report includes the last requests.
func (l *Ledger) Usage(ctx context.Context, caller *models.Key, admin bool, rawQuery string) (contentType string, body []byte, err error) {
	q, format, err := ParseQuery(rawQuery, l.opts.Now())
	if err != nil {
		return "", nil, err
	}
	if !admin && caller != nil {
		if q.Key != "" && q.Key != caller.ID {
			return "", nil, models.Errorf(models.ErrForbidden, "a key can see only its own usage; use an admin key for others")
		}
		q.Key = caller.ID
	}
	if err := l.Flush(ctx); err != nil {
		return "", nil, fmt.Errorf("ledger: %w", err)
	}
	rep, err := BuildReport(ctx, l.store, q)
	if err != nil {
		return "", nil, err
	}
	if format == "csv" {
		return "text/csv; charset=utf-8", rep.CSV(), nil
	}
	return "application/json", rep.JSON(), nil
}
