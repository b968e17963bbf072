package ledger

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Opener is the stage shape (the gateway's Scheduler): what Budget wraps.
type Opener interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
}

// Pricer says which candidates are billed per token, and at what price.
type Pricer interface {
	// TokenPrice returns the USD per million input and output tokens of a candidate
	// billed per token (a cloud API); ok is false for hardware billed by the hour (the
	// box's engines) and for targets without a price.
	TokenPrice(c models.Candidate) (in, out float64, ok bool)
}

// BudgetOptions configure a Budget stage.
type BudgetOptions struct {
	Pricer Pricer
	// DefaultMaxTokens is the completion length assumed for a request without
	// max_tokens (default 1024).
	DefaultMaxTokens int
	Registry         prometheus.Registerer
	Now              func() time.Time
}

// Budget is the stage that enforces each key's rate limits (requests and tokens per
// minute) and budgets (USD per day and per month) before a request is dispatched. It
// reserves the request's estimate in the store, atomically with every other process
// sharing it; the reservation is replaced by the actual figures when the request's
// record is stored (Store.Apply), so concurrent requests cannot spend past a limit.
//
// Budgets count money paid per token (cloud targets). A request that local engines can
// serve is never refused for a budget: when the budget cannot pay for its cloud
// candidates and fallbacks (overflow), they are dropped and it runs locally. Keys without limits pass through at
// no cost. It sits outside the overflow stage, so it sees every target a request may end on;
// cache hits never reach it.
type Budget struct {
	next       Opener
	l          *Ledger
	opts       BudgetOptions
	rejections *prometheus.CounterVec
	downgrades prometheus.Counter
}

// NewBudget wraps next.
func NewBudget(next Opener, l *Ledger, opts BudgetOptions) *Budget {
	if opts.DefaultMaxTokens <= 0 {
		opts.DefaultMaxTokens = 1024
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	b := &Budget{next: next, l: l, opts: opts,
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_budget_rejections_total",
			Help: "Requests refused by a key's rate limit or budget, by limit."}, []string{"limit"}),
		downgrades: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_budget_local_only_total",
			Help: "Requests kept on local engines because their key's budget could not pay for a cloud target."}),
	}
	if opts.Registry != nil {
		opts.Registry.MustRegister(b.rejections, b.downgrades)
	}
	return b
}

// Open implements the stage.
func (b *Budget) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if r.Key.Limited() && b.l != nil {
		var err error
		if t, err = b.reserve(ctx, t, r); err != nil {
			return nil, err
		}
	}
	return b.next.Open(ctx, t, r)
}

// reserve reserves r's tokens and dollars against its key's limits and returns the
// target to open (local candidates only when the budget cannot pay for the cloud's).
// Apart from Open, so that its frame is not on the stack below the stages that follow
// (the request's goroutine then stays within its first 8 KiB stack).
//
//go:noinline
func (b *Budget) reserve(ctx context.Context, t models.Target, r *models.Request) (models.Target, error) {
	k := r.Key
	now := b.opts.Now()
	prompt, completion := estimateTokens(r, b.opts.DefaultMaxTokens)
	var usd float64
	priced, free := false, false
	for _, c := range candidates(t) {
		in, out, ok := b.price(c)
		if !ok {
			free = true // a local candidate: the request can run without spending
			continue
		}
		priced = true
		usd = max(usd, (float64(prompt)*in+float64(completion)*out)/1e6)
	}
	for _, c := range t.Fallbacks {
		if in, out, ok := b.price(c); ok {
			priced = true
			usd = max(usd, (float64(prompt)*in+float64(completion)*out)/1e6)
		}
	}
	expires := r.Deadline
	if expires.IsZero() {
		expires = now.Add(time.Hour)
	}
	// Dollars are reserved for the upper bound; tokens per minute (a rate limit, not
	// money) for a typical count, ~4 bytes a token, so a long prompt is not refused
	// for tokens it does not have.
	res := Reservation{UID: b.l.UID(r.ID), KeyID: k.ID, Time: r.Arrived, Expires: expires.Add(time.Minute),
		Tokens: prompt/4 + completion, USD: usd}
	lim := LimitsOf(k)
	err := b.l.store.Reserve(ctx, res, lim, now)
	if le, ok := AsLimit(err); ok && le.USD() && priced && free {
		// The budget cannot pay for the cloud candidates or fallbacks; the local ones
		// cost nothing.
		t.Candidates = localOnly(t.Candidates, b.price)
		t.Fallbacks = localOnly(t.Fallbacks, b.price)
		if t.Backend != "" {
			if _, _, ok := b.price(models.Candidate{Backend: t.Backend, UpstreamModel: t.UpstreamModel, Region: t.Region}); ok {
				t.Backend = ""
			}
		}
		res.USD = 0
		b.downgrades.Inc()
		err = b.l.store.Reserve(ctx, res, lim, now)
	}
	if err != nil {
		if le, ok := AsLimit(err); ok {
			b.rejections.WithLabelValues(le.Limit).Inc()
			return t, err
		}
		var me *models.Error
		if errors.As(err, &me) {
			return t, err
		}
		// Without the store no limit can be checked: refuse rather than overspend.
		return t, &models.Error{Kind: models.ErrUnavailable, Code: "budget_unavailable", RetryAfter: time.Second, Err: err,
			Msg: "usage limits cannot be checked right now; retry shortly"}
	}
	return t, nil
}

func (b *Budget) price(c models.Candidate) (float64, float64, bool) {
	if b.opts.Pricer == nil {
		return 0, 0, false
	}
	return b.opts.Pricer.TokenPrice(c)
}

func candidates(t models.Target) []models.Candidate {
	if len(t.Candidates) > 0 {
		return t.Candidates
	}
	return []models.Candidate{{Backend: t.Backend, UpstreamModel: t.UpstreamModel, Region: t.Region}}
}

func localOnly(cs []models.Candidate, price func(models.Candidate) (float64, float64, bool)) []models.Candidate {
	out := make([]models.Candidate, 0, len(cs))
	for _, c := range cs {
		if _, _, ok := price(c); !ok {
			out = append(out, c)
		}
	}
	return out
}

// estimateTokens bounds a request's tokens from above: a prompt token covers at least
// one byte of text in practice (byte-level vocabularies), plus a few tokens of chat
// template per message; the completion is max_tokens, or the default when unset.
func estimateTokens(r *models.Request, defaultMax int) (prompt, completion int) {
	n := 16
	for i := range r.Messages {
		n += len(r.Messages[i].Content) + len(r.Messages[i].ToolCalls) + 8
	}
	for _, p := range r.Prompt {
		n += len(p)
	}
	for _, p := range r.Input {
		n += len(p)
	}
	n += len(r.Tools)
	completion = r.Sampling.MaxTokens
	if completion <= 0 {
		completion = defaultMax
	}
	if r.Kind == models.KindEmbedding {
		completion = 0
	}
	return n, completion
}
