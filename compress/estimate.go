package compress

// EstimateTokens estimates the tokens of text without a tokenizer, the way the
// compressor counts its words: about one token per short word, one per four or five
// letters of a long one, one per punctuation mark, digits in pairs. On English prose it
// is within about 10 % of Llama-2's and Llama-3's tokenizers (see docs/compression.md).
func EstimateTokens(text string) int {
	t := 0
	for i := 0; i < len(text); {
		for i < len(text) && isSpace(text[i]) {
			i++
		}
		if i >= len(text) {
			break
		}
		var letters, digits, other, nonASCII int
		for ; i < len(text) && !isSpace(text[i]); i++ {
			c := text[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
				letters++
			case c >= '0' && c <= '9':
				digits++
			case c >= 0x80:
				nonASCII++
			case c == '\'':
				letters++
			default:
				other++
			}
		}
		t += wordTokens(letters, digits, other, nonASCII)
	}
	return t
}

// Estimator counts tokens with EstimateTokens (models.TokenCounter).
type Estimator struct{}

// CountTokens estimates the tokens of text.
func (Estimator) CountTokens(text string) int { return EstimateTokens(text) }
