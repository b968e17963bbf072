package compress

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"
)

func segmentText(text string) *segmenter {
	s := &segmenter{}
	s.segment(text, 0)
	return s
}

func TestSegmentKinds(t *testing.T) {
	text := "The first sentence is here. The second one follows after that, with a clause that is long enough to cut.\n\n" +
		"```go\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n```\n" +
		"| name | value |\n|---|---|\n| a | 1 |\n" +
		"{\"key\": \"value\", \"n\": 3}\n" +
		"Dr. Smith met J. Doe in the U.S. yesterday. It rained."
	s := segmentText(text)
	var kinds []unitKind
	var got []string
	for _, u := range s.units {
		kinds = append(kinds, u.kind)
		got = append(got, text[u.start:u.end])
	}
	want := []string{
		"The first sentence is here.",
		"The second one follows after that,",
		"with a clause that is long enough to cut.",
		"```go\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n```",
		"| name | value |", "|---|---|", "| a | 1 |",
		"{\"key\": \"value\", \"n\": 3}",
		"Dr. Smith met J. Doe in the U.S. yesterday.",
		"It rained.",
	}
	if strings.Join(got, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("units:\n%q\nwant\n%q", got, want)
	}
	wantKinds := []unitKind{kindProse, kindProse, kindProse, kindBlock, kindLine, kindLine, kindLine, kindLine, kindProse, kindProse}
	for i := range wantKinds {
		if kinds[i] != wantKinds[i] {
			t.Errorf("unit %d (%q) kind %d, want %d", i, got[i], kinds[i], wantKinds[i])
		}
	}
	// Clauses of one sentence share it.
	if s.units[1].sent != s.units[2].sent || s.units[0].sent == s.units[1].sent {
		t.Errorf("sentences: %d %d %d", s.units[0].sent, s.units[1].sent, s.units[2].sent)
	}
	if s.units[0].sep != sepSpace || s.units[2].sep != sepPara {
		t.Errorf("separators: %d %d", s.units[0].sep, s.units[2].sep)
	}
}

func TestWordFlags(t *testing.T) {
	text := `Call getUserName() or see https://example.com/x and user_id 42, "quoted words here" then John Smith, forty-two seven.`
	s := segmentText(text)
	flags := map[string]uint16{}
	groups := map[string]int32{}
	for _, w := range s.words {
		flags[text[w.start:w.end]] = w.flags
		groups[text[w.start:w.end]] = w.group
	}
	for _, p := range []string{"getUserName()", "https://example.com/x", "user_id", "42,", "seven."} {
		if flags[p]&fProtected == 0 {
			t.Errorf("%q is not protected (flags %b)", p, flags[p])
		}
	}
	for _, p := range []string{"Call", "or", "then", "John"} {
		if flags[p]&fProtected != 0 {
			t.Errorf("%q is protected", p)
		}
	}
	if g := groups[`"quoted`]; g < 0 || groups["words"] != g || groups[`here"`] != g {
		t.Errorf("quoted span not one group: %v", groups)
	}
	if flags["John"]&fCap == 0 || flags["Call"]&fSentStart == 0 {
		t.Errorf("flags: John %b Call %b", flags["John"], flags["Call"])
	}
}

func TestEstimateTokens(t *testing.T) {
	for _, tt := range []struct {
		text     string
		min, max int
	}{
		{"", 0, 0},
		{"Hello world", 2, 3},
		{"The quick brown fox jumps over the lazy dog", 9, 12}, // Llama-2: 11 with the space marker
		{"internationalization", 3, 6},
		{"12345678", 3, 8},
	} {
		if n := EstimateTokens(tt.text); n < tt.min || n > tt.max {
			t.Errorf("EstimateTokens(%q) = %d, want %d..%d", tt.text, n, tt.min, tt.max)
		}
	}
}

// FuzzSegment feeds arbitrary text (valid UTF-8 or not) to the segmenter and the whole
// compressor: no panic; units and words inside the text and in order; compressing keeps
// fixed parts verbatim, keeps only words of the input, never exceeds the input.
func FuzzSegment(f *testing.F) {
	for _, s := range []string{
		"", "a", "Hello. World!", "```\ncode", "```\nx\n```\ny", "| a | b |\n\n\"k\": 1",
		"“quoted” text «here» and 'single' ones", "Mr. X. Y. went to the U.S. on 7, 2016.",
		"\t\tindented\n    code;\n", "e-mail me@x.org or http://a/b?c=d", "日本語のテキスト。次の文。",
		strings.Repeat("word ", 200), "\xff\xfe broken \xc3 utf8", "a,b,c,d,e,f,g,h,i, j k l m n o p",
	} {
		f.Add(s, "What is it?")
	}
	lm, err := NewLM(true)
	if err != nil {
		f.Fatal(err)
	}
	c := NewCompressor(lm)
	c.LearnEvery = 1
	f.Fuzz(func(t *testing.T, text, question string) {
		s := segmentText(text)
		prevEnd := int32(0)
		for i, u := range s.units {
			if u.start < prevEnd || u.end < u.start || int(u.end) > len(text) {
				t.Fatalf("unit %d [%d,%d) out of order or bounds (prev end %d, len %d)", i, u.start, u.end, prevEnd, len(text))
			}
			prevEnd = u.end
			for j := u.w0; j < u.w1; j++ {
				w := s.words[j]
				if w.start < u.start || w.end > u.end || w.end <= w.start {
					t.Fatalf("word %d [%d,%d) outside unit %d [%d,%d)", j, w.start, w.end, i, u.start, u.end)
				}
			}
		}
		for _, r := range []float64{1.5, 3, 10} {
			res := c.Compress(context.Background(), []Part{{Text: "You are helpful.", Fixed: true}, {Text: text}, {Text: question, Fixed: true}},
				question, Budget{Ratio: r}, nil)
			if res.Texts[0] != "You are helpful." || res.Texts[2] != question {
				t.Fatalf("fixed parts changed: %q %q", res.Texts[0], res.Texts[2])
			}
			if res.After > res.Before {
				t.Fatalf("after %d > before %d", res.After, res.Before)
			}
			if utf8.ValidString(text) && !utf8.ValidString(res.Texts[1]) {
				t.Fatalf("valid UTF-8 in, invalid out: %q", res.Texts[1])
			}
			for _, w := range strings.Fields(res.Texts[1]) {
				if !strings.Contains(text, strings.TrimRight(w, ".!?")) {
					t.Fatalf("output word %q not in the input", w)
				}
			}
		}
	})
}
