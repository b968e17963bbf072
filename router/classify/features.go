package classify

import (
	"bytes"
	"math"

	"github.com/sluice-llm/sluice/models"
)

// Dense features: each in [0,1], computed from one request. The order is part of the
// weights file's format (featureVersion); append, never reorder.
const (
	fLength       = iota // log of the user text's length
	fLong                // more than longChars of user text
	fTurns               // earlier user turns (multi-turn conversation)
	fSystem              // a system (or developer) message
	fTools               // tools offered to the model
	fJSONMode            // a JSON response format asked for
	fCodeWords           // programming vocabulary
	fCodeSyntax          // braces, semicolons, backticks, underscores, brackets
	fCodeBlock           // a fenced or indented code block
	fMathWords           // mathematics vocabulary ("solve", "probability", "how many")
	fMathSyntax          // arithmetic operators next to numbers
	fNumbers             // numbers in the text
	fMultiStep           // multi-step and reasoning cues ("step by step", "explain", "why")
	fQuestions           // question marks
	fQuestionWord        // the last user message opens with a question word
	fConstraints         // output constraints ("exactly", "at most", "words", "table")
	fCreative            // creative writing ("write", "poem", "blog", "email")
	fRoleplay            // role play ("pretend", "act as", "you are")
	fExtraction          // extraction and summarising of given text
	fNonEnglish          // share of non-ASCII bytes (another language or script)
	fChoices             // multiple-choice options (A. B. C. D.)
	fSentences           // number of sentences
	numDense
)

// featureVersion changes whenever the features change meaning; a weights file records
// the version it was trained with and Load refuses another.
const featureVersion = 1

// denseNames names the dense features in the weights file.
var denseNames = [numDense]string{
	"length", "long", "turns", "system", "tools", "json_mode",
	"code_words", "code_syntax", "code_block",
	"math_words", "math_syntax", "numbers",
	"multi_step", "questions", "question_word", "constraints",
	"creative", "roleplay", "extraction", "non_english", "choices", "sentences",
}

// Reason groups: the cue names an X-Sluice-Route reason is made of. Several dense
// features share one group; the hashed words are one group of their own.
const (
	gLength = iota
	gTurns
	gSystem
	gTools
	gJSON
	gCode
	gMath
	gNumbers
	gMultiStep
	gQuestion
	gConstraints
	gCreative
	gRoleplay
	gExtraction
	gLanguage
	gChoices
	gWords
	numGroups
)

var groupNames = [numGroups]string{
	"length", "multi-turn", "system", "tools", "json", "code", "math", "numbers",
	"multi-step", "question", "constraints", "creative", "roleplay", "extraction",
	"language", "choices", "words",
}

var denseGroup = [numDense]uint8{
	fLength: gLength, fLong: gLength, fTurns: gTurns, fSystem: gSystem, fTools: gTools,
	fJSONMode: gJSON, fCodeWords: gCode, fCodeSyntax: gCode, fCodeBlock: gCode,
	fMathWords: gMath, fMathSyntax: gMath, fNumbers: gNumbers, fMultiStep: gMultiStep,
	fQuestions: gQuestion, fQuestionWord: gQuestion, fConstraints: gConstraints,
	fCreative: gCreative, fRoleplay: gRoleplay, fExtraction: gExtraction,
	fNonEnglish: gLanguage, fChoices: gChoices, fSentences: gLength,
}

// Scan limits: the classifier reads at most scanBudget bytes of a request's text, so its
// cost does not grow with the prompt: the head (and, when long, the tail) of the last
// user message, then the first user message, the system message and earlier turns.
const (
	scanBudget = 3072
	headBytes  = 1536
	tailBytes  = 512
	longChars  = 4000
	lengthNorm = 16384 // length feature: log1p(chars)/log1p(lengthNorm)
)

// features is one request's feature vector.
type features struct {
	dense [numDense]float32
	// words is the sum of the hashed-word weights (scoring) and nWords the number of
	// hashed tokens (unigrams and bigrams) it sums over; the hashed part of the score is
	// words/sqrt(nWords).
	words  float32
	nWords int
}

// extractor walks a request's text once. It lives on the caller's stack.
type extractor struct {
	lex      *lexicon
	hashMask uint64
	hashW    []float32 // scoring: the hashed-word weights (nil: collect buckets in sink)
	sink     []uint32  // training: the hashed-word buckets

	cue       [numCueKinds]int
	words     float32
	nWords    int
	numbers   int
	nonASCII  int // letters outside ASCII (lead bytes of multi-byte UTF-8 letters)
	letters   int // ASCII letters and digits
	scanned   int
	questions int
	sentences int
	codeSyn   int
	mathSyn   int
	fences    int
	indented  int
	choices   int

	// word state
	prev       uint64 // hash of the previous word, for bigrams (0: none)
	prevPhrase bool   // the previous word opens a two-word lexicon phrase
	first      bool   // the next word is the first of the last user message
	firstQ     bool   // that first word is a question word

	// byte state
	lineStart  bool
	lineSpaces int
	prevNonSp  byte
	pendingOp  bool
	backticks  int
}

func (e *extractor) extract(r *models.Request) features {
	var f features
	var userChars, userTurns int
	var system bool
	last, firstUser := -1, -1
	switch r.Kind {
	case models.KindCompletion:
		for i, p := range r.Prompt {
			userChars += len(p)
			if i == 0 {
				e.first = true
			}
			e.scanMessage(p, len(r.Prompt) == 1)
		}
		userTurns = 1
	default:
		for i := range r.Messages {
			m := &r.Messages[i]
			switch m.Role {
			case "user":
				userChars += len(m.Content)
				userTurns++
				last = i
				if firstUser < 0 {
					firstUser = i
				}
			case "system", "developer":
				if m.Content != "" {
					system = true
				}
			}
		}
		if last >= 0 {
			e.first = true
			e.scanMessage(r.Messages[last].Content, true)
		}
		if firstUser >= 0 && firstUser != last {
			e.scanMessage(r.Messages[firstUser].Content, false)
		}
		for i := range r.Messages {
			if m := &r.Messages[i]; (m.Role == "system" || m.Role == "developer") && e.scanned < scanBudget {
				e.scanMessage(m.Content, false)
			}
		}
		for i := last - 1; i > firstUser && e.scanned < scanBudget; i-- {
			if r.Messages[i].Role == "user" {
				e.scanMessage(r.Messages[i].Content, false)
			}
		}
	}

	d := &f.dense
	d[fLength] = clip(float32(math.Log1p(float64(userChars)) / math.Log1p(lengthNorm)))
	d[fLong] = b2f(userChars > longChars)
	d[fTurns] = sat(max(userTurns-1, 0), 3)
	d[fSystem] = b2f(system)
	d[fTools] = b2f(rawPresent(r.Tools))
	d[fJSONMode] = b2f(rawPresent(r.ResponseFormat) && bytes.Contains(r.ResponseFormat, []byte("json")))
	d[fCodeWords] = sat(e.cue[cueCode], 4)
	d[fCodeSyntax] = sat(e.codeSyn, 24)
	d[fCodeBlock] = b2f(e.fences >= 2 || e.indented >= 3)
	d[fMathWords] = sat(e.cue[cueMath], 4)
	d[fMathSyntax] = sat(e.mathSyn, 8)
	d[fNumbers] = sat(e.numbers, 8)
	d[fMultiStep] = sat(e.cue[cueMultiStep], 4)
	d[fQuestions] = sat(e.questions, 3)
	d[fQuestionWord] = b2f(e.firstQ)
	d[fConstraints] = sat(e.cue[cueConstraint], 4)
	d[fCreative] = sat(e.cue[cueCreative], 3)
	d[fRoleplay] = sat(e.cue[cueRoleplay], 2)
	d[fExtraction] = sat(e.cue[cueExtract], 3)
	if n := e.letters + e.nonASCII; n > 0 {
		d[fNonEnglish] = clip(2 * float32(e.nonASCII) / float32(n))
	}
	d[fChoices] = b2f(e.choices >= 2)
	d[fSentences] = clip(float32(math.Log1p(float64(e.sentences)) / math.Log1p(32)))
	f.words, f.nWords = e.words, e.nWords
	return f
}

// scanMessage reads one message within the remaining budget: its head and, for the
// last user message when it is long, its tail (a question after a pasted document).
func (e *extractor) scanMessage(s string, isLast bool) {
	left := scanBudget - e.scanned
	if left <= 0 || s == "" {
		return
	}
	if !isLast || len(s) <= headBytes+tailBytes {
		e.scan(s[:min(len(s), left)])
		return
	}
	e.scan(s[:min(headBytes, left)])
	if left = scanBudget - e.scanned; left > 0 {
		e.scan(s[len(s)-min(tailBytes, left):])
	}
}

// scan tokenises s: words (lowercased ASCII letters, digits, apostrophes and any
// non-ASCII bytes) go through the lexicon and the hashed-word table; punctuation feeds
// the code, math, sentence and layout counts.
func (e *extractor) scan(s string) {
	e.scanned += len(s)
	e.lineStart, e.lineSpaces, e.prev, e.pendingOp, e.backticks = true, 0, 0, false, 0
	// The per-byte state lives in locals (registers), the rest in e.
	var h uint64 // hash of the word being read (0: none)
	isNumber := false
	letters := 0
	prevNonSp := e.prevNonSp
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if h != 0 && 'a' <= c && c <= 'z' {
			// the common case: a letter inside a word
			h = (h ^ uint64(c)) * fnvPrime
			isNumber = false
			letters++
			prevNonSp = c
			continue
		}
		if c == 0xe2 || c == 0xc2 {
			// U+2000–U+2FFF (typographic quotes and dashes, arrows, mathematical
			// operators) and U+0080–U+00BF (NBSP, «», °, ±) separate words.
			if h != 0 {
				e.endWord(h, isNumber)
				h = 0
			}
			if c == 0xe2 && i+1 < len(s) && s[i+1] >= 0x88 && s[i+1] <= 0x8b {
				e.mathSyn++ // U+2200–U+22FF: ∑ ∫ √ ≤ ≠ ...
			}
			if c == 0xe2 {
				i += 2
			} else {
				i++
			}
			e.backticks, e.pendingOp = 0, false
			continue
		}
		if isWordByte(c) || (c == '\'' && h != 0 && i+1 < len(s) && isLetter(s[i+1])) {
			if e.lineStart {
				e.lineStart = false
				if e.lineSpaces >= 4 {
					e.indented++
				}
				if isChoice(s, i) {
					e.choices++
				}
			}
			start := h == 0
			if start {
				h = fnvOffset
				isNumber = true
			}
			h = (h ^ uint64(c)) * fnvPrime
			digit := '0' <= c && c <= '9'
			if !digit {
				isNumber = false
			}
			switch {
			case c < 0x80:
				letters++
			case c >= 0xc3 && c != 0xef:
				// the lead byte of a letter of another script (Latin-1 and Latin
				// Extended, Greek, Cyrillic, ..., CJK, Hangul); EF: specials, BOM,
				// full-width forms
				e.nonASCII++
			}
			if e.pendingOp && start && digit {
				e.mathSyn++
			}
			e.pendingOp = false
			prevNonSp = c
			continue
		}
		if h != 0 {
			e.endWord(h, isNumber)
			h = 0
		}
		switch c {
		case ' ', '\t', '\r':
			if e.lineStart {
				if c == '\t' {
					e.lineSpaces += 4
				} else {
					e.lineSpaces++
				}
			}
			e.backticks = 0
			continue
		case '\n':
			e.lineStart, e.lineSpaces, e.backticks = true, 0, 0
			e.prev = 0 // no bigrams across lines
			continue
		}
		if e.lineStart {
			e.lineStart = false
			if e.lineSpaces >= 4 {
				e.indented++
			}
			if c == '(' && isChoice(s, i+1) {
				e.choices++
			}
		}
		switch c {
		case '`':
			e.codeSyn++
			e.backticks++
			if e.backticks == 3 {
				e.fences++
			}
		case '{', '}', ';', '_', '[', ']', '<', '>', '#', '\\', '|':
			e.codeSyn++
		case '+', '*', '/', '^', '=', '%', '-':
			if isDigit(prevNonSp) || prevNonSp == ')' {
				e.mathSyn++
			} else if c != '-' {
				e.pendingOp = true
			}
		case '?':
			e.questions++
			e.sentences++
			e.prev = 0
		case '.', '!':
			if isLetter(prevNonSp) {
				e.sentences++
			}
			e.prev = 0
		case ',', ':':
			e.prev = 0
		}
		if c != '`' {
			e.backticks = 0
		}
		if c != '+' && c != '*' && c != '/' && c != '^' && c != '=' && c != '%' {
			e.pendingOp = false
		}
		prevNonSp = c
	}
	if h != 0 {
		e.endWord(h, isNumber)
	}
	e.letters += letters
	e.prevNonSp = prevNonSp
	e.first = false
}

// endWord looks the finished word (and the bigram it ends) up in the lexicon and the
// hashed-word table.
func (e *extractor) endWord(h uint64, isNumber bool) {
	if isNumber {
		e.numbers++
		h = numberHash
	}
	mh := mix(h)
	bits := e.lex.lookupMixed(h, mh)
	if e.first {
		e.first = false
		e.firstQ = bits&(1<<cueQWord) != 0
	}
	if bits&cueMask != 0 {
		e.count(bits & cueMask)
	}
	e.hashed(mh)
	if e.prev != 0 {
		bg := bigram(e.prev, h)
		mb := mix(bg)
		if e.prevPhrase { // only words that open a lexicon phrase need the bigram looked up
			e.count(e.lex.lookupMixed(bg, mb) & cueMask)
		}
		e.hashed(mb)
	}
	e.prev, e.prevPhrase = h, bits&phraseStart != 0
}

func (e *extractor) count(bits uint16) {
	for bits != 0 {
		k := trailingZeros16(bits)
		e.cue[k]++
		bits &= bits - 1
	}
}

func (e *extractor) hashed(h uint64) {
	b := uint32(h >> 32 & e.hashMask)
	e.nWords++
	if e.hashW != nil {
		e.words += e.hashW[b]
	} else {
		e.sink = append(e.sink, b)
	}
}

// isChoice reports whether s[i:] opens a multiple-choice option: "A." "B)" "C:" or, after
// an opening parenthesis, "D)".
func isChoice(s string, i int) bool {
	if i+1 >= len(s) {
		return false
	}
	c := s[i] | 0x20
	if c < 'a' || c > 'e' {
		return false
	}
	switch s[i+1] {
	case '.', ')', ':':
		return i+2 >= len(s) || s[i+2] == ' ' || s[i+2] == '\n' || s[i+2] == '\t'
	}
	return false
}

func isWordByte(c byte) bool {
	return ('a' <= c && c <= 'z') || ('0' <= c && c <= '9') || c >= 0x80
}

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || c >= 0x80 }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// rawPresent reports whether a raw JSON field holds something other than null or [].
func rawPresent(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && string(b) != "null" && string(b) != "[]" && string(b) != "{}"
}

func b2f(b bool) float32 {
	if b {
		return 1
	}
	return 0
}

func sat(n, capN int) float32 {
	if n >= capN {
		return 1
	}
	return float32(n) / float32(capN)
}

func clip(x float32) float32 {
	if x > 1 {
		return 1
	}
	if x < 0 {
		return 0
	}
	return x
}
