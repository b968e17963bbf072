package compress

import "unicode/utf8"

// The segmenter cuts a text into units the coarse stage keeps or drops whole (prose
// sentences, structured lines, fenced code blocks) and, inside prose sentences, into
// words the fine stage may drop. It never allocates per word: units and words are
// appended to reusable slices, and word text is addressed by byte offsets.

type unitKind uint8

const (
	kindProse unitKind = iota // a sentence (or a piece of a long one); its words may be pruned
	kindLine                  // a structured line (table row, JSON, code, markup): kept or dropped whole
	kindBlock                 // a fenced code block: kept or dropped whole
)

// Separators between units, strongest last. On output the strongest separator between
// two kept units is written between them.
const (
	sepNone  uint8 = iota
	sepSpace       // same line
	sepLine        // a line break
	sepPara        // a blank line
)

// Word flags.
const (
	fDigit     uint16 = 1 << iota // contains a digit: numbers, dates, versions, amounts
	fURL                          // a URL, e-mail address or path
	fIdent                        // an identifier: snake_case, camelCase, dotted.name, call(), `code`
	fCap                          // starts with an upper-case letter
	fSentStart                    // first word of its sentence
	fConnector                    // "of", "the", "de", ... inside a run of capitalised words
	fEndPunct                     // ends with . ! or ?
	fQuoted                       // inside a quoted span
	fPunctOnly                    // no letter or digit at all
	fNonASCII                     // has bytes >= 0x80
	fProtected                    // never dropped by the fine stage
)

type word struct {
	start, end int32  // bytes of the text
	hash       uint64 // FNV-1a of the lower-cased letters, digits and apostrophes
	stem       uint64 // same over the first stemLen of them (a cheap stemmer for matching)
	group      int32  // words of one group are kept or dropped together (-1: none)
	flags      uint16
	tokens     uint8 // estimated tokens, with the space before it
	letters    uint8 // letters and digits, capped at 255
}

type unit struct {
	start, end int32 // bytes of the text (a structured line includes its indentation)
	w0, w1     int32 // words of a prose unit
	seg        int32 // the segment (message) it belongs to
	sent       int32 // the first unit of its sentence (clauses of a sentence share it)
	tokens     int32
	score      float32
	kind       unitKind
	sep        uint8 // separator after the unit
	keep       bool
	dup        bool
	whole      bool // kept verbatim by the fine stage
}

// stemLen is how many leading letters identify a term when matching the question to the
// context ("educated" and "education" both match "educa").
const stemLen = 5

// maxUnitWords splits run-on sentences and long transcript turns so that the coarse
// stage keeps a useful granularity.
const maxUnitWords = 48

// minClauseWords is the fewest words a clause (a piece of a sentence cut at , ; :) has.
const minClauseWords = 6

// startsNumber reports text that starts with a digit after spaces ("7, 2016").
func startsNumber(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isSpace(s[i]) {
			return s[i] >= '0' && s[i] <= '9'
		}
	}
	return false
}

type segmenter struct {
	units []unit
	words []word
	// phraseMin > 0 also cuts sentences into phrases of at least that many words,
	// before prepositions, conjunctions and relative pronouns.
	phraseMin int
}

func (s *segmenter) reset() {
	s.units = s.units[:0]
	s.words = s.words[:0]
}

// segment appends the units of text (segment number seg) to s.
func (s *segmenter) segment(text string, seg int32) {
	n := len(text)
	inFence := false
	var fence byte
	fenceStart := 0
	para := false // the previous line was blank
	prevCode := false
	first := len(s.units)
	for pos := 0; pos < n; {
		end := pos
		for end < n && text[end] != '\n' {
			end++
		}
		next := end + 1
		if next > n {
			next = n
		}
		line := text[pos:end]
		ind, trimmed := indentation(line)
		if inFence {
			if isFence(trimmed, fence) {
				inFence = false
				s.addUnit(unit{start: int32(fenceStart), end: int32(end), kind: kindBlock, seg: seg})
				s.setSep(sepLine)
			}
			pos = next
			continue
		}
		if len(trimmed) == 0 {
			para = true
			s.setSep(sepPara)
			pos = next
			continue
		}
		if f := fenceChar(trimmed); f != 0 {
			inFence, fence, fenceStart = true, f, pos
			pos = next
			continue
		}
		indented := ind >= 4 && (para || prevCode || len(s.units) == first)
		if indented || structured(trimmed) {
			s.addUnit(unit{start: int32(pos), end: int32(end), kind: kindLine, seg: seg})
			s.setSep(sepLine)
			prevCode = indented
			para = false
			pos = next
			continue
		}
		prevCode, para = false, false
		// A prose line continues the previous one when a hard wrap cut a sentence.
		s.prose(text, pos+ind, end, seg)
		s.setSep(sepLine)
		pos = next
	}
	if inFence { // unclosed fence: the rest is code
		s.addUnit(unit{start: int32(fenceStart), end: int32(n), kind: kindBlock, seg: seg})
	}
	s.setSep(sepNone)
	for i := first; i < len(s.units); i++ {
		u := &s.units[i]
		if u.kind == kindProse {
			t := 0
			for j := u.w0; j < u.w1; j++ {
				t += int(s.words[j].tokens)
			}
			u.tokens = int32(t)
		} else {
			u.tokens = int32(estimateBytes(text[u.start:u.end]))
		}
	}
}

func (s *segmenter) addUnit(u unit) {
	if u.kind != kindProse {
		u.sent = int32(len(s.units))
	}
	s.units = append(s.units, u)
}

// setSep strengthens the separator after the last unit.
func (s *segmenter) setSep(sep uint8) {
	if len(s.units) == 0 {
		return
	}
	u := &s.units[len(s.units)-1]
	if sep == sepNone || sep > u.sep {
		if sep == sepNone && u.sep != sepNone {
			return
		}
		u.sep = sep
	}
}

// prose splits text[pos:end] (one line) into sentences of words.
func (s *segmenter) prose(text string, pos, end int, seg int32) {
	ustart := -1
	w0 := int32(len(s.words))
	sent := int32(-1) // the unit starting the current sentence
	inQuote := false
	quoteStart := int32(-1)
	for i := pos; i < end; {
		for i < end && isSpace(text[i]) {
			i++
		}
		if i >= end {
			break
		}
		ws := i
		for i < end && !isSpace(text[i]) {
			i++
		}
		w := scanWord(text, ws, i)
		if ustart < 0 {
			ustart = ws
			w0 = int32(len(s.words))
			if sent < 0 {
				w.flags |= fSentStart
				sent = int32(len(s.units))
			}
		}
		// Quoted spans ("..." or “...”) become one group, kept or dropped whole.
		if !inQuote && opensQuote(text[ws:i]) && !closesQuote(text[ws:i], true) {
			inQuote, quoteStart = true, int32(len(s.words))
		}
		if inQuote {
			w.flags |= fQuoted
		}
		s.words = append(s.words, w)
		if inQuote && closesQuote(text[ws:i], int32(len(s.words)-1) == quoteStart) {
			inQuote = false
			if int32(len(s.words))-quoteStart <= 24 {
				for j := quoteStart; j < int32(len(s.words)); j++ {
					s.words[j].group = quoteStart
				}
			}
		}
		nw := int32(len(s.words)) - w0
		boundary := nw >= maxUnitWords && !inQuote
		if !boundary && w.flags&fEndPunct != 0 && !abbreviation(text[ws:i]) {
			// A sentence ends at . ! ? when the next word starts a sentence.
			j := i
			for j < end && isSpace(text[j]) {
				j++
			}
			boundary = j >= end || startsSentence(text[j:end])
		}
		clause := false
		if !boundary && !inQuote && nw >= minClauseWords {
			// Clauses end at , ; : so that the coarse stage can keep part of a sentence.
			switch lastNonClose(text[ws:i]) {
			case ',', ';', ':':
				clause = i < end && !startsNumber(text[i+1:end])
			}
		}
		if !boundary && !clause && !inQuote && s.phraseMin > 0 && int(nw) >= s.phraseMin &&
			w.flags&(fPunctOnly|fConnector) == 0 && !phraseStarter(w.hash) {
			clause = phraseStarter(peekWord(text, i, end))
		}
		if boundary || clause {
			if boundary && inQuote { // an unclosed quote does not span sentences
				inQuote = false
			}
			s.addUnit(unit{start: int32(ustart), end: int32(i), w0: w0, w1: int32(len(s.words)), kind: kindProse, seg: seg, sent: sent})
			s.setSep(sepSpace)
			ustart = -1
			if boundary {
				sent = -1
			}
		}
	}
	if ustart >= 0 {
		s.addUnit(unit{start: int32(ustart), end: int32(end), w0: w0, w1: int32(len(s.words)), kind: kindProse, seg: seg, sent: sent})
	}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// scanWord reads text[start:end] (no spaces) once: hashes, flags, size.
func scanWord(text string, start, end int) word {
	w := word{start: int32(start), end: int32(end), group: -1}
	h, st := uint64(fnvOffset), uint64(fnvOffset)
	var letters, digits, upper, other, nonASCII, innerUpper, n int
	prevLower := false
	for i := start; i < end; i++ {
		c := text[i]
		switch {
		case c >= 'a' && c <= 'z':
			letters++
			prevLower = true
		case c >= 'A' && c <= 'Z':
			if letters == 0 && digits == 0 {
				w.flags |= fCap
			} else if prevLower {
				innerUpper++
			}
			upper++
			letters++
			c += 'a' - 'A'
			prevLower = false
		case c >= '0' && c <= '9':
			digits++
			prevLower = false
		case c >= 0x80:
			nonASCII++
			prevLower = true
		case c == '\'':
			if letters == 0 || i == end-1 {
				other++
				continue
			}
		default:
			other++
			prevLower = false
			switch c {
			case '_', '`', '=', '\\', '{', '}', '<', '>', '$', '#', '|', '~', '^', '*':
				w.flags |= fIdent
			}
			continue
		}
		h = (h ^ uint64(c)) * fnvPrime
		if n < stemLen {
			st = (st ^ uint64(c)) * fnvPrime
		}
		n++
	}
	w.hash, w.stem = h, st
	if n > 255 {
		n = 255
	}
	w.letters = uint8(n)
	s := text[start:end]
	if digits > 0 {
		w.flags |= fDigit
	}
	if nonASCII > 0 {
		w.flags |= fNonASCII
	}
	if letters == 0 && digits == 0 && nonASCII == 0 {
		w.flags |= fPunctOnly
	}
	if innerUpper > 0 && upper < letters {
		w.flags |= fIdent // camelCase
	}
	if isURL(s) {
		w.flags |= fURL
	} else if letters > 0 && innerDot(s) {
		w.flags |= fIdent // dotted.name, file.go, call()
	}
	if last := lastNonClose(s); last == '.' || last == '!' || last == '?' {
		w.flags |= fEndPunct
	}
	if s == "&" || s == "+" || s == "-" || s == "–" {
		w.flags |= fConnector
	}
	if numberWords[h] {
		w.flags |= fDigit
	}
	if w.flags&(fDigit|fURL|fIdent) != 0 {
		w.flags |= fProtected
	}
	w.tokens = uint8(min(255, wordTokens(letters, digits, other, nonASCII)))
	return w
}

// wordTokens estimates the tokens of one word (with the space before it) under a
// BPE vocabulary of 32k to 128k entries: short words are one token, longer ones about
// one per four letters; digits group by about two; every punctuation mark and about
// every two bytes of non-ASCII text is one more.
func wordTokens(letters, digits, other, nonASCII int) int {
	t := 0
	if letters > 0 {
		t = 1 + (letters-1)/5
	}
	t += (digits + 1) / 2
	t += other
	t += (nonASCII + 1) / 2
	if t == 0 {
		t = 1
	}
	return t
}

// estimateBytes estimates the tokens of structured text (code, JSON, tables): about
// one per three bytes, counting runs of spaces once.
func estimateBytes(s string) int {
	t, space := 0, false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' || s[i] == '\t' {
			if !space {
				t++
			}
			space = true
			continue
		}
		space = false
		t++
	}
	return (t + 2) / 3
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'
}

func indentation(line string) (int, string) {
	ind := 0
	i := 0
	for ; i < len(line); i++ {
		switch line[i] {
		case ' ':
			ind++
		case '\t':
			ind += 4
		case '\r':
		default:
			return ind, trimRight(line[i:])
		}
	}
	return ind, ""
}

func trimRight(s string) string {
	for len(s) > 0 && isSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func fenceChar(t string) byte {
	if len(t) >= 3 && (t[0] == '`' || t[0] == '~') && t[1] == t[0] && t[2] == t[0] {
		return t[0]
	}
	return 0
}

func isFence(t string, f byte) bool {
	return len(t) >= 3 && t[0] == f && t[1] == f && t[2] == f
}

// structured reports lines that are data or code rather than prose: table rows, JSON,
// markup, code. They are kept or dropped whole.
func structured(t string) bool {
	switch t[0] {
	case '{', '}', '[', ']', '<', '|':
		return true
	case '"':
		// "key": value
		if i := indexByteFrom(t, '"', 1); i > 0 && i+1 < len(t) && t[i+1] == ':' {
			return true
		}
	}
	pipes, tabs, sym := 0, 0, 0
	for i := 0; i < len(t); i++ {
		switch t[i] {
		case '|':
			pipes++
		case '\t':
			tabs++
		case '{', '}', ';', '=', '(', ')', '[', ']', '<', '>':
			sym++
		}
	}
	if pipes >= 2 || tabs >= 2 {
		return true
	}
	last := t[len(t)-1]
	if (last == ';' || last == '{') && sym >= 2 {
		return true
	}
	return sym >= 4 && sym*12 >= len(t)
}

func indexByteFrom(s string, c byte, from int) int {
	for i := from; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func isURL(s string) bool {
	for i := 0; i+2 < len(s); i++ {
		if s[i] == ':' && s[i+1] == '/' && s[i+2] == '/' {
			return true
		}
	}
	if len(s) > 4 && s[:4] == "www." {
		return true
	}
	at, slash := -1, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '@':
			at = i
		case '/':
			slash++
		}
	}
	if at > 0 && indexByteFrom(s, '.', at) > at+1 {
		return true
	}
	return slash >= 2 || (slash == 1 && len(s) > 1 && s[0] == '/')
}

// innerDot reports a '.' or '(' between word characters: dotted.names, file.go, f(x).
func innerDot(s string) bool {
	for i := 1; i+1 < len(s); i++ {
		if (s[i] == '.' || s[i] == '(') && isWordByte(s[i-1]) && (isWordByte(s[i+1]) || s[i+1] == ')') {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// lastNonClose is the last byte before closing quotes and brackets.
func lastNonClose(s string) byte {
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case '"', '\'', ')', ']':
			continue
		}
		if s[i] >= 0x80 { // a closing curly quote
			r, size := utf8.DecodeLastRuneInString(s[:i+1])
			if r == '”' || r == '’' || r == '»' {
				i -= size - 1
				continue
			}
		}
		return s[i]
	}
	return 0
}

// abbreviation reports words whose final '.' does not end a sentence: initials (J.),
// dotted acronyms (U.S.) and common titles.
func abbreviation(w string) bool {
	n := len(w)
	if n == 2 && w[1] == '.' {
		return true
	}
	if n >= 4 && w[n-1] == '.' && w[n-3] == '.' {
		return true // U.S. e.g. i.e.
	}
	switch w {
	case "Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "Jr.", "Sr.", "vs.", "etc.", "approx.", "No.", "Inc.", "Ltd.", "Co.", "Corp.", "Gen.", "Gov.", "Sen.", "Rep.", "Mt.", "Ft.", "Jan.", "Feb.", "Aug.", "Sept.", "Oct.", "Nov.", "Dec.":
		return true
	}
	return false
}

// startsSentence reports whether s starts like a sentence: an upper-case letter, a
// digit, an opening quote or bracket, or a non-ASCII letter.
func startsSentence(s string) bool {
	c := s[0]
	switch {
	case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '"', c == '(', c == '[', c == '\'', c == '*', c == '-', c >= 0x80:
		return true
	}
	return false
}

func opensQuote(s string) bool {
	if s[0] == '"' {
		return true
	}
	r, _ := utf8.DecodeRuneInString(s)
	return r == '“' || r == '«'
}

// closesQuote reports a word that ends a quoted span; the opening word itself closes
// only when it holds both quotes ("word").
func closesQuote(s string, opening bool) bool {
	end := len(s)
	for end > 0 && (s[end-1] == '.' || s[end-1] == ',' || s[end-1] == ';' || s[end-1] == ':' || s[end-1] == '?' || s[end-1] == '!' || s[end-1] == ')') {
		end--
	}
	if end == 0 {
		return false
	}
	if opening && end == 1 {
		return false
	}
	if s[end-1] == '"' {
		return !opening || end >= 2
	}
	r, _ := utf8.DecodeLastRuneInString(s[:end])
	return r == '”' || r == '»'
}

// numberWords are numbers written out: protected like digits.
var numberWords = func() map[uint64]bool {
	m := map[uint64]bool{}
	for _, w := range []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
		"eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
		"twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand",
		"million", "billion", "trillion", "dozen", "half", "once", "twice", "first", "second", "third", "fourth",
		"fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "hundreds", "thousands", "millions", "billions"} {
		m[hashWord(w)] = true
	}
	return m
}()

// peekWord hashes the next word when it is short and lower-case (0 otherwise).
func peekWord(text string, i, end int) uint64 {
	for i < end && isSpace(text[i]) {
		i++
	}
	h := uint64(fnvOffset)
	n := 0
	for ; i < end && !isSpace(text[i]); i++ {
		c := text[i]
		if c < 'a' || c > 'z' || n >= 8 {
			return 0
		}
		h = (h ^ uint64(c)) * fnvPrime
		n++
	}
	return h
}

// phraseStarters open a phrase: prepositions, conjunctions, relative pronouns.
var phraseStarters = func() map[uint64]bool {
	m := map[uint64]bool{}
	for _, w := range []string{"in", "on", "at", "by", "for", "with", "from", "into", "during", "after", "before",
		"since", "until", "through", "under", "over", "between", "against", "without", "within", "among", "about",
		"and", "but", "or", "while", "although", "because", "when", "where", "which", "who", "whom", "whose", "that",
		"as", "if", "though", "whereas", "including", "following", "despite", "via", "per", "across", "along",
		"around", "towards", "toward", "upon", "unlike", "like", "near", "beyond", "throughout"} {
		m[hashWord(w)] = true
	}
	return m
}()

func phraseStarter(h uint64) bool { return h != 0 && phraseStarters[h] }
