package compress

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sluice-llm/sluice/models"
)

// Next is what the stage wraps: the scheduler or another stage.
type Next interface {
	Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error)
}

// Rule is a model's or tier's target: Tokens when set, else Ratio; Off disables.
type Rule struct {
	Ratio  float64
	Tokens int
	Off    bool
}

// StageOptions configure the stage (from config.Compress).
type StageOptions struct {
	Models map[string]Rule // by model name as the client sent it or the catalog name; "*": all
	Tiers  map[string]Rule // by router tier
	Ratio  float64         // default target (default 2)
	// Header honours X-Sluice-Compress (set, change or turn off per request).
	Header    bool
	MinTokens int // prompts with fewer (estimated) tokens are left alone
	// Tools and ResponseFormat compress requests carrying them (default: never).
	Tools, ResponseFormat bool
	// Counters count tokens per model (catalog name) for the trace and metrics; Counter
	// is the default; nil: EstimateTokens.
	Counters map[string]models.TokenCounter
	Counter  models.TokenCounter
	// Scorer, when set, scores words (model mode); nil: the statistical LM.
	Scorer   WordScorer
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Stage compresses prompts on their way to the scheduler. It rewrites the request's
// messages (or completion prompt) and the body OpenAI-speaking backends forward,
// records the token counts in r.Trace, and passes the request on. It fails open: any
// error is logged and counted, and the request goes on unchanged.
type Stage struct {
	next Next
	comp *Compressor
	o    StageOptions
	m    *metrics
	log  *slog.Logger
	// rules is false when no model or tier rule exists: then only a header can turn
	// compression on, and a request without one costs one comparison.
	rules bool
}

// NewStage wraps next.
func NewStage(next Next, comp *Compressor, o StageOptions) *Stage {
	if o.Ratio < 1 {
		o.Ratio = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Stage{next: next, comp: comp, o: o, m: newMetrics(o.Registry), log: o.Logger,
		rules: len(o.Models) > 0 || len(o.Tiers) > 0}
}

// Open compresses r when its model, tier or header asks for it, then opens next.
func (s *Stage) Open(ctx context.Context, t models.Target, r *models.Request) (models.Stream, error) {
	if !s.rules && r.Compress == "" {
		return s.next.Open(ctx, t, r)
	}
	b, force, ok, err := s.budget(t, r)
	if err != nil {
		return nil, err
	}
	if ok {
		s.apply(ctx, t, r, b, force)
	}
	return s.next.Open(ctx, t, r)
}

// budget decides whether and how far to compress r.
func (s *Stage) budget(t models.Target, r *models.Request) (Budget, bool, bool, error) {
	var d Directive
	if r.Compress != "" && s.o.Header {
		var err error
		if d, err = ParseDirective(r.Compress); err != nil {
			return Budget{}, false, false, err
		}
		if d.Off {
			return Budget{}, false, false, nil
		}
	}
	rule, found := s.rule(t, r)
	if rule.Off && !d.Set {
		return Budget{}, false, false, nil
	}
	if !found && !d.Set {
		return Budget{}, false, false, nil
	}
	b := d.Budget
	if b == (Budget{}) {
		b = Budget{Ratio: rule.Ratio, Tokens: rule.Tokens}
	}
	if b == (Budget{}) {
		b.Ratio = s.o.Ratio
	}
	return b, d.Force, true, nil
}

func (s *Stage) rule(t models.Target, r *models.Request) (Rule, bool) {
	if !s.rules {
		return Rule{}, false
	}
	for _, k := range [...]string{r.Model, t.Model} {
		if rule, ok := s.o.Models[k]; ok && k != "" {
			return rule, true
		}
	}
	if rule, ok := s.o.Tiers[t.Tier]; ok && t.Tier != "" {
		return rule, true
	}
	rule, ok := s.o.Models["*"]
	return rule, ok
}

// apply compresses r in place; on any failure r is left as it was.
func (s *Stage) apply(ctx context.Context, t models.Target, r *models.Request, b Budget, force bool) {
	if r.Kind != models.KindChat && r.Kind != models.KindCompletion {
		return
	}
	if !force && (len(r.Tools) > 0 && !s.o.Tools || len(r.ResponseFormat) > 0 && !s.o.ResponseFormat) {
		s.m.requests.WithLabelValues("skipped").Inc()
		return
	}
	defer func() {
		if p := recover(); p != nil {
			s.fail(r, fmt.Errorf("panic: %v", p))
		}
	}()
	pl, err := planRequest(r)
	if err != nil {
		s.fail(r, err)
		return
	}
	if pl == nil {
		s.m.requests.WithLabelValues("skipped").Inc()
		return
	}
	if pl.compressible < s.o.MinTokens {
		s.m.requests.WithLabelValues("short").Inc()
		return
	}
	// Count the prompt in the target model's tokens and express the budget in the
	// compressor's estimated tokens, so the ratio reported is the ratio asked for.
	counter := s.counter(t)
	counts := make([]int, len(pl.parts))
	before, est := 0, 0
	for i, p := range pl.parts {
		counts[i] = counter.CountTokens(p.Text)
		before += counts[i]
		est += EstimateTokens(p.Text)
	}
	target := b.Tokens
	if target <= 0 {
		target = int(float64(before) / b.Ratio)
	}
	var res Result
	after := 0
	for try := 0; try < 2; try++ {
		if before > 0 && est > 0 {
			b = Budget{Tokens: max(1, int(float64(target)*float64(est)/float64(before)))}
		}
		res = s.comp.Compress(ctx, pl.parts, pl.question, b, s.o.Scorer)
		if !res.Changed {
			s.m.requests.WithLabelValues("unchanged").Inc()
			return
		}
		after = 0
		for i, p := range pl.parts {
			if p.Fixed || res.Texts[i] == p.Text {
				after += counts[i]
			} else {
				after += counter.CountTokens(res.Texts[i])
			}
		}
		// Pruned text has more tokens per word than the original (it keeps the rare
		// words): when that overshoots the target by more than 3 %, cut once more.
		if after*100 <= target*103 || res.After <= 0 {
			break
		}
		est = est * target / after
	}
	if err := pl.rewrite(r, res.Texts); err != nil {
		s.fail(r, err)
		return
	}
	r.Trace.PromptTokensBefore, r.Trace.PromptTokensAfter = before, after
	s.m.requests.WithLabelValues("compressed").Inc()
	s.m.original.Add(float64(before))
	s.m.compressed.Add(float64(after))
	if after > 0 {
		s.m.ratio.Observe(float64(before) / float64(after))
	}
}

func (s *Stage) fail(r *models.Request, err error) {
	s.m.errors.Inc()
	s.m.requests.WithLabelValues("error").Inc()
	s.log.Warn("compress: request passed on uncompressed", "request", r.ID, "err", err)
}

func (s *Stage) counter(t models.Target) models.TokenCounter {
	if c, ok := s.o.Counters[t.Model]; ok && c != nil {
		return c
	}
	if s.o.Counter != nil {
		return s.o.Counter
	}
	return Estimator{}
}

// plan maps a request's messages to parts: instructions (system, developer) and the
// final question verbatim; earlier turns and the context before the question in the
// last user message compressible. Messages whose content is not a plain string (image
// parts) are kept verbatim.
type plan struct {
	parts        []Part
	question     string
	compressible int
	// msgs[i] is how message i (or prompt 0) maps to parts.
	msgs []msgParts
}

type msgParts struct {
	ctx, q int    // part indices (-1: none)
	sep    string // between context and question in the original
}

func planRequest(r *models.Request) (*plan, error) {
	pl := &plan{}
	if r.Kind == models.KindCompletion {
		if len(r.Prompt) != 1 {
			return nil, nil
		}
		pl.addSplit(r.Prompt[0])
		return pl.finish(), nil
	}
	strContent, err := stringContents(r)
	if err != nil {
		return nil, err
	}
	last := -1
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			last = i
			break
		}
	}
	if last < 0 {
		return nil, nil
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		switch {
		case i == last && strContent[i]:
			pl.addSplit(m.Content)
		case m.Role == "system" || m.Role == "developer" || i > last || !strContent[i] || len(m.Images) > 0:
			pl.msgs = append(pl.msgs, msgParts{ctx: -1, q: len(pl.parts)})
			pl.parts = append(pl.parts, Part{Text: m.Content, Fixed: true})
		default:
			pl.msgs = append(pl.msgs, msgParts{ctx: len(pl.parts), q: -1})
			pl.parts = append(pl.parts, Part{Text: m.Content})
		}
	}
	return pl.finish(), nil
}

func (pl *plan) finish() *plan {
	for _, p := range pl.parts {
		if !p.Fixed {
			pl.compressible += EstimateTokens(p.Text)
		}
	}
	if pl.compressible == 0 {
		return nil
	}
	return pl
}

// addSplit adds a message whose last paragraph is the question and the rest context.
func (pl *plan) addSplit(text string) {
	ctx, sep, q := splitQuestion(text)
	mp := msgParts{ctx: -1, q: -1, sep: sep}
	if ctx != "" {
		mp.ctx = len(pl.parts)
		pl.parts = append(pl.parts, Part{Text: ctx})
	}
	mp.q = len(pl.parts)
	pl.parts = append(pl.parts, Part{Text: q, Fixed: true})
	pl.question = q
	pl.msgs = append(pl.msgs, mp)
}

// splitQuestion cuts the final question off a message: its last paragraph (after a
// blank line), else its last line when that is short, else the whole message is the
// question (nothing to compress).
func splitQuestion(text string) (ctx, sep, q string) {
	t := strings.TrimRight(text, " \t\r\n")
	if i := strings.LastIndex(t, "\n\n"); i > 0 && strings.TrimSpace(t[:i]) != "" {
		j := i
		for j > 0 && (t[j-1] == '\n' || t[j-1] == '\r') {
			j--
		}
		return text[:j], text[j : i+2], text[i+2:]
	}
	if i := strings.LastIndexByte(t, '\n'); i > 0 && len(t)-i <= 400 && strings.TrimSpace(t[:i]) != "" {
		return text[:i], "\n", text[i+1:]
	}
	return "", "", text
}

// rewrite puts the compressed texts into r: messages (or the prompt) and the body.
func (pl *plan) rewrite(r *models.Request, texts []string) error {
	join := func(mp msgParts) string {
		if mp.ctx < 0 {
			return texts[mp.q]
		}
		if mp.q < 0 {
			return texts[mp.ctx]
		}
		return texts[mp.ctx] + mp.sep + texts[mp.q]
	}
	if r.Kind == models.KindCompletion {
		p := join(pl.msgs[0])
		if len(r.Body) > 0 {
			body, err := setPrompt(r.Body, p)
			if err != nil {
				return err
			}
			r.Body = body
		}
		r.Prompt = []string{p}
		return nil
	}
	contents := make([]string, len(r.Messages))
	changed := make([]bool, len(r.Messages))
	for i, mp := range pl.msgs {
		contents[i] = join(mp)
		changed[i] = contents[i] != r.Messages[i].Content
	}
	if len(r.Body) > 0 {
		body, err := setMessages(r.Body, contents, changed)
		if err != nil {
			return err
		}
		r.Body = body
	}
	for i := range r.Messages {
		if changed[i] {
			r.Messages[i].Content = contents[i]
		}
	}
	return nil
}

// metrics of the stage.
type metrics struct {
	requests   *prometheus.CounterVec
	original   prometheus.Counter
	compressed prometheus.Counter
	ratio      prometheus.Histogram
	errors     prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "sluice_compress_requests_total",
			Help: "Requests the compress stage considered, by outcome (compressed, unchanged, short, skipped, error)."}, []string{"outcome"}),
		original: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_compress_original_tokens_total",
			Help: "Prompt tokens of compressed requests before compression."}),
		compressed: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_compress_compressed_tokens_total",
			Help: "Prompt tokens of compressed requests after compression."}),
		ratio: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_compress_ratio",
			Help: "Compression ratio achieved (tokens before / after) per compressed request.", Buckets: []float64{1.1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 7, 10}}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_compress_errors_total",
			Help: "Compression failures; the request went on uncompressed."}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.original, m.compressed, m.ratio, m.errors)
	}
	return m
}
