package cache

// Word classes the analysis asks of every word. A token's classes are looked up once,
// when it is made (appendToken), in one table: the guards, the entity test and the
// feature weights read them from the token instead of asking each list again.
const (
	lexStop uint8 = 1 << iota // a function word (stopwords)
	lexNeg                    // a negation (negations)
	lexWh                     // a question word (whWords)
	lexNum                    // a number written as a word (numberWords)
	lexDate                   // a month, weekday or span of time (dateWords)
	lexOpp                    // a word with an opposite (opposites)
)

// stopwords are English function words (normalized): frequent in every question, so
// they weigh little before the cache has learned any frequencies. Question words (how,
// why, what, ...) and negations are not here: they change what a question asks.
var stopwords = []string{
	"a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "he", "him", "his",
	"she", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those",
	"am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "doe",
	"did", "of", "to", "in", "on", "at", "by", "for", "with", "about", "as", "into", "from",
	"and", "or", "but", "if", "so", "than", "then", "there", "here", "can", "could", "would",
	"should", "will", "shall", "may", "might", "must", "some", "any", "all", "more", "most",
	"very", "just", "also", "too", "up", "out", "over", "such", "own", "same", "other",
	"get", "got", "one", "s", "t", "us", "yo",
}

// negations are the words that negate a question (they are not stemmed).
var negations = []string{"not", "no", "never", "without", "cannot", "nothing", "none", "nobody", "neither", "nor", "nowhere"}

// lexicon maps every word of the lists above to its classes (a read-only table).
var lexicon = func() map[string]uint8 {
	m := make(map[string]uint8, 256)
	for _, w := range stopwords {
		m[w] |= lexStop
	}
	for _, w := range negations {
		m[w] |= lexNeg
	}
	for w := range whWords {
		m[w] |= lexWh
	}
	for w := range numberWords {
		m[w] |= lexNum
	}
	for w := range dateWords {
		m[w] |= lexDate
	}
	for w := range opposites {
		m[w] |= lexOpp
	}
	return m
}()

// stopword reports whether w (normalized) is a function word (stopwords).
func stopword(w string) bool { return lexicon[w]&lexStop != 0 }

// negation reports whether w negates (negations).
func negation(w string) bool { return lexicon[w]&lexNeg != 0 }
