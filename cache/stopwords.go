package cache

// stopword reports whether w (normalized) is an English function word: frequent in
// every question, so it weighs little before the cache has learned any frequencies.
// Question words (how, why, what, ...) and negations are not here: they change what
// a question asks.
func stopword(w string) bool {
	switch w {
	case "a", "an", "the", "i", "me", "my", "we", "our", "you", "your", "he", "him", "his",
		"she", "her", "it", "its", "they", "them", "their", "this", "that", "these", "those",
		"am", "is", "are", "was", "were", "be", "been", "being", "have", "has", "had", "do", "doe",
		"did", "of", "to", "in", "on", "at", "by", "for", "with", "about", "as", "into", "from",
		"and", "or", "but", "if", "so", "than", "then", "there", "here", "can", "could", "would",
		"should", "will", "shall", "may", "might", "must", "some", "any", "all", "more", "most",
		"very", "just", "also", "too", "up", "out", "over", "such", "own", "same", "other",
		"get", "got", "one", "s", "t", "us", "yo":
		return true
	}
	return false
}
