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

// lexicon holds every word of the lists above with its classes: an open-addressed table
// keyed by a word's length and three of its bytes. Most words of a question are in none
// of the lists: their probe meets an empty slot, or slots of other keys and then an empty
// one (a listed word takes at most 5 probes), without hashing or comparing the word; a Go
// map costs about three times as much.
type lexiconTable struct {
	slots [lexSlots]lexSlot
}

type lexSlot struct {
	key   uint32 // lexKey of word; 0: empty
	class uint8
	word  string
}

// lexSlots is the table's size, a power of two well over the 354 words it holds.
const (
	lexBits  = 10
	lexSlots = 1 << lexBits
)

// lexKey packs w's length, first, middle and last bytes (never 0 for a word).
func lexKey(w string) uint32 {
	n := len(w)
	return uint32(n)<<24 | uint32(w[0])<<16 | uint32(w[n/2])<<8 | uint32(w[n-1])
}

func lexSlotOf(key uint32) uint32 { return (key * 0x9e3779b1) >> (32 - lexBits) }

// class returns w's classes (0: in no list).
func (t *lexiconTable) class(w string) uint8 {
	if len(w) == 0 || len(w) > 255 {
		return 0
	}
	key := lexKey(w)
	for i := lexSlotOf(key); ; i = (i + 1) & (lexSlots - 1) {
		s := &t.slots[i]
		if s.key == 0 {
			return 0
		}
		if s.key == key && s.word == w {
			return s.class
		}
	}
}

func (t *lexiconTable) add(w string, c uint8) {
	key := lexKey(w)
	for i := lexSlotOf(key); ; i = (i + 1) & (lexSlots - 1) {
		s := &t.slots[i]
		if s.key == 0 {
			*s = lexSlot{key: key, class: c, word: w}
			return
		}
		if s.key == key && s.word == w {
			s.class |= c
			return
		}
	}
}

// lexicon is the read-only table of the lists above.
var lexicon = func() *lexiconTable {
	t := new(lexiconTable)
	for _, w := range stopwords {
		t.add(w, lexStop)
	}
	for _, w := range negations {
		t.add(w, lexNeg)
	}
	for w := range whWords {
		t.add(w, lexWh)
	}
	for w := range numberWords {
		t.add(w, lexNum)
	}
	for w := range dateWords {
		t.add(w, lexDate)
	}
	for w := range opposites {
		t.add(w, lexOpp)
	}
	return t
}()
