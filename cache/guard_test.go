package cache

import (
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func guardOf(a, b string) string {
	var fa, fb facts
	fa = extractFacts(tokenize(nil, a), &fa)
	fb = extractFacts(tokenize(nil, b), &fb)
	return guard(&fa, &fb)
}

func TestGuards(t *testing.T) {
	cases := []struct {
		a, b, want string
	}{
		{"How do I enable 2FA on my account?", "How do I disable 2FA on my account?", GuardVerb},
		{"Can I get a refund for order 1234?", "Can I get a refund for order 1243?", GuardNumber},
		{"Is the shop open on Sunday?", "Is the shop open on Monday?", GuardDate},
		{"What is the capital of France?", "What is the capital of Germany?", GuardEntity},
		{"Does the plan include support?", "Does the plan not include support?", GuardNegation},
		{"Why doesn't my card work?", "Why does my card work?", GuardNegation},
		{"How did God create the universe?", "Why did God create the universe?", GuardQuestion},
		{"Is Messi better than Ronaldo?", "Is Ronaldo better than Messi?", GuardOrder},
		{"What are the functions of preprocessor directives in C++?", "What are the functions of preprocessor directives in C?", GuardEntity},
		{"How do I buy shares?", "How do I sell shares?", GuardVerb},
		{"Give me three tips for sleep", "Give me 5 tips for sleep", GuardNumber},
		{"What happened in March 2020?", "What happened in April 2020?", GuardDate},
		// paraphrases pass
		{"How do I reset my password?", "How can I reset my password?", ""},
		{"What is the best way to learn Python?", "How do I learn Python?", ""},
		{"Give me three tips for sleep", "Give me 3 tips for sleep", ""},
		{"Refund for order 1,234", "refund for order 1234", ""},
		{"Transformers is a library for PyTorch.", "Transformers is a library for PyTorch and nothing else?", GuardNegation},
	}
	for _, c := range cases {
		if got := guardOf(c.a, c.b); got != c.want {
			t.Errorf("%q vs %q: guard %q, want %q", c.a, c.b, got, c.want)
		}
		if got := guardOf(c.b, c.a); got != c.want {
			t.Errorf("%q vs %q: guard %q, want %q", c.b, c.a, got, c.want)
		}
	}
}

func TestSubstituted(t *testing.T) {
	b := NewBuiltin()
	content := func(s string) []contentWord {
		a := &analysis{}
		b.analyze(a, s, false)
		return a.content
	}
	if !substituted(content("How do I reset my password?"), content("How do I reset my router?"), DefaultSubstitution) {
		t.Error("password vs router: a swapped subject must be refused")
	}
	if substituted(content("How do I reset my password?"), content("How can I reset the password of my account?"), DefaultSubstitution) {
		t.Error("a paraphrase that adds a word must pass")
	}
	if substituted(content("Is time travel possible?"), content("Is time traval possible in future?"), DefaultSubstitution) {
		t.Error("a typo must pass")
	}
}

func TestTokenize(t *testing.T) {
	got := []string{}
	for _, tk := range tokenize(nil, "Doesn't C++ cost $1,000.50? I'm studying GPT-4's tokens.") {
		got = append(got, tk.w)
	}
	want := []string{"does", "not", "c++", "cost", "1000.50", "i", "study", "gpt", "4", "token"}
	if len(got) != len(want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}

// TestASCIIWord: the tokenizer's one-byte table says what isWordRune says of a letter
// or digit of any script.
func TestASCIIWord(t *testing.T) {
	for c := range utf8.RuneSelf {
		if want := unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)); asciiWord[c] != want {
			t.Errorf("asciiWord[%q] = %v, want %v", rune(c), asciiWord[c], want)
		}
	}
}

func FuzzTokenize(f *testing.F) {
	for _, s := range []string{"Doesn't C++ cost $1,000.50?", "won’t", "", "1.2.3", "ÄÖÜ straße", "a'", "'t", "x++#"} {
		f.Add(s)
	}
	b := NewBuiltin()
	f.Fuzz(func(t *testing.T, s string) {
		toks := tokenize(nil, s)
		for _, tk := range toks {
			if tk.w == "" {
				t.Fatalf("empty token from %q", s)
			}
		}
		var fa facts
		fa = extractFacts(toks, &fa)
		if g := guard(&fa, &fa); g != "" {
			t.Fatalf("%q against itself: guard %q", s, g)
		}
		if sim := b.Similarity(s, s); len(toks) > 0 && (sim < 0.999 || sim > 1.001) {
			t.Fatalf("%q against itself: similarity %v", s, sim)
		}
	})
}

// TestTokenLexicon checks each token's classes against the word lists themselves: the
// lexicon is looked up once per token, on its final (stemmed) form, and the tokens
// tokenize makes up ("not" from "n't") carry theirs too.
func TestTokenLexicon(t *testing.T) {
	text := "Why doesn't the Monday sale include three items? How many tickets weren't sold in January, " +
		"and which shops will open before the weekends? Nobody can't enable the first upload without " +
		"deactivating it. What's the best of the years 1,000 and 2.10? Who enables, disables and buys more " +
		"on Fridays than on weekdays? None of these mornings, never daily: C++ vs Go, iPhone versus 2FA."
	in := func(list []string, w string) bool { return slices.Contains(list, w) }
	inMap := func(m map[string]string, w string) bool { _, ok := m[w]; return ok }
	seen := uint8(0)
	for _, tk := range tokenize(nil, text) {
		_, opp := opposites[tk.w]
		want := [...]bool{in(stopwords, tk.w), in(negations, tk.w), inMap(whWords, tk.w),
			inMap(numberWords, tk.w), inMap(dateWords, tk.w), opp}
		for bit, w := range want {
			if got := tk.lex&(1<<bit) != 0; got != w {
				t.Errorf("token %q (%q): class %d is %v, want %v", tk.w, tk.raw, bit, got, w)
			}
		}
		seen |= tk.lex
	}
	if seen != lexStop|lexNeg|lexWh|lexNum|lexDate|lexOpp {
		t.Errorf("the text met classes %06b, want every one", seen)
	}
}

// TestLexiconTable checks the table against a map built from the same lists: every listed
// word with all of its classes, and words near them (same length and bytes at the keyed
// places, prefixes, suffixes) with none.
func TestLexiconTable(t *testing.T) {
	want := map[string]uint8{}
	for _, w := range stopwords {
		want[w] |= lexStop
	}
	for _, w := range negations {
		want[w] |= lexNeg
	}
	for w := range whWords {
		want[w] |= lexWh
	}
	for w := range numberWords {
		want[w] |= lexNum
	}
	for w := range dateWords {
		want[w] |= lexDate
	}
	for w := range opposites {
		want[w] |= lexOpp
	}
	check := func(w string) {
		if got := lexicon.class(w); got != want[w] {
			t.Errorf("class(%q) = %06b, want %06b", w, got, want[w])
		}
	}
	for w := range want {
		check(w)
		check(w + "s")
		check(w[:len(w)-1])
		if len(w) >= 4 { // the same key (length, first, middle and last bytes), another word
			b := []byte(w)
			b[1] ^= 0x20
			check(string(b))
		}
	}
	for _, w := range []string{"", "x", "zz", "monday2", "mondaz", "thx", strings.Repeat("a", 300)} {
		check(w)
	}
}
