package classify

import (
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

func chat(msgs ...models.Message) *models.Request {
	return &models.Request{Kind: models.KindChat, Messages: msgs}
}

func user(s string) models.Message { return models.Message{Role: "user", Content: s} }

func extractFor(r *models.Request) (features, extractor) {
	e := extractor{lex: newLexicon(), hashMask: 1<<10 - 1}
	f := e.extract(r)
	return f, e
}

func TestFeatures(t *testing.T) {
	type check struct {
		f      int
		op     string // "=", ">", "<"
		v      float32
		reason string
	}
	tests := []struct {
		name   string
		req    *models.Request
		checks []check
	}{
		{"empty", chat(), []check{{fLength, "=", 0, ""}, {fTurns, "=", 0, ""}, {fQuestions, "=", 0, ""}}},
		{"greeting", chat(user("hi there")), []check{
			{fLength, ">", 0, ""}, {fLength, "<", 0.3, ""}, {fCodeWords, "=", 0, ""}, {fMathWords, "=", 0, ""},
			{fNumbers, "=", 0, ""}, {fQuestionWord, "=", 0, ""}, {fChoices, "=", 0, ""}}},
		{"code words", chat(user("Write a Python function that implements binary search over a sorted array.")), []check{
			{fCodeWords, "=", 1, "python function implements? array binary_search: 4+ hits"},
			{fCreative, ">", 0, "write"}, {fMathWords, "=", 0, ""}}},
		{"code block", chat(user("Why does this fail?\n```go\nfunc main() {\n\tx := []int{1, 2}\n\tfmt.Println(x[3]);\n}\n```")), []check{
			{fCodeBlock, "=", 1, "fence"}, {fCodeSyntax, ">", 0.2, "braces brackets semicolon backticks"},
			{fQuestionWord, "=", 1, "why"}, {fQuestions, ">", 0, ""}}},
		{"indented code", chat(user("Fix it:\n    if x {\n        return y\n    }\n")), []check{{fCodeBlock, "=", 1, "3 indented lines"}}},
		{"arithmetic", chat(user("What is 12 * 7 + 3 = ?")), []check{
			{fMathSyntax, ">", 0, "* and + between numbers"}, {fNumbers, "=", 3.0 / 8, "three numbers"},
			{fQuestionWord, "=", 1, "what"}, {fQuestions, "=", 1.0 / 3, ""}}},
		{"math words", chat(user("Solve the equation and find the probability; how many integers satisfy it?")), []check{
			{fMathWords, "=", 1, "solve equation probability how_many integers"}}},
		{"unicode math", chat(user("Prove that ∑ x ≤ ∫ f")), []check{{fMathSyntax, "=", 3.0 / 8, "∑ ≤ ∫ are U+22xx"}}},
		{"multi-step", chat(user("Explain step by step why the sky is blue, then compare it with sunsets.")), []check{
			{fMultiStep, "=", 1, "explain by_step why then compare"}}},
		{"constraints", chat(user("Answer in exactly three bullet points, at most 50 words, as a table.")), []check{
			{fConstraints, "=", 1, "exactly bullet at_most words table"}}},
		{"roleplay", chat(user("Pretend you are a pirate captain and act as my guide.")), []check{
			{fRoleplay, "=", 1, "pretend you_are act_as"}}},
		{"extraction", chat(user("Extract the named entities from the following passage and summarize it.")), []check{
			{fExtraction, "=", 1, ""}}},
		{"choices", chat(user("Which is a prime?\nA. 4\nB. 6\nC. 7\nD. 9\nAnswer:")), []check{{fChoices, "=", 1, ""}}},
		{"parenthesised choices", chat(user("Pick one:\n(A) red\n(B) blue")), []check{{fChoices, "=", 1, ""}}},
		{"not choices", chat(user("A. Smith wrote it.")), []check{{fChoices, "=", 0, "one line only"}}},
		{"french", chat(user("Quelle est la capitale de la France ? Répondez en français, s'il vous plaît, très brièvement.")), []check{
			{fNonEnglish, ">", 0, "é ç è"}, {fNonEnglish, "<", 0.5, ""}}},
		{"japanese", chat(user("日本の首都はどこですか")), []check{{fNonEnglish, "=", 1, ""}}},
		{"curly quotes are not a language", chat(user("Janet’s ducks lay 16 eggs — “how many” are left?")), []check{
			{fNonEnglish, "=", 0, ""}, {fMathWords, ">", 0, "how many"}}},
		{"turns and system", chat(models.Message{Role: "system", Content: "You are terse."}, user("a"),
			models.Message{Role: "assistant", Content: "b"}, user("c"), models.Message{Role: "assistant", Content: "d"}, user("e")), []check{
			{fTurns, "=", 2.0 / 3, "three user turns"}, {fSystem, "=", 1, ""}}},
		{"tools and json", &models.Request{Kind: models.KindChat, Messages: []models.Message{user("weather?")},
			Tools: []byte(`[{"type":"function"}]`), ResponseFormat: []byte(`{"type":"json_object"}`)}, []check{
			{fTools, "=", 1, ""}, {fJSONMode, "=", 1, ""}}},
		{"null tools", &models.Request{Kind: models.KindChat, Messages: []models.Message{user("x")}, Tools: []byte(" null ")}, []check{
			{fTools, "=", 0, ""}}},
		{"completion prompt", &models.Request{Kind: models.KindCompletion, Prompt: []string{"def add(a, b):\n    return a + b"}}, []check{
			{fCodeWords, ">", 0, "def return"}, {fLength, ">", 0, ""}}},
		{"long", chat(user(strings.Repeat("lorem ipsum dolor sit amet ", 400))), []check{{fLong, "=", 1, ""}, {fLength, ">", 0.8, ""}}},
		{"sentences", chat(user("One. Two! Three? Four.")), []check{{fSentences, ">", 0.4, "4 sentences"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := extractFor(tt.req)
			for _, c := range tt.checks {
				got := f.dense[c.f]
				ok := false
				switch c.op {
				case "=":
					ok = got > c.v-1e-6 && got < c.v+1e-6
				case ">":
					ok = got > c.v
				case "<":
					ok = got < c.v
				}
				if !ok {
					t.Errorf("%s = %v, want %s %v (%s)", denseNames[c.f], got, c.op, c.v, c.reason)
				}
			}
			for i, v := range f.dense {
				if v < 0 || v > 1 {
					t.Errorf("%s = %v outside [0,1]", denseNames[i], v)
				}
			}
		})
	}
}

func TestFeaturesScanIsBounded(t *testing.T) {
	// A long document with the question at its end: the tail of the last user message is
	// read; the middle is not; the whole scan stays within the budget.
	doc := strings.Repeat("the committee met again and nothing happened at all. ", 4000)
	_, e := extractFor(chat(user(doc + "Now write Python code to parse it.")))
	if e.scanned > scanBudget {
		t.Errorf("scanned %d bytes, budget %d", e.scanned, scanBudget)
	}
	if e.cue[cueCode] == 0 {
		t.Error("the question at the end of a long message was not read")
	}
	_, e = extractFor(chat(user(strings.Repeat("x", 1<<20)), user("y"), user(strings.Repeat("z ", 1<<18))))
	if e.scanned > scanBudget {
		t.Errorf("three long messages: scanned %d bytes", e.scanned)
	}
}

func TestFeaturesLastMessageFirst(t *testing.T) {
	// The budget goes to the last user message first: a long earlier turn cannot hide it.
	early := strings.Repeat("tell me a story about dragons. ", 500)
	_, e := extractFor(chat(user(early), models.Message{Role: "assistant", Content: "ok"}, user("Now solve 2x + 3 = 7 for x.")))
	if e.cue[cueMath] == 0 || e.mathSyn == 0 {
		t.Errorf("last message's math not seen: cues %v, math syntax %d", e.cue, e.mathSyn)
	}
	if e.firstQ {
		t.Error(`"Now" taken for a question word`)
	}
	_, e = extractFor(chat(user("tell me"), models.Message{Role: "assistant", Content: "ok"}, user("How do I fix it?")))
	if !e.firstQ {
		t.Error(`"How" opening the last user message not taken for a question word`)
	}
}

func TestLexiconPhrases(t *testing.T) {
	l := newLexicon()
	for _, tt := range []struct {
		words []string
		kind  int
	}{
		{[]string{"python"}, cueCode},
		{[]string{"how", "many"}, cueMath},
		{[]string{"by", "step"}, cueMultiStep},
		{[]string{"at", "least"}, cueConstraint},
		{[]string{"you", "are"}, cueRoleplay},
		{[]string{"what's"}, cueQWord},
	} {
		h := hashWord(tt.words[0])
		if len(tt.words) == 2 {
			h = bigram(h, hashWord(tt.words[1]))
		}
		if l.lookup(h)&(1<<tt.kind) == 0 {
			t.Errorf("%v not marked as cue %d", tt.words, tt.kind)
		}
	}
	if l.lookup(hashWord("banana")) != 0 {
		t.Error("banana is a cue")
	}
}

func FuzzFeatures(f *testing.F) {
	f.Add("Write a Python function.\n```py\ndef f(x): return x*2\n```", "why?")
	f.Add("A. x\nB. y\n(C) z", "日本語 “quotes” ∑≤ 3+4=7")
	f.Add("\xe2", "\xc2")
	f.Add("what's 2^10 % 7", strings.Repeat("long ", 2000))
	m, err := New(handFile(map[int]float32{fCodeWords: 1, fMathSyntax: 2, fNonEnglish: -1}, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		r := chat(models.Message{Role: "system", Content: b}, user(a), models.Message{Role: "assistant", Content: b}, user(b+a))
		fs, e := extractFor(r)
		if e.scanned > scanBudget {
			t.Fatalf("scanned %d > %d", e.scanned, scanBudget)
		}
		for i, v := range fs.dense {
			if !(v >= 0 && v <= 1) {
				t.Fatalf("%s = %v", denseNames[i], v)
			}
		}
		if s, why := m.Score(r); !(s >= 0 && s <= 1) || why == "" {
			t.Fatalf("score %v %q", s, why)
		}
	})
}
