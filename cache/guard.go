package cache

import (
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Guard reasons: why a vector match was refused. They label the
// sluice_cache_guard_rejects_total metric (a bounded set).
const (
	GuardNegation = "negation"
	GuardNumber   = "number"
	GuardDate     = "date"
	GuardEntity   = "entity"
	GuardVerb     = "verb"     // opposite key words: enable/disable, buy/sell
	GuardQuestion = "question" // different kinds of question: why vs how, when vs where
	GuardOrder    = "order"    // the same words compared the other way round
)

// GuardReasons lists every reason a guard can give.
var GuardReasons = []string{GuardNegation, GuardNumber, GuardDate, GuardEntity, GuardVerb, GuardQuestion, GuardOrder}

// facts is what the guards compare between two questions, extracted once per question.
type facts struct {
	negations int      // count of negating words
	numbers   []string // sorted, normalized numbers (digits and number words)
	dates     []string // sorted month and weekday names, relative days
	entities  []string // sorted normalized names (capitalized words not opening a sentence, mixed forms like iPhone, C++, 2FA)
	words     []string // sorted distinct normalized words
	polar     []string // sorted words that have an opposite (enable, disable, buy, ...)
	wh        string   // class of the question word, "" if none
	compare   string   // the word before "than"/"vs", for order checks
	// sorted: entities, words and polar are sorted and distinct. Only the guards read
	// them, and most questions never meet a candidate (their partition is empty), so
	// they are sorted on first use (sort).
	sorted bool
}

// sort sorts entities, words and polar, once.
func (f *facts) sort() {
	if f.sorted {
		return
	}
	f.sorted = true
	for _, s := range []*[]string{&f.entities, &f.words, &f.polar} {
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
}

// extractFacts reads toks' facts, reusing prev's slices.
func extractFacts(toks []token, prev *facts) facts {
	f := facts{numbers: prev.numbers[:0], dates: prev.dates[:0], entities: prev.entities[:0],
		words: prev.words[:0], polar: prev.polar[:0]}
	for i, t := range toks {
		w, lx := t.w, t.lex
		switch {
		case lx&lexNeg != 0:
			f.negations++
		case t.digits:
			f.numbers = append(f.numbers, w)
		}
		if lx&lexNum != 0 {
			f.numbers = append(f.numbers, numberWords[w])
		}
		if lx&lexDate != 0 {
			f.dates = append(f.dates, dateWords[w])
		}
		if isEntity(t) {
			f.entities = append(f.entities, w)
		}
		if lx&lexOpp != 0 {
			f.polar = append(f.polar, w)
		}
		if f.wh == "" && i < 3 {
			f.wh = whClass(toks, i)
		}
		if (w == "than" || w == "vs" || w == "versu") && i > 0 && f.compare == "" {
			f.compare = toks[i-1].w
			if i >= 2 && (toks[i-1].w == "better" || toks[i-1].w == "more" || toks[i-1].w == "less" || toks[i-1].w == "worse") {
				f.compare = toks[i-2].w
			}
		}
		f.words = append(f.words, w)
	}
	for _, s := range []*[]string{&f.numbers, &f.dates} { // partition reads them
		slices.Sort(*s)
		*s = slices.Compact(*s)
	}
	return f
}

// guard compares two questions' facts and returns "" when the match may stand, or the
// reason it must not.
func guard(a, b *facts) string {
	a.sort()
	b.sort()
	if (a.negations%2 == 1) != (b.negations%2 == 1) {
		return GuardNegation
	}
	if !slices.Equal(a.numbers, b.numbers) {
		return GuardNumber
	}
	if !slices.Equal(a.dates, b.dates) {
		return GuardDate
	}
	if !entitiesAgree(a, b) || !entitiesAgree(b, a) {
		return GuardEntity
	}
	for _, w := range a.polar {
		for _, o := range opposites[w] {
			if contains(b.polar, o) && !contains(a.polar, o) && !contains(b.polar, w) {
				return GuardVerb
			}
		}
	}
	if a.wh != "" && b.wh != "" && a.wh != b.wh {
		return GuardQuestion
	}
	if a.compare != "" && b.compare != "" && a.compare != b.compare {
		return GuardOrder
	}
	return ""
}

// entitiesAgree reports whether every name in a appears in b (as a name or a word).
func entitiesAgree(a, b *facts) bool {
	for _, e := range a.entities {
		if !contains(b.words, e) {
			return false
		}
	}
	return true
}

func contains(sorted []string, w string) bool {
	_, ok := slices.BinarySearch(sorted, w)
	return ok
}

// isEntity: a word that names something: capitalized away from a sentence's start, or
// written in a form no plain word has (iPhone, C++, 2FA, GPT-4).
func isEntity(t token) bool {
	if t.lex&(lexStop|lexNeg) != 0 || t.digits && !hasLetter(t.raw) {
		return false
	}
	if t.digits {
		return true // X7, 2FA
	}
	upperInside := false
	for i := 1; i < len(t.raw); i++ {
		if t.raw[i] >= 'A' && t.raw[i] <= 'Z' {
			upperInside = true
		}
		if t.raw[i] == '+' || t.raw[i] == '#' {
			return true
		}
	}
	if upperInside {
		return true
	}
	if t.lex&lexWh != 0 {
		return false
	}
	return t.capital && !t.first
}

func hasLetter(s string) bool {
	for i := 0; i < len(s); i++ {
		if isASCIILetter(s[i]) {
			return true
		}
	}
	return false
}

var whWords = map[string]string{
	"why": "reason", "how": "manner", "what": "thing", "which": "thing", "who": "person", "whom": "person",
	"whose": "person", "when": "time", "where": "place",
}

// whClass is the kind of question asked by the question word at toks[i]: what, which and
// how ask alike ("what is the best way to" = "how do I"), why, who, when and where do
// not, nor do "how many" and "how much".
func whClass(toks []token, i int) string {
	if toks[i].lex&lexWh == 0 {
		return ""
	}
	c := whWords[toks[i].w]
	switch c {
	case "thing":
		return "manner"
	case "manner":
		if i+1 < len(toks) {
			switch toks[i+1].w {
			case "many", "much", "long", "old", "far", "often":
				return "quantity"
			}
		}
	}
	return c
}

var numberWords = map[string]string{
	"zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
	"seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
	"twenty": "20", "thirty": "30", "forty": "40", "fifty": "50", "hundred": "100",
	"thousand": "1000", "million": "1000000", "billion": "1000000000",
	"first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}

// dateWords are months (by number), weekdays and spans of time (as themselves).
var dateWords = map[string]string{
	"january": "m01", "jan": "m01", "february": "m02", "feb": "m02", "march": "m03", "mar": "m03",
	"april": "m04", "apr": "m04", "june": "m06", "jun": "m06", "july": "m07", "jul": "m07",
	"august": "m08", "aug": "m08", "september": "m09", "sep": "m09", "sept": "m09", "october": "m10",
	"oct": "m10", "november": "m11", "nov": "m11", "december": "m12", "dec": "m12",
	"monday": "monday", "tuesday": "tuesday", "wednesday": "wednesday", "thursday": "thursday",
	"friday": "friday", "saturday": "saturday", "sunday": "sunday", "today": "today",
	"tomorrow": "tomorrow", "yesterday": "yesterday", "tonight": "tonight", "weekend": "weekend",
	"morning": "morning", "evening": "evening", "night": "night", "week": "week", "month": "month",
	"year": "year", "hour": "hour", "minute": "minute", "day": "day", "daily": "daily",
	"weekly": "weekly", "monthly": "monthly", "yearly": "yearly", "annual": "annual",
}

// opposites pairs words whose swap reverses what a question asks.
var opposites = func() map[string][]string {
	pairs := [][2]string{
		{"enable", "disable"}, {"activate", "deactivate"}, {"increase", "decrease"},
		{"buy", "sell"}, {"gain", "lose"}, {"win", "lose"}, {"add", "remove"}, {"start", "stop"},
		{"open", "close"}, {"before", "after"}, {"with", "without"}, {"best", "worst"},
		{"long", "short"}, {"more", "less"}, {"max", "min"}, {"maximum", "minimum"},
		{"import", "export"}, {"upload", "download"}, {"login", "logout"}, {"true", "false"},
		{"allow", "deny"}, {"allow", "block"}, {"include", "exclude"}, {"encrypt", "decrypt"},
		{"install", "uninstall"}, {"subscribe", "unsubscribe"}, {"lock", "unlock"},
		{"accept", "reject"}, {"cheap", "expensive"}, {"high", "low"}, {"fast", "slow"},
		{"old", "new"}, {"first", "last"}, {"male", "female"}, {"pass", "fail"},
		{"positive", "negative"}, {"above", "below"}, {"inside", "outside"}, {"push", "pull"},
		{"send", "receive"}, {"credit", "debit"}, {"encode", "decode"}, {"connect", "disconnect"},
		{"follow", "unfollow"}, {"block", "unblock"}, {"hide", "show"}, {"rise", "fall"},
		{"advantage", "disadvantage"}, {"pro", "con"}, {"like", "dislike"}, {"love", "hate"},
		{"agree", "disagree"}, {"legal", "illegal"}, {"possible", "impossible"},
		{"early", "late"}, {"big", "small"}, {"large", "small"}, {"hot", "cold"},
		{"up", "down"}, {"input", "output"}, {"internal", "external"}, {"public", "private"},
		{"online", "offline"}, {"upgrade", "downgrade"}, {"weak", "strong"}, {"easy", "hard"},
		{"good", "bad"}, {"right", "left"}, {"north", "south"}, {"east", "west"}, {"men", "women"},
		{"man", "woman"}, {"boy", "girl"}, {"husband", "wife"}, {"father", "mother"},
		{"son", "daughter"}, {"brother", "sister"}, {"enter", "exit"}, {"join", "leave"},
		{"arrive", "depart"}, {"create", "delete"}, {"refund", "charge"}, {"cancel", "book"},
		{"cancel", "renew"}, {"lend", "borrow"}, {"rent", "own"}, {"asc", "desc"},
		{"ascending", "descending"}, {"inner", "outer"}, {"sync", "async"},
	}
	m := make(map[string][]string, 2*len(pairs))
	for _, p := range pairs {
		a, b := stem(p[0]), stem(p[1])
		m[a] = append(m[a], b)
		m[b] = append(m[b], a)
	}
	return m
}()

// content is a question's content words (not function or question words) with their
// weights, for the substitution guard.
type contentWord struct {
	w   string
	idf float32
}

// substituted reports whether a and b each carry content the other lacks, in a share
// above limit of their weight: "reset my password" against "reset my router" (a word
// swapped for another), where a paraphrase mostly rewords around the same content.
// Words match when equal or when they share most character trigrams (typos, inflections).
func substituted(a, b []contentWord, limit float64) bool {
	return unmatchedShare(a, b) > limit && unmatchedShare(b, a) > limit
}

func unmatchedShare(a, b []contentWord) float64 {
	var tot, un float64
	for _, x := range a {
		tot += float64(x.idf)
		if !fuzzyIn(x.w, b) {
			un += float64(x.idf)
		}
	}
	if tot == 0 {
		return 0
	}
	return un / tot
}

func fuzzyIn(w string, b []contentWord) bool {
	for _, y := range b {
		if y.w == w || similarWords(w, y.w) {
			return true
		}
	}
	return false
}

// similarWords: a shared prefix of 5 bytes (inflections: "utilization", "utilize"), or
// a trigram Dice coefficient of at least 0.6 (typos: "traval", "travel").
func similarWords(a, b string) bool {
	if len(a) >= 5 && len(b) >= 5 && a[:5] == b[:5] {
		return true
	}
	if len(a) < 4 || len(b) < 4 {
		return false
	}
	na, nb := len(a)-2, len(b)-2
	common := 0
	for i := 0; i < na; i++ {
		for j := 0; j < nb; j++ {
			if a[i:i+3] == b[j:j+3] {
				common++
				break
			}
		}
	}
	return float64(2*common) >= 0.6*float64(na+nb)
}

// partition narrows a scope to the questions a match may come from: the guards refuse
// any pair whose numbers or dates differ, so entries are indexed apart by them and a
// lookup searches only its own partition. (Negation is not partitioned: a close
// candidate that differs only in negation still counts for the ambiguity guard.)
func partition(sc Scope, f *facts) Scope {
	if len(f.numbers) == 0 && len(f.dates) == 0 {
		return sc
	}
	var stack [256]byte
	b := append(stack[:0], sc[:]...)
	for _, n := range f.numbers {
		b = append(append(b, n...), 0)
	}
	b = append(b, 1)
	for _, d := range f.dates {
		b = append(append(b, d...), 0)
	}
	var out Scope
	binary.BigEndian.PutUint64(out[:8], xxhash.Sum64(b))
	b = append(b, 0xff)
	binary.BigEndian.PutUint64(out[8:], xxhash.Sum64(b))
	return out
}
