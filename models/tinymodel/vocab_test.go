package tinymodel

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// synthTokens is a small Llama-2 shaped vocabulary: <unk>, <s>, </s>, 256 byte tokens,
// then words, whitespace-only pieces and a few multi-byte ones.
func synthTokens() []string {
	toks := []string{"<unk>", "<s>", "</s>"}
	for b := range 256 {
		toks = append(toks, fmt.Sprintf("<0x%02X>", b))
	}
	toks = append(toks, "▁▁", "▁t", "er", "in", "▁a", "en", "on", "▁th", "es", "▁", "\t", "\n")
	for _, w := range strings.Fields("the of and to is was for as with by he at from his it an are were this be which or had also not but first one their has new other after who its") {
		toks = append(toks, "▁"+w, w)
	}
	return append(toks, "é", "▁Hello", "▁world", "世界", "!", ".", ",", "\x1c", "\u200b", "▁\r")
}

func synthVocab(t *testing.T) *Vocab {
	t.Helper()
	v, err := NewVocab(synthTokens())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestNewVocab(t *testing.T) {
	v := synthVocab(t)
	if v.UNK != 0 || v.BOS != 1 || v.EOS != 2 {
		t.Fatalf("specials unk %d bos %d eos %d", v.UNK, v.BOS, v.EOS)
	}
	tests := []struct {
		id         int
		tok        string
		typ        TokenType
		suppressed bool
	}{
		{0, "<unk>", TokenUnknown, true},
		{1, "<s>", TokenControl, true},
		{2, "</s>", TokenControl, true},
		{3, "<0x00>", TokenByte, true},
		{3 + 0x41, "<0x41>", TokenByte, true},
		{258, "<0xFF>", TokenByte, true},
		{259, "▁▁", TokenNormal, true},
		{260, "▁t", TokenNormal, false},
		{268, "▁", TokenNormal, true},
		{269, "\t", TokenNormal, true},
		{270, "\n", TokenNormal, true},
		{271, "▁the", TokenNormal, false},
		{272, "the", TokenNormal, false},
		{len(synthTokens()) - 1, "▁\r", TokenNormal, true},
		{len(synthTokens()) - 2, "\u200b", TokenNormal, true},
		{len(synthTokens()) - 3, "\x1c", TokenNormal, true},
		{len(synthTokens()) - 4, ",", TokenNormal, false},
	}
	for _, tc := range tests {
		if v.Tokens[tc.id] != tc.tok || v.Types[tc.id] != tc.typ || v.Scores[tc.id] != -float32(tc.id) {
			t.Errorf("token %d: %q type %d score %v, want %q type %d score %d",
				tc.id, v.Tokens[tc.id], v.Types[tc.id], v.Scores[tc.id], tc.tok, tc.typ, -tc.id)
		}
		if got := v.Suppressed(tc.id); got != tc.suppressed {
			t.Errorf("Suppressed(%d %q) = %v", tc.id, tc.tok, got)
		}
	}
	if v.Suppressed(-1) || v.Suppressed(len(v.Tokens)) {
		t.Error("Suppressed is true out of range")
	}
}

func TestNewVocabErrors(t *testing.T) {
	tests := []struct {
		name   string
		tokens []string
		want   string
	}{
		{"empty", nil, "no <unk> token"},
		{"no bos", []string{"<unk>", "x", "</s>"}, "no <s> token"},
		{"no eos", []string{"<unk>", "<s>", "x"}, "no </s> token"},
		{"duplicate", []string{"<unk>", "<s>", "</s>", "a", "a"}, `token "a" has ids 3 and 4`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewVocab(tc.tokens)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tinymodel: new vocab: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

// bpeJSON renders tokens as a Llama-2 style tokenizer.json.
func bpeJSON(tokens []string, merges any, added string) string {
	ids := map[string]int{}
	for id, tok := range tokens {
		ids[tok] = id
	}
	vocab, _ := json.Marshal(ids)
	m, _ := json.Marshal(merges)
	if added == "" {
		added = `[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true},{"id":2,"content":"</s>","special":true}]`
	}
	return fmt.Sprintf(`{"version":"1.0","added_tokens":%s,
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"}]},
"pre_tokenizer":null,
"decoder":{"type":"Sequence","decoders":[{"type":"ByteFallback"},{"type":"Fuse"}]},
"model":{"type":"BPE","unk_token":"<unk>","byte_fallback":true,"vocab":%s,"merges":%s}}`, added, vocab, m)
}

func writeTemp(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadVocab(t *testing.T) {
	toks := synthTokens()
	want := synthVocab(t)
	withExtra := append(append([]string{}, toks...), "<|extra|>", "<tool>")
	tests := []struct {
		name    string
		json    string
		check   func(t *testing.T, v *Vocab)
		wantLen int
	}{
		{"bpe with string merges", bpeJSON(toks, []string{"▁ t", "e r"}, ""), func(t *testing.T, v *Vocab) {
			if !reflect.DeepEqual(v, want) {
				t.Error("vocab differs from NewVocab of the same tokens")
			}
		}, len(toks)},
		{"bpe with pair merges", bpeJSON(toks, [][2]string{{"▁", "t"}}, ""), nil, len(toks)},
		{"bpe without merges or added tokens", bpeJSON(toks, nil, "[]"), nil, len(toks)},
		{"added tokens beyond the vocab", bpeJSON(toks, nil,
			fmt.Sprintf(`[{"id":1,"content":"<s>","special":true},{"id":%d,"content":"<|extra|>","special":true},{"id":%d,"content":"<tool>","special":false}]`, len(toks), len(toks)+1)),
			func(t *testing.T, v *Vocab) {
				n := len(toks)
				if !reflect.DeepEqual(v.Tokens, withExtra) || v.Types[n] != TokenControl || v.Types[n+1] != TokenUserDefined || v.Scores[n+1] != -float32(n+1) {
					t.Errorf("added tokens: %q types %v", v.Tokens[n:], v.Types[n:])
				}
			}, len(toks) + 2},
		{"unigram with scores", `{"model":{"type":"Unigram","unk_id":0,"vocab":[["<unk>",0],["<s>",0],["</s>",0],["<0x0A>",0],["▁hi",-1.5],["x",-7.25]]}}`,
			func(t *testing.T, v *Vocab) {
				if !reflect.DeepEqual(v.Scores, []float32{0, 0, 0, 0, -1.5, -7.25}) ||
					!reflect.DeepEqual(v.Types, []TokenType{2, 3, 3, 6, 1, 1}) {
					t.Errorf("scores %v types %v", v.Scores, v.Types)
				}
			}, 6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := LoadVocab(writeTemp(t, tc.json))
			if err != nil {
				t.Fatal(err)
			}
			if len(v.Tokens) != tc.wantLen || v.UNK != 0 || v.BOS != 1 || v.EOS != 2 {
				t.Fatalf("%d tokens, unk %d bos %d eos %d", len(v.Tokens), v.UNK, v.BOS, v.EOS)
			}
			if tc.check != nil {
				tc.check(t, v)
			}
		})
	}
}

func TestLoadVocabErrors(t *testing.T) {
	toks := synthTokens()
	gap := bpeJSON(toks, nil, "[]")
	gap = strings.Replace(gap, `"▁Hello":`+fmt.Sprint(indexOf(toks, "▁Hello")), `"▁Hello":99999`, 1)
	dupID := strings.Replace(bpeJSON(toks, nil, "[]"), `"▁Hello":`+fmt.Sprint(indexOf(toks, "▁Hello")), `"▁Hello":0`, 1)
	tests := []struct {
		name string
		json string // "" means: the file does not exist
		want string
	}{
		{"missing file", "", "no such file"},
		{"not json", "tokenizer", "not a tokenizer.json"},
		{"no model", `{"version":"1.0"}`, "no model section"},
		{"byte level", `{"pre_tokenizer":{"type":"ByteLevel"},"model":{"type":"BPE","vocab":{"a":0}}}`, "byte-level BPE"},
		{"wordpiece", `{"model":{"type":"WordPiece","vocab":{"a":0}}}`, `model.type "WordPiece"`},
		{"vocab not an object", `{"model":{"type":"BPE","vocab":[1,2]}}`, "want a non-empty object"},
		{"empty vocab", `{"model":{"type":"BPE","vocab":{}}}`, "want a non-empty object"},
		{"id out of range", gap, "has id 99999"},
		{"id used twice", dupID, "used twice"},
		{"no bos", `{"model":{"type":"BPE","vocab":{"<unk>":0,"a":1,"</s>":2}}}`, "no <s> token"},
		{"bad unk_token", `{"model":{"type":"BPE","unk_token":"<oov>","vocab":{"<unk>":0,"<s>":1,"</s>":2}}}`, "no <oov> token"},
		{"added token mismatch", bpeJSON(toks, nil, `[{"id":1,"content":"<bos>","special":true}]`), `id 1 is "<s>"`},
		{"added token gap", bpeJSON(toks, nil, `[{"id":9999,"content":"<x>","special":true}]`), "leaves a gap"},
		{"unigram bad pair", `{"model":{"type":"Unigram","vocab":[["<unk>","zero"]]}}`, "model.vocab[0]: score"},
		{"unigram bad unk_id", `{"model":{"type":"Unigram","unk_id":5,"vocab":[["<unk>",0]]}}`, "unk_id 5 out of range"},
		{"unigram duplicate token", `{"model":{"type":"Unigram","vocab":[["<unk>",0],["<s>",0],["</s>",0],["<s>",0]]}}`, `token "<s>" has ids 1 and 3`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.json")
			if tc.json != "" {
				path = writeTemp(t, tc.json)
			}
			_, err := LoadVocab(path)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tinymodel: load vocab") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func indexOf(toks []string, s string) int {
	for i, t := range toks {
		if t == s {
			return i
		}
	}
	return -1
}
