package cache

import (
	"unicode"
	"unicode/utf8"
)

// A token is one word of a question, lowercased and lightly stemmed, with where it came
// from: the guards need to know whether it was written with digits or a capital letter.
type token struct {
	w       string // normalized (lowercased, stemmed) form
	raw     string // as written
	h       uint64 // xxhash of w, set by hashes (the word's feature, less its kind)
	digits  bool   // has a digit
	capital bool   // starts with an upper-case letter
	first   bool   // first word of a sentence
	lex     uint8  // w's classes in the lexicon (lexStop, lexNeg, ...)
}

// tokenize splits text into words: runs of letters and digits; an apostrophe inside a
// word is kept out ("doesn't" gives "does" and "not", "what's" gives "what"). Words are
// lowercased and stemmed. It appends to dst and returns it.
func tokenize(dst []token, text string) []token {
	first := true
	i := 0
	for i < len(text) {
		r, n := rune(text[i]), 1
		if r >= utf8.RuneSelf {
			r, n = utf8.DecodeRuneInString(text[i:])
		}
		if !isWordRune(r) {
			if r == '.' || r == '?' || r == '!' || r == '\n' || r == ':' || r == ';' {
				// A dot between digits is part of a number ("2.10"), not a sentence end.
				if !(r == '.' && i > 0 && i+1 < len(text) && isDigit(text[i-1]) && isDigit(text[i+1])) {
					first = true
				}
			}
			i += n
			continue
		}
		start := i
		for i < len(text) {
			if c := text[i]; c < utf8.RuneSelf { // ASCII: one byte, a table
				if asciiWord[c] {
					i++
					continue
				}
				r, n = rune(c), 1
			} else if r, n = utf8.DecodeRuneInString(text[i:]); isWordRune(r) {
				i += n
				continue
			}
			// Keep numbers like 2.10, 1,000 and 12:30 whole.
			if (r == '.' || r == ',' || r == ':') && i+1 < len(text) && isDigit(text[i+1]) && i > start && isDigit(text[i-1]) {
				i += n
				continue
			}
			break
		}
		// C++, C#, F#
		for i < len(text) && (text[i] == '+' || text[i] == '#') && i-start <= 2 {
			i++
		}
		raw := text[start:i]
		// "n't" and "'s" style suffixes.
		if i+1 < len(text) && (text[i] == '\'' || text[i] == 0xe2) {
			j := i + 1
			if text[i] == 0xe2 && i+2 < len(text) && text[i+1] == 0x80 && text[i+2] == 0x99 { // ’
				j = i + 3
			} else if text[i] == 0xe2 {
				j = -1
			}
			if j > 0 {
				k := j
				for k < len(text) && k-j < 3 && isASCIILetter(text[k]) {
					k++
				}
				suffix := lowerASCII(text[j:k])
				if k > j && (k == len(text) || !isWordRune(rune(text[k]))) {
					switch suffix {
					case "t":
						// don't, doesn't, can't, won't
						base := lowerASCII(raw)
						switch {
						case base == "can":
						case base == "won":
							raw = "will"
						case len(base) > 1 && base[len(base)-1] == 'n':
							raw = raw[:len(raw)-1]
						}
						dst = appendToken(dst, raw, first)
						first = false
						dst = append(dst, token{w: "not", raw: "not", lex: lexicon.class("not")})
						i = k
						continue
					case "s", "re", "ve", "ll", "d", "m":
						i = k
					}
				}
			}
		}
		dst = appendToken(dst, raw, first)
		first = false
	}
	return dst
}

func appendToken(dst []token, raw string, first bool) []token {
	t := token{raw: raw, first: first}
	r, _ := utf8.DecodeRuneInString(raw)
	t.capital = unicode.IsUpper(r)
	lower := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c >= '0' && c <= '9' {
			t.digits = true
		}
		if c >= 0x80 || (c >= 'A' && c <= 'Z') {
			lower = false
		}
	}
	w := raw
	if !lower {
		w = lowerString(raw)
	}
	if !t.digits {
		t.lex = lexicon.class(w)
		if t.lex&lexNeg == 0 && !unstemmed(w) {
			if s := stem(w); len(s) != len(w) || s != w {
				w = s
				t.lex = lexicon.class(w)
			}
		}
	} else {
		w = stripNumberSeparators(w)
		t.lex = lexicon.class(w)
	}
	t.w = w
	return append(dst, t)
}

func isWordRune(r rune) bool {
	if r < utf8.RuneSelf {
		return asciiWord[r]
	}
	return unicode.IsLetter(r) || unicode.IsDigit(r)
}

// asciiWord marks the ASCII letters and digits (isWordRune for one byte).
var asciiWord = [utf8.RuneSelf]bool{
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true, 'J': true,
	'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true, 'S': true, 'T': true,
	'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true, 'j': true,
	'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true, 's': true, 't': true,
	'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}

func isDigit(c byte) bool       { return c >= '0' && c <= '9' }
func isASCIILetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if b[j] >= 'A' && b[j] <= 'Z' {
					b[j] += 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

func lowerString(s string) string {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = utf8.AppendRune(b, unicode.ToLower(r))
	}
	return string(b)
}

// stripNumberSeparators writes 1,000 as 1000 (12:30 and 2.10 keep theirs).
func stripNumberSeparators(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)-n)
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			b = append(b, s[i])
		}
	}
	return string(b)
}

// stem strips common English inflections so that "studying", "studies" and "study"
// share a form. It is deliberately light (a few suffix rules, not Porter's full
// algorithm): over-stemming merges words the guards must keep apart.
func stem(w string) string {
	n := len(w)
	if n <= 3 {
		return w
	}
	for i := 0; i < n; i++ {
		if w[i] >= 0x80 {
			return w
		}
	}
	switch {
	case hasSuffix(w, "ies") && n > 4:
		return w[:n-3] + "y"
	case hasSuffix(w, "sses"):
		return w[:n-2]
	case hasSuffix(w, "ss"), hasSuffix(w, "us"), hasSuffix(w, "is"):
		return w
	case hasSuffix(w, "ing") && n > 5:
		return undouble(w[:n-3])
	case hasSuffix(w, "ied") && n > 4:
		return w[:n-3] + "y"
	case hasSuffix(w, "ed") && n > 4:
		return undouble(w[:n-2])
	case hasSuffix(w, "es") && n > 4 && (w[n-3] == 'x' || w[n-3] == 'z' || hasSuffix(w[:n-2], "ch") || hasSuffix(w[:n-2], "sh")):
		return w[:n-2]
	case w[n-1] == 's':
		return w[:n-1]
	case hasSuffix(w, "ly") && n > 5:
		return w[:n-2]
	}
	return w
}

// undouble drops a doubled final consonant left by a suffix ("stopp" → "stop").
func undouble(w string) string {
	n := len(w)
	if n >= 3 && w[n-1] == w[n-2] && w[n-1] != 'l' && w[n-1] != 's' && w[n-1] != 'z' && !isVowel(w[n-1]) {
		return w[:n-1]
	}
	if n >= 2 && w[n-1] == 'e' {
		return w
	}
	return w
}

func isVowel(c byte) bool { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u' }

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// unstemmed words keep their form: stripping would turn them into other words.
func unstemmed(w string) bool {
	switch w {
	case "does", "has", "was", "this", "his", "less", "news", "always", "during", "morning", "evening", "thing", "something", "anything", "everything":
		return true
	}
	return false
}
