package compress

import (
	"context"
	"strings"
	"testing"
)

func newTestCompressor(t testing.TB) *Compressor {
	t.Helper()
	lm, err := NewLM(false)
	if err != nil {
		t.Fatal(err)
	}
	return NewCompressor(lm)
}

// A retrieved context of several passages, one of which answers the question.
var ragContext = strings.Join([]string{
	"The river Rhine rises in the Swiss Alps and flows through Germany and the Netherlands to the North Sea. " +
		"It has been an important navigable waterway since Roman times, carrying goods far inland.",
	"The Danube is the second-longest river in Europe. It flows through ten countries, more than any other river " +
		"in the world, before emptying into the Black Sea through a large delta in Romania.",
	"The Amazon river in South America carries more water than any other river. Its basin covers about " +
		"7,000,000 square kilometres, and its rainforest is home to a tenth of the species known to science.",
	"Many rivers were given names by the people who lived along them, and the names often simply mean water or river " +
		"in an old language. The study of such names is called hydronymy and is a branch of onomastics.",
	"The Thames flows through London. The Thames Barrier, completed in 1982, protects the city from storm surges " +
		"coming up the estuary from the North Sea.",
}, "\n\n")

func TestCompressKeepsAnswerAndFixedParts(t *testing.T) {
	c := newTestCompressor(t)
	sys := "You answer questions using only the context below. Cite the passage you used."
	q := "When was the Thames Barrier completed?"
	parts := []Part{{Text: sys, Fixed: true}, {Text: ragContext}, {Text: q, Fixed: true}}
	for _, ratio := range []float64{2, 3, 5} {
		res := c.Compress(context.Background(), parts, q, Budget{Ratio: ratio}, nil)
		if !res.Changed || res.Texts[0] != sys || res.Texts[2] != q {
			t.Fatalf("ratio %g: changed=%v, fixed parts %q / %q", ratio, res.Changed, res.Texts[0], res.Texts[2])
		}
		if !strings.Contains(res.Texts[1], "1982") {
			t.Errorf("ratio %g: the answer was dropped: %q", ratio, res.Texts[1])
		}
		got := float64(res.Before) / float64(res.After)
		if got < ratio*0.8 {
			t.Errorf("ratio %g: achieved only %.2f (%d -> %d)", ratio, got, res.Before, res.After)
		}
		if res.After != EstimateTokens(sys)+EstimateTokens(q)+EstimateTokens(res.Texts[1]) && ratio == 2 {
			t.Logf("after %d, re-estimated %d", res.After, EstimateTokens(sys)+EstimateTokens(q)+EstimateTokens(res.Texts[1]))
		}
	}
}

func TestCompressTokenBudget(t *testing.T) {
	c := newTestCompressor(t)
	q := "Which river flows through ten countries?"
	res := c.Compress(context.Background(), []Part{{Text: ragContext}, {Text: q, Fixed: true}}, q, Budget{Tokens: 60}, nil)
	if res.After > 60 {
		t.Errorf("after %d tokens, budget 60: %q", res.After, res.Texts[0])
	}
	if !strings.Contains(res.Texts[0], "Danube") || !strings.Contains(res.Texts[0], "ten countries") {
		t.Errorf("the answer was dropped: %q", res.Texts[0])
	}
	// Within budget already: unchanged.
	res = c.Compress(context.Background(), []Part{{Text: ragContext}, {Text: q, Fixed: true}}, q, Budget{Tokens: 10000}, nil)
	if res.Changed || res.Texts[0] != ragContext {
		t.Errorf("a prompt within budget was changed")
	}
}

func TestCompressStructuredWhole(t *testing.T) {
	c := newTestCompressor(t)
	code := "```python\ndef area(r):\n    return 3.14159 * r * r\n```"
	table := "| city | population |\n|---|---|\n| Lyon | 522,250 |\n| Nice | 342,669 |"
	text := ragContext + "\n\n" + code + "\n\n" + table + "\n\nSee https://example.org/rivers?id=42 and the function area_of_circle() for details."
	q := "What does the area function return for a radius r?"
	res := c.Compress(context.Background(), []Part{{Text: text}, {Text: q, Fixed: true}}, q, Budget{Ratio: 3}, nil)
	out := res.Texts[0]
	if !strings.Contains(out, code) {
		t.Errorf("the relevant code block was not kept whole:\n%s", out)
	}
	// Table rows are whole lines or absent.
	for _, row := range strings.Split(table, "\n") {
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "|") && strings.Contains(row, strings.TrimSpace(line)) && line != row {
				t.Errorf("table row cut: %q (from %q)", line, row)
			}
		}
	}
	// URLs and identifiers are whole or absent, never cut.
	if strings.Contains(out, "example.org") && !strings.Contains(out, "https://example.org/rivers?id=42") {
		t.Errorf("URL cut: %s", out)
	}
	if strings.Contains(out, "area_of") && !strings.Contains(out, "area_of_circle()") {
		t.Errorf("identifier cut: %s", out)
	}
}

func TestCompressDropsDuplicates(t *testing.T) {
	c := newTestCompressor(t)
	chunk := "The Danube is the second-longest river in Europe. It flows through ten countries, more than any other river in the world."
	// Overlapping RAG chunks: the same passage retrieved three times.
	text := chunk + "\n\n" + ragContext + "\n\n" + chunk + "\n\n" + chunk
	q := "How many countries does the Danube flow through?"
	res := c.Compress(context.Background(), []Part{{Text: text}, {Text: q, Fixed: true}}, q, Budget{Ratio: 1.5}, nil)
	if n := strings.Count(res.Texts[0], "ten countries"); n != 1 {
		t.Errorf("duplicate chunk kept %d times:\n%s", n, res.Texts[0])
	}
}

func TestCompressNoQuestion(t *testing.T) {
	c := newTestCompressor(t)
	res := c.Compress(context.Background(), []Part{{Text: ragContext}}, "", Budget{Ratio: 2}, nil)
	if !res.Changed || res.After*2 > res.Before*11/10 {
		t.Errorf("no question: %d -> %d", res.Before, res.After)
	}
}

func TestLMLearnsFromTraffic(t *testing.T) {
	lm, err := NewLM(true)
	if err != nil {
		t.Fatal(err)
	}
	h := hashWord("kubernetes")
	before := lm.Bits(h)
	hs := make([]uint64, 8192)
	for i := range hs {
		if i%4 == 0 {
			hs[i] = h
		} else {
			hs[i] = uint64(i) * 0x9e3779b97f4a7c15
		}
	}
	lm.Observe(hs)
	if after := lm.Bits(h); !(after < before-1) {
		t.Errorf("a word frequent in traffic kept its information: %.1f -> %.1f bits", before, after)
	}
	if the := lm.Bits(hashWord("the")); the > 8 {
		t.Errorf("'the' has %.1f bits", the)
	}
}
