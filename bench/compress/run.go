package compress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"
	"unicode"

	"github.com/sluice-llm/sluice/compress"
	"github.com/sluice-llm/sluice/models"
)

// Config says what to run.
type Config struct {
	SQuAD     string    // SQuAD v1.1 file (XQuAD by default)
	QMSum     string    // QMSum JSONL ("" to skip)
	QMSumMax  int       // QMSum queries to use (0: all)
	Limit     int       // SQuAD questions per set (0: all; evenly spread)
	Ratios    []float64 // target ratios
	Counter   models.TokenCounter
	Tokenizer string // what Counter is, for the report
	Repeat    int    // passes over each set when timing sluice (throughput)
	// CountSample counts tokens with Counter on this many cases per row, evenly spread
	// (0: all): a real tokenizer is slow, and the ratio converges long before.
	CountSample int
	Progress    io.Writer

	cache map[string]int
	rare  map[string]map[string]bool
}

// Row is one method at one ratio on one set.
type Row struct {
	Set    string  `json:"set"`
	Method string  `json:"method"`
	Target float64 `json:"target_ratio"`
	// Ratio is the whole prompt's tokens before over after (summed over the cases).
	Ratio float64 `json:"ratio"`
	// Kept is the share of gold answers found verbatim in the compressed context;
	// KeptNorm after SQuAD's answer normalisation (case, punctuation, articles).
	Kept     float64 `json:"kept_pct"`
	KeptNorm float64 `json:"kept_norm_pct"`
	// Relevant is the share of the relevant turns' distinctive words (those at most twice
	// in the transcript) that the output kept (QMSum).
	Relevant     float64 `json:"relevant_kept_pct,omitempty"`
	TokensPerSec float64 `json:"tokens_per_sec_per_core"`
	Cases        int     `json:"cases"`
}

// Report is the whole run.
type Report struct {
	Tokenizer string `json:"tokenizer"`
	Rows      []Row  `json:"rows"`
	// Summary figures the issue names.
	Kept2xXQuAD    float64 `json:"kept_2x_xquad_pct"`
	Kept2xArticles float64 `json:"kept_2x_articles_pct"`
	Ratio2x        float64 `json:"ratio_achieved_2x"`
	TokensPerSec   float64 `json:"tokens_per_sec_per_core"`
}

// Run runs every method at every ratio on every set.
func Run(ctx context.Context, c Config) (*Report, error) {
	if len(c.Ratios) == 0 {
		c.Ratios = []float64{2, 3, 5}
	}
	if c.Counter == nil {
		c.Counter = compress.Estimator{}
		c.Tokenizer = "estimate"
	}
	if c.Repeat < 1 {
		c.Repeat = 1
	}
	paras, articles, err := LoadSQuAD(c.SQuAD)
	if err != nil {
		return nil, err
	}
	paras, articles = spread(paras, c.Limit), spread(articles, c.Limit)
	sets := []struct {
		name  string
		cases []Case
	}{{"xquad", paras}, {"articles", articles}}
	if c.QMSum != "" {
		qm, err := LoadQMSum(c.QMSum, c.QMSumMax)
		if err != nil {
			return nil, err
		}
		sets = append(sets, struct {
			name  string
			cases []Case
		}{"qmsum", qm})
	}
	lm, err := compress.NewLM(false)
	if err != nil {
		return nil, err
	}
	comp := compress.NewCompressor(lm)
	methods := []method{sluiceMethod{comp}, &randomMethod{rng: rand.New(rand.NewPCG(1, 2))}, firstMethod{}, overlapMethod{}}
	rep := &Report{Tokenizer: c.Tokenizer}
	var sluiceTok, sluiceCPU float64
	for _, set := range sets {
		// Throughput counts every case in estimated tokens (cheap); ratios count a
		// sample in the counter's tokens.
		before := make([]int, len(set.cases))
		for i := range set.cases {
			cs := &set.cases[i]
			before[i] = compress.EstimateTokens(cs.Context + "\n\n" + cs.Question)
		}
		for _, r := range c.Ratios {
			for _, m := range methods {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				row, tok, cpu := runOne(&c, set.name, set.cases, before, m, r)
				rep.Rows = append(rep.Rows, row)
				if m.Name() == "sluice" {
					sluiceTok += tok
					sluiceCPU += cpu
					if r == 2 {
						switch set.name {
						case "xquad":
							rep.Kept2xXQuAD, rep.Ratio2x = row.Kept, row.Ratio
						case "articles":
							rep.Kept2xArticles = row.Kept
						}
					}
				}
				if c.Progress != nil {
					fmt.Fprintf(c.Progress, "bench compress: %s %s %.0fx: ratio %.2f kept %.1f%%\n", set.name, m.Name(), r, row.Ratio, row.Kept)
				}
			}
		}
	}
	if sluiceCPU > 0 {
		rep.TokensPerSec = sluiceTok / sluiceCPU
	}
	return rep, nil
}

// runOne runs m at ratio r over cases; it returns the row and, for throughput, the
// tokens compressed and the CPU seconds the process spent on them.
func runOne(c *Config, set string, cases []Case, before []int, m method, r float64) (Row, float64, float64) {
	out := make([]string, len(cases))
	repeat := 1
	if m.Name() == "sluice" {
		repeat = c.Repeat
	}
	runtime.GC()
	cpu0, wall0 := cpuTime(), time.Now()
	for range repeat {
		for i := range cases {
			out[i] = m.Compress(&cases[i], r)
		}
	}
	cpu := cpuTime() - cpu0
	if cpu <= 0 {
		cpu = time.Since(wall0).Seconds()
	}
	row := Row{Set: set, Method: m.Name(), Target: r, Cases: len(cases)}
	var sumBefore, sumAfter, kept, keptNorm, relKept, relTotal float64
	step := 1
	if c.CountSample > 0 && len(cases) > c.CountSample {
		step = len(cases) / c.CountSample
	}
	for i := range cases {
		cs := &cases[i]
		if i%step == 0 {
			sumBefore += float64(c.count(cs.Context + "\n\n" + cs.Question))
			sumAfter += float64(c.Counter.CountTokens(out[i] + "\n\n" + cs.Question))
		}
		if cs.Answer != "" {
			if strings.Contains(squash(out[i]), squash(cs.Answer)) {
				kept++
			}
			if strings.Contains(" "+normalize(out[i])+" ", " "+normalize(cs.Answer)+" ") {
				keptNorm++
			}
		}
		if len(cs.Relevant) > 0 {
			// Words rare in the transcript (at most twice) identify where they came
			// from: the share of those in the relevant turns that the output kept.
			rare := c.rareWords(cs.Context)
			have := map[string]bool{}
			for _, w := range strings.Fields(out[i]) {
				have[normWord(w)] = true
			}
			for _, t := range cs.Relevant {
				for _, w := range strings.Fields(t) {
					if w = normWord(w); rare[w] {
						relTotal++
						if have[w] {
							relKept++
						}
					}
				}
			}
		}
	}
	n := float64(len(cases))
	if sumAfter > 0 {
		row.Ratio = sumBefore / sumAfter
	}
	row.Kept, row.KeptNorm = 100*kept/n, 100*keptNorm/n
	if relTotal > 0 {
		row.Relevant = 100 * relKept / relTotal
	}
	var tok float64
	for _, b := range before {
		tok += float64(b)
	}
	tok *= float64(repeat)
	row.TokensPerSec = tok / cpu
	return row, tok, cpu
}

// spread keeps n cases evenly spread over cs (all when n is 0 or more than there are).
func spread(cs []Case, n int) []Case {
	if n <= 0 || n >= len(cs) {
		return cs
	}
	out := make([]Case, 0, n)
	for i := range n {
		out = append(out, cs[i*len(cs)/n])
	}
	return out
}

// count counts with the counter, remembering contexts (articles repeat per question).
func (c *Config) count(s string) int {
	if n, ok := c.cache[s]; ok {
		return n
	}
	if c.cache == nil {
		c.cache = map[string]int{}
	}
	n := c.Counter.CountTokens(s)
	c.cache[s] = n
	return n
}

// rareWords are the words (of 3 letters or more) that occur at most twice in text.
func (c *Config) rareWords(text string) map[string]bool {
	if m, ok := c.rare[text]; ok {
		return m
	}
	n := map[string]int{}
	for _, w := range strings.Fields(text) {
		if w = normWord(w); len(w) >= 3 {
			n[w]++
		}
	}
	m := map[string]bool{}
	for w, k := range n {
		if k <= 2 {
			m[w] = true
		}
	}
	if c.rare == nil {
		c.rare = map[string]map[string]bool{}
	}
	c.rare[text] = m
	return m
}

func normWord(w string) string {
	return strings.ToLower(strings.TrimFunc(w, func(r rune) bool { return unicode.IsPunct(r) }))
}

// squash collapses runs of white space.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// normalize is SQuAD's answer normalisation: lower case, no punctuation, no articles,
// single spaces.
func normalize(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsPunct(r) {
			return -1
		}
		return unicode.ToLower(r)
	}, s)
	f := strings.Fields(s)
	out := f[:0]
	for _, w := range f {
		if w != "a" && w != "an" && w != "the" {
			out = append(out, w)
		}
	}
	return strings.Join(out, " ")
}

// WriteTable prints the report.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "prompt compression (tokens: %s; kept: gold answer verbatim in the compressed context; norm: after SQuAD normalisation)\n", r.Tokenizer)
	fmt.Fprintf(&b, "%-9s %-8s %6s %7s %7s %7s %9s %14s\n", "set", "method", "target", "ratio", "kept%", "norm%", "relevant%", "tokens/s/core")
	for _, x := range r.Rows {
		kept, norm, rel := fmt.Sprintf("%.1f", x.Kept), fmt.Sprintf("%.1f", x.KeptNorm), "-"
		if x.Set == "qmsum" {
			kept, norm, rel = "-", "-", fmt.Sprintf("%.1f", x.Relevant)
		}
		fmt.Fprintf(&b, "%-9s %-8s %5.0fx %7.2f %7s %7s %9s %14.0f\n", x.Set, x.Method, x.Target, x.Ratio, kept, norm, rel, x.TokensPerSec)
	}
	pass := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Fprintf(&b, "\ntargets at 2x: answers kept >= 95%% on paragraphs %.1f%% (%s), on articles %.1f%% (%s); throughput >= 1M tokens/s/core: %.2fM (%s)\n",
		r.Kept2xXQuAD, pass(r.Kept2xXQuAD >= 95), r.Kept2xArticles, pass(r.Kept2xArticles >= 95), r.TokensPerSec/1e6, pass(r.TokensPerSec >= 1e6))
	_, err := io.WriteString(w, b.String())
	return err
}

// JSON is the report as one JSON object.
func (r *Report) JSON() ([]byte, error) { return json.Marshal(r) }
