package compress

import (
	"context"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/sluice-llm/sluice/compress"
)

// A method compresses a case's context so that context plus question fit a budget of
// the whole prompt's estimated tokens divided by ratio. The question is always kept.
type method interface {
	Name() string
	Compress(c *Case, ratio float64) string
}

// contextBudget is the estimated tokens left for the context at ratio.
func contextBudget(c *Case, ratio float64) int {
	q := compress.EstimateTokens(c.Question)
	return int(float64(compress.EstimateTokens(c.Context)+q)/ratio) - q
}

// sluiceMethod is compress.Compressor, as the stage runs it.
type sluiceMethod struct{ c *compress.Compressor }

func (m sluiceMethod) Name() string { return "sluice" }

func (m sluiceMethod) Compress(c *Case, ratio float64) string {
	r := m.c.Compress(context.Background(), []compress.Part{{Text: c.Context}, {Text: c.Question, Fixed: true}}, c.Question,
		compress.Budget{Ratio: ratio}, nil)
	return r.Texts[0]
}

// words splits on white space, keeping each word's estimated tokens.
func words(s string) ([]string, []int) {
	ws := strings.Fields(s)
	ts := make([]int, len(ws))
	for i, w := range ws {
		ts[i] = compress.EstimateTokens(w)
	}
	return ws, ts
}

// randomMethod drops words at random, each kept with the probability that meets the
// budget (seeded, so runs repeat).
type randomMethod struct{ rng *rand.Rand }

func (m *randomMethod) Name() string { return "random" }

func (m *randomMethod) Compress(c *Case, ratio float64) string {
	ws, ts := words(c.Context)
	total := 0
	for _, t := range ts {
		total += t
	}
	p := float64(contextBudget(c, ratio)) / float64(max(total, 1))
	var b strings.Builder
	for _, w := range ws {
		if m.rng.Float64() < p {
			if b.Len() > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(w)
		}
	}
	return b.String()
}

// firstMethod keeps the first words that fit.
type firstMethod struct{}

func (firstMethod) Name() string { return "first-n" }

func (firstMethod) Compress(c *Case, ratio float64) string {
	ws, ts := words(c.Context)
	left := contextBudget(c, ratio)
	n := 0
	for n < len(ws) && left-ts[n] >= 0 {
		left -= ts[n]
		n++
	}
	return strings.Join(ws[:n], " ")
}

// overlapMethod keeps the sentences with the most words in common with the question
// (case-folded), best first while they fit, in their original order.
type overlapMethod struct{}

func (overlapMethod) Name() string { return "overlap" }

func (overlapMethod) Compress(c *Case, ratio float64) string {
	q := map[string]bool{}
	for _, w := range strings.Fields(strings.ToLower(c.Question)) {
		q[strings.Trim(w, ".,;:?!\"'()")] = true
	}
	sents := sentences(c.Context)
	type scored struct {
		i, score, tok int
	}
	ss := make([]scored, len(sents))
	for i, s := range sents {
		n := 0
		for _, w := range strings.Fields(strings.ToLower(s)) {
			if q[strings.Trim(w, ".,;:?!\"'()")] {
				n++
			}
		}
		ss[i] = scored{i, n, compress.EstimateTokens(s)}
	}
	sort.SliceStable(ss, func(a, b int) bool { return ss[a].score > ss[b].score })
	left := contextBudget(c, ratio)
	keep := make([]bool, len(sents))
	for _, s := range ss {
		if s.tok <= left {
			keep[s.i] = true
			left -= s.tok
		}
	}
	var out []string
	for i, s := range sents {
		if keep[i] {
			out = append(out, s)
		}
	}
	return strings.Join(out, " ")
}

// sentences splits at . ! ? followed by a space and an upper-case letter or digit, and
// at line breaks.
func sentences(s string) []string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		start := 0
		for i := 0; i+2 < len(line); i++ {
			c := line[i]
			if (c == '.' || c == '!' || c == '?') && line[i+1] == ' ' {
				n := line[i+2]
				if n >= 'A' && n <= 'Z' || n >= '0' && n <= '9' || n == '"' {
					out = append(out, strings.TrimSpace(line[start:i+1]))
					start = i + 2
				}
			}
		}
		if t := strings.TrimSpace(line[start:]); t != "" {
			out = append(out, t)
		}
	}
	return out
}
