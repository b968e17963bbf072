package classify

import (
	"math/bits"
	"strings"
)

// Cue kinds the lexicon marks words (and two-word phrases) with.
const (
	cueCode = iota
	cueMath
	cueMultiStep
	cueConstraint
	cueCreative
	cueRoleplay
	cueExtract
	cueQWord
	numCueKinds

	cueMask     = 1<<numCueKinds - 1
	phraseStart = 1 << 15 // the word opens a two-word phrase (set on the first word's entry)
)

// cueWords lists, per cue kind, the lowercase words and two-word phrases that signal it.
// A word may belong to several kinds. Changing these lists changes the features: bump
// featureVersion and retrain the default weights.
var cueWords = [numCueKinds]string{
	cueCode: `code coding coder function functions method methods class classes program programs
		programming programmer implement implementation algorithm algorithms bug bugs debug
		compile compiler python java javascript typescript js ts cpp golang rust ruby php
		kotlin swift scala perl sql html css json yaml regex regexp api apis script scripts
		bash shell git def return returns import const var int struct void null nil
		array arrays loop loops recursion recursive variable variables parameter parameters
		database query queries runtime complexity pointer pointers thread threads async
		linked_list binary_search time_complexity stack queue hashmap dictionary
		react node docker kubernetes server endpoint library framework syntax exception`,
	cueMath: `math maths mathematics mathematical calculate calculation compute solve solving
		equation equations integral integrals derivative derivatives differentiate integrate
		probability probabilities prove proof theorem lemma sum product area volume
		percent percentage average mean median mode ratio fraction fractions remainder
		divisible prime primes integer integers polynomial polynomials matrix matrices vector
		vectors geometry triangle circle radius diameter perimeter angle algebra algebraic
		arithmetic digits factor factors factorial exponent logarithm log sqrt root roots
		number_of how_many how_much total cost costs price profit per_hour per_day
		minimum maximum optimize expected variance deviation statistics dice coin
		square cube odd even multiply divide subtract minus plus times`,
	cueMultiStep: `step steps by_step first then next finally afterwards explain explanation why
		reason reasoning reasons derive justify show analyze analyse analysis evaluate
		compare contrast logic logical implies therefore thus hence suppose assume assuming
		if given consider puzzle riddle deduce infer conclude argument argue true false
		plan design strategy approach trade_offs pros cons detailed thoroughly carefully
		walk_through break_down think`,
	cueConstraint: `must exactly at_least at_most no_more only limit limited words sentences
		format formatted bullet bullets table tables json yaml csv list lists within
		maximum minimum concise brief briefly short paragraph paragraphs characters
		letter letters start_with end_with begin_with respond_with output include exclude
		without less_than under keep_it`,
	cueCreative: `write writing rewrite story stories poem poems poetry essay blog post email
		letter compose draft imagine imaginative fiction novel song lyrics haiku limerick
		slogan tweet speech persuasive creative tone narrative dialogue
		script screenplay joke jokes catchy headline advertisement describe vivid`,
	cueRoleplay: `pretend roleplay role_play act_as you_are persona imagine_you
		play_the as_if embody channel impersonate`,
	cueExtract: `extract extraction summarize summarise summary summaries identify following
		passage passages article articles document documents paragraph text data
		information named entities entity fields return output parse classify categorize
		sentiment keywords`,
	cueQWord: `what what's how how's why which who whom whose when where is are can could does
		do did should would will was were`,
}

const (
	fnvOffset  = 14695981039346656037
	fnvPrime   = 1099511628211
	numberHash = 0x6e756d6265723031 // every all-digit word hashes to this
)

// hashWord is the FNV-1a hash of a lowercase word, as the extractor computes it.
func hashWord(w string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(w); i++ {
		h = (h ^ uint64(w[i])) * fnvPrime
	}
	return h
}

// bigram combines the hashes of two consecutive words (order matters).
func bigram(a, b uint64) uint64 {
	return (a * 0x9e3779b97f4a7c15) ^ (b + 0x632be59bd9b4e019)
}

// mix is the SplitMix64 finaliser: it spreads a hash's bits before they index a table.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func trailingZeros16(x uint16) int { return bits.TrailingZeros16(x) }

// lexicon maps word and bigram hashes to the cue kinds they signal: an open-addressed
// table built once per Model, read without allocating.
type lexicon struct {
	keys [lexSize]uint64
	vals [lexSize]uint16
}

const lexSize = 2048 // a power of two, about three times the number of entries

func newLexicon() *lexicon {
	l := new(lexicon)
	for kind, list := range cueWords {
		for _, w := range strings.Fields(list) {
			var h uint64
			if a, b, ok := strings.Cut(w, "_"); ok && a != "" && b != "" {
				h = bigram(hashWord(a), hashWord(b))
				l.add(hashWord(a), phraseStart)
			} else {
				h = hashWord(strings.Trim(w, "_"))
			}
			l.add(h, uint16(1)<<kind)
		}
	}
	return l
}

func (l *lexicon) add(h uint64, bit uint16) {
	for i := mix(h) & (lexSize - 1); ; i = (i + 1) & (lexSize - 1) {
		switch l.keys[i] {
		case h:
			l.vals[i] |= bit
			return
		case 0:
			l.keys[i], l.vals[i] = h, bit
			return
		}
	}
}

func (l *lexicon) lookup(h uint64) uint16 { return l.lookupMixed(h, mix(h)) }

// lookupMixed is lookup with mix(h) already computed.
func (l *lexicon) lookupMixed(h, mh uint64) uint16 {
	for i := mh & (lexSize - 1); ; i = (i + 1) & (lexSize - 1) {
		switch l.keys[i] {
		case h:
			return l.vals[i]
		case 0:
			return 0
		}
	}
}
