package tinymodel

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"unicode"
)

// TokenType is a SentencePiece token type as GGUF stores it (tokenizer.ggml.token_type).
type TokenType int32

// Token types (llama.cpp's llama_token_type numbering).
const (
	TokenNormal      TokenType = 1
	TokenUnknown     TokenType = 2
	TokenControl     TokenType = 3
	TokenUserDefined TokenType = 4
	TokenUnused      TokenType = 5
	TokenByte        TokenType = 6
)

// Special token texts of a Llama-2 SentencePiece vocabulary.
const (
	UnkToken = "<unk>"
	BOSToken = "<s>"
	EOSToken = "</s>"
)

// Vocab is a SentencePiece vocabulary: parallel slices indexed by token id, and the
// ids of the special tokens.
type Vocab struct {
	Tokens []string
	Scores []float32
	Types  []TokenType
	BOS    uint32 // beginning of sequence, <s>
	EOS    uint32 // end of sequence, </s>
	UNK    uint32 // unknown, <unk>
}

// NewVocab builds a vocabulary from tokens in id order, as LoadVocab does for a
// tokenizer.json: scores are -id, <unk> is the unknown token, <s> and </s> are control
// tokens (BOS and EOS), <0xNN> are byte tokens, everything else is normal. Use "▁"
// (U+2581) for a space, as SentencePiece does. All three special tokens must be present
// and no token may repeat.
func NewVocab(tokens []string) (*Vocab, error) {
	v := &Vocab{
		Tokens: tokens,
		Scores: make([]float32, len(tokens)),
		Types:  make([]TokenType, len(tokens)),
	}
	for id, tok := range tokens {
		v.Scores[id] = -float32(id)
		v.Types[id] = classify(tok)
	}
	if err := v.setSpecials(UnkToken); err != nil {
		return nil, fmt.Errorf("tinymodel: new vocab: %w", err)
	}
	if err := v.validate(); err != nil {
		return nil, fmt.Errorf("tinymodel: new vocab: %w", err)
	}
	return v, nil
}

// classify returns the type of a token from its text alone.
func classify(tok string) TokenType {
	switch {
	case tok == UnkToken:
		return TokenUnknown
	case tok == BOSToken || tok == EOSToken:
		return TokenControl
	case isByteToken(tok):
		return TokenByte
	default:
		return TokenNormal
	}
}

// isByteToken reports whether tok is a SentencePiece byte-fallback token, <0xNN>.
func isByteToken(tok string) bool {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return false
	}
	for _, c := range tok[3:5] {
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// isBlank reports whether a token's text has nothing visible: it is empty, or only
// whitespace ("▁" read as a space), control and format characters.
func isBlank(tok string) bool {
	return strings.TrimFunc(tok, func(r rune) bool {
		return r == '▁' || unicode.IsSpace(r) || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
	}) == ""
}

// setSpecials finds the BOS, EOS and unknown token ids, and marks the unknown token.
func (v *Vocab) setSpecials(unk string) error {
	found := map[string]int{UnkToken: -1, BOSToken: -1, EOSToken: -1, unk: -1}
	for id, tok := range v.Tokens {
		if at, ok := found[tok]; ok && at < 0 {
			found[tok] = id
		}
	}
	for _, name := range []string{unk, BOSToken, EOSToken} {
		if found[name] < 0 {
			return fmt.Errorf("no %s token", name)
		}
	}
	v.UNK, v.BOS, v.EOS = uint32(found[unk]), uint32(found[BOSToken]), uint32(found[EOSToken])
	v.Types[v.UNK] = TokenUnknown
	return nil
}

// validate checks that the slices line up and the special ids are in range.
func (v *Vocab) validate() error {
	n := len(v.Tokens)
	switch {
	case n < 3:
		return fmt.Errorf("%d tokens, want at least 3", n)
	case len(v.Scores) != n || len(v.Types) != n:
		return fmt.Errorf("%d tokens but %d scores and %d types", n, len(v.Scores), len(v.Types))
	case int(v.BOS) >= n || int(v.EOS) >= n || int(v.UNK) >= n:
		return fmt.Errorf("special token ids bos %d eos %d unk %d out of range for %d tokens", v.BOS, v.EOS, v.UNK, n)
	}
	seen := make(map[string]int, n)
	for id, tok := range v.Tokens {
		if prev, dup := seen[tok]; dup {
			return fmt.Errorf("token %q has ids %d and %d", tok, prev, id)
		}
		seen[tok] = id
	}
	for id, t := range v.Types {
		if t < TokenNormal || t > TokenByte {
			return fmt.Errorf("token %d has type %d, want 1 to 6", id, t)
		}
	}
	return nil
}

// tokenizerJSON is the part of a Hugging Face tokenizer.json that LoadVocab reads.
type tokenizerJSON struct {
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	PreTokenizer json.RawMessage `json:"pre_tokenizer"`
	Decoder      json.RawMessage `json:"decoder"`
	Model        *struct {
		Type     string          `json:"type"`
		UnkToken *string         `json:"unk_token"` // BPE
		UnkID    *int            `json:"unk_id"`    // Unigram
		Vocab    json.RawMessage `json:"vocab"`
	} `json:"model"`
}

// LoadVocab reads a Hugging Face tokenizer.json of the Llama-2 SentencePiece kind: a
// BPE model whose model.vocab maps token to id (model.merges is ignored; scores become
// -id), or a Unigram model whose model.vocab lists [token, score] pairs. Token types:
// the unknown token is 2, <s>, </s> and other special added tokens are 3 (control),
// other added tokens 4, <0xNN> tokens 6 (byte), the rest 1. Byte-level BPE files
// (GPT-2, Llama-3 style) are refused: they are not SentencePiece vocabularies.
func LoadVocab(path string) (*Vocab, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tinymodel: load vocab: %w", err)
	}
	v, err := parseVocab(data)
	if err != nil {
		return nil, fmt.Errorf("tinymodel: load vocab %s: %w", path, err)
	}
	return v, nil
}

func parseVocab(data []byte) (*Vocab, error) {
	var tj tokenizerJSON
	if err := json.Unmarshal(data, &tj); err != nil {
		return nil, fmt.Errorf("not a tokenizer.json: %w", err)
	}
	if tj.Model == nil {
		return nil, errors.New("no model section")
	}
	if bytes.Contains(tj.PreTokenizer, []byte(`"ByteLevel"`)) || bytes.Contains(tj.Decoder, []byte(`"ByteLevel"`)) {
		return nil, errors.New("byte-level BPE tokenizer, want a SentencePiece (Llama-2 kind) one")
	}
	var tokens []string
	var scores []float32
	unk := UnkToken
	switch tj.Model.Type {
	case "BPE", "":
		ids := map[string]int{}
		if err := json.Unmarshal(tj.Model.Vocab, &ids); err != nil || len(ids) == 0 {
			return nil, fmt.Errorf("model.vocab: want a non-empty object of token ids (%v)", err)
		}
		tokens = make([]string, len(ids))
		filled := make([]bool, len(ids))
		for tok, id := range ids {
			if id < 0 || id >= len(ids) {
				return nil, fmt.Errorf("model.vocab: token %q has id %d, want ids 0 to %d", tok, id, len(ids)-1)
			}
			if filled[id] {
				return nil, fmt.Errorf("model.vocab: id %d used twice", id)
			}
			tokens[id], filled[id] = tok, true
		}
		if tj.Model.UnkToken != nil {
			unk = *tj.Model.UnkToken
		}
	case "Unigram":
		var pairs [][2]json.RawMessage
		if err := json.Unmarshal(tj.Model.Vocab, &pairs); err != nil || len(pairs) == 0 {
			return nil, fmt.Errorf("model.vocab: want a non-empty list of [token, score] pairs (%v)", err)
		}
		tokens = make([]string, len(pairs))
		scores = make([]float32, len(pairs))
		for id, p := range pairs {
			if err := json.Unmarshal(p[0], &tokens[id]); err != nil {
				return nil, fmt.Errorf("model.vocab[%d]: token: %w", id, err)
			}
			if err := json.Unmarshal(p[1], &scores[id]); err != nil {
				return nil, fmt.Errorf("model.vocab[%d]: score: %w", id, err)
			}
		}
		if tj.Model.UnkID != nil {
			if *tj.Model.UnkID < 0 || *tj.Model.UnkID >= len(tokens) {
				return nil, fmt.Errorf("model.unk_id %d out of range", *tj.Model.UnkID)
			}
			unk = tokens[*tj.Model.UnkID]
		}
	default:
		return nil, fmt.Errorf("model.type %q, want BPE or Unigram", tj.Model.Type)
	}

	types := make([]TokenType, len(tokens))
	for id, tok := range tokens {
		types[id] = classify(tok)
	}
	for _, at := range tj.AddedTokens {
		switch {
		case at.ID == len(tokens): // an added token beyond the model vocabulary
			tokens = append(tokens, at.Content)
			types = append(types, classify(at.Content))
			if scores != nil {
				scores = append(scores, 0)
			}
		case at.ID < 0 || at.ID > len(tokens):
			return nil, fmt.Errorf("added token %q: id %d leaves a gap after %d tokens", at.Content, at.ID, len(tokens))
		case tokens[at.ID] != at.Content:
			return nil, fmt.Errorf("added token %q: id %d is %q in model.vocab", at.Content, at.ID, tokens[at.ID])
		}
		if at.Special {
			types[at.ID] = TokenControl
		} else if types[at.ID] == TokenNormal {
			types[at.ID] = TokenUserDefined
		}
	}
	if scores == nil {
		scores = make([]float32, len(tokens))
		for id := range scores {
			scores[id] = -float32(id)
		}
	}
	v := &Vocab{Tokens: tokens, Scores: scores, Types: types}
	if err := v.setSpecials(unk); err != nil {
		return nil, err
	}
	if err := v.validate(); err != nil {
		return nil, err
	}
	return v, nil
}
