package compress

import (
	"fmt"
	"strings"
	"sync"

	"github.com/sluice-llm/sluice/models"
	"github.com/sugarme/tokenizer"
	"github.com/sugarme/tokenizer/pretrained"
)

// Tokenizer counts and splits text into a model's tokens.
type Tokenizer struct {
	mu   sync.Mutex // the library's encoder keeps caches that are not safe for concurrent use
	tk   *tokenizer.Tokenizer
	memo map[string]int // piece → tokens (CountTokens)
}

var _ models.TokenCounter = (*Tokenizer)(nil)

// LoadTokenizer reads a Hugging Face tokenizer.json. Files the library cannot load (some
// Llama-3/Qwen pre-tokenizer patterns make it panic) give an error instead of a crash.
func LoadTokenizer(path string) (t *Tokenizer, err error) {
	defer func() {
		if r := recover(); r != nil {
			t, err = nil, fmt.Errorf("compress: tokenizer %s is not supported: %v", path, r)
		}
	}()
	tk, err := pretrained.FromFile(path)
	if err != nil {
		return nil, fmt.Errorf("compress: load tokenizer %s: %w", path, err)
	}
	return &Tokenizer{tk: tk}, nil
}

// Encode returns the token ids of text (no BOS/EOS). A panic in the library (some
// pre-tokenizer patterns it cannot run) becomes an error.
func (t *Tokenizer) Encode(text string) (ids []int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer func() {
		if r := recover(); r != nil {
			ids, err = nil, fmt.Errorf("compress: tokenizer failed: %v", r)
		}
	}()
	enc, err := t.tk.EncodeSingle(text, false)
	if err != nil {
		return nil, err
	}
	return enc.Ids, nil
}

// CountTokens returns the number of tokens in text (EstimateTokens if encoding fails).
// The text is counted in pieces cut at the single spaces between words, each piece's
// count remembered: the library's BPE runs over a whole pre-token, which for
// SentencePiece vocabularies (Llama-2: no pre-tokenizer) is the whole text, in time
// quadratic in its length. A piece starts at a word, and the space the cut removed comes
// back as the normaliser's "▁" prefix; such vocabularies have no token with "▁" inside,
// so the count is the same.
func (t *Tokenizer) CountTokens(text string) int {
	n := 0
	for len(text) > 0 {
		cut := -1
		for i := 1; i+1 < len(text); i++ {
			if text[i] == ' ' && !isSpace(text[i-1]) && !isSpace(text[i+1]) {
				cut = i
				break
			}
		}
		piece := text
		if cut > 0 {
			piece, text = text[:cut], text[cut+1:]
		} else {
			text = ""
		}
		n += t.countPiece(piece)
	}
	return n
}

// memoMax bounds the remembered pieces (cleared when full).
const memoMax = 1 << 17

func (t *Tokenizer) countPiece(piece string) int {
	t.mu.Lock()
	n, ok := t.memo[piece]
	t.mu.Unlock()
	if ok {
		return n
	}
	ids, err := t.Encode(piece)
	if err != nil {
		return EstimateTokens(piece)
	}
	t.mu.Lock()
	if t.memo == nil || len(t.memo) >= memoMax {
		t.memo = make(map[string]int, 1024)
	}
	t.memo[strings.Clone(piece)] = len(ids)
	t.mu.Unlock()
	return len(ids)
}

// NewCounter returns a token counter for the tokenizer.json at path: the tokenizer
// when it loads and encodes a probe, else the fast estimate and the reason (for a log
// line). An empty path is the estimate.
func NewCounter(path string) (models.TokenCounter, error) {
	if path == "" {
		return Estimator{}, nil
	}
	tk, err := LoadTokenizer(path)
	if err != nil {
		return Estimator{}, err
	}
	// Some files load but panic on their first text (Llama-3-style split patterns).
	if _, err := tk.Encode("Hello, world! 123 l'été"); err != nil {
		return Estimator{}, fmt.Errorf("compress: tokenizer %s: %w", path, err)
	}
	return tk, nil
}
