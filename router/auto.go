package router

import (
	"math"

	"github.com/sluice-llm/sluice/models"
)

// Classifier scores a request for `model: "auto"`: the probability that it needs the
// strong tier, and a short reason (for X-Sluice-Route). It runs on the hot path: it must
// take microseconds and call no model. router/classify provides a learned one.
type Classifier interface {
	Score(r *models.Request) (score float64, reason string)
}

// Heuristic is the built-in classifier: a few cues (length, code, math, multi-step
// wording, tools, turns) weighed by hand. It stands in until a learned classifier is
// configured.
type Heuristic struct{}

var _ Classifier = Heuristic{}

// scanLimit bounds how much of the last user message Heuristic reads.
const scanLimit = 4 << 10

// Score implements Classifier.
func (Heuristic) Score(r *models.Request) (float64, string) {
	var text string
	turns := 0
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			turns++
			if text == "" {
				text = r.Messages[i].Content
			}
		}
	}
	if text == "" && len(r.Prompt) > 0 {
		text = r.Prompt[len(r.Prompt)-1]
	}
	total := len(text)
	if len(text) > scanLimit {
		text = text[:scanLimit]
	}
	type cue struct {
		w    float64
		name string
	}
	var best cue
	sum := -1.5
	add := func(w float64, name string) {
		sum += w
		if w > best.w {
			best = cue{w, name}
		}
	}
	if total > 2000 {
		add(1.0, "long prompt")
	} else if total > 600 {
		add(0.4, "medium prompt")
	}
	cues := scan(text)
	if cues&cueCode != 0 {
		add(1.2, "code")
	}
	if cues&cueMath != 0 {
		add(1.0, "math")
	}
	if cues&cueSteps != 0 {
		add(0.8, "multi-step")
	}
	if len(r.Tools) > 0 {
		add(0.8, "tools")
	}
	if turns > 3 {
		add(0.4, "many turns")
	}
	if best.name == "" {
		best.name = "short and simple"
	}
	return sigmoid(sum), best.name
}

// Cues found in a text.
const (
	cueCode = 1 << iota
	cueMath
	cueSteps
)

// keywords by their first byte: what each signals.
var keywords = [256][]struct {
	word string
	cue  int
}{
	'`': {{"```", cueCode}},
	'f': {{"func ", cueCode}},
	'd': {{"def ", cueCode}, {"derivative", cueMath}, {"design", cueSteps}},
	'#': {{"#include", cueCode}},
	'p': {{"prove", cueMath}},
	'e': {{"equation", cueMath}, {"explain why", cueSteps}},
	'i': {{"integral", cueMath}},
	't': {{"theorem", cueMath}, {"trade-off", cueSteps}},
	's': {{"step by step", cueSteps}, {"select ", cueCode}},
	'a': {{"analy", cueSteps}},
	'c': {{"compare", cueSteps}},
}

// scan finds the cues of text in one pass: keywords (ASCII case ignored) and, for math,
// at least three arithmetic operators next to digits.
func scan(s string) int {
	cues, ops := 0, 0
	for i := 0; i < len(s); i++ {
		c := lower(s[i])
		for _, k := range keywords[c] {
			if hasFoldAt(s, i, k.word) {
				cues |= k.cue
			}
		}
		switch c {
		case '+', '*', '/', '=', '^':
			if (i > 0 && isDigit(s[i-1])) || (i+1 < len(s) && isDigit(s[i+1])) || (i > 1 && s[i-1] == ' ' && isDigit(s[i-2])) {
				ops++
			}
		}
	}
	if ops >= 3 {
		cues |= cueMath
	}
	return cues
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// hasFoldAt reports whether s holds the lower-case ASCII word at i, ignoring case.
func hasFoldAt(s string, i int, word string) bool {
	if i+len(word) > len(s) {
		return false
	}
	for j := 1; j < len(word); j++ {
		if lower(s[i+j]) != word[j] {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
