package compress

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-llm/sluice/internal/enginetest"
)

func TestTokenizerLlama2(t *testing.T) {
	tk, err := LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	// Ids checked against llama-server's /tokenize for the same vocabulary.
	ids, err := tk.Encode("Hello world")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{22557, 1526}
	if len(ids) != len(want) || ids[0] != want[0] || ids[1] != want[1] {
		t.Fatalf("Encode(Hello world) = %v, want %v", ids, want)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// llama-server's /tokenize gives [415 2936 9060 285 1142 461 10575 754 272 17898 3914].
			if n := tk.CountTokens("The quick brown fox jumps over the lazy dog"); n != 11 {
				t.Errorf("CountTokens = %d, want 11", n)
			}
		}()
	}
	wg.Wait()
}

func TestLoadTokenizerErrors(t *testing.T) {
	if _, err := LoadTokenizer(t.TempDir() + "/missing.json"); err == nil {
		t.Fatal("missing file: want error")
	}
}

func TestCountTokensInPieces(t *testing.T) {
	tk, err := LoadTokenizer(enginetest.VocabPath(t))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat(ragContext+"\n\n", 2) + "Done."
	ids, err := tk.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.CountTokens(text); got != len(ids) {
		t.Fatalf("CountTokens in pieces = %d, whole text = %d", got, len(ids))
	}
}

func TestNewCounterFallsBack(t *testing.T) {
	dir := t.TempDir()
	// A Llama-3-style pre-tokenizer: its split pattern uses a look-ahead (?!\S) that Go's
	// regexp cannot compile, which makes the library panic.
	bad := `{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],"normalizer":null,` +
		`"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"(?i:'s|'t)|\\p{L}+|\\s+(?!\\S)|\\s+"},"behavior":"Isolated","invert":false},` +
		`{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]},` +
		`"post_processor":null,"decoder":null,"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,` +
		`"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}`
	path := dir + "/tokenizer.json"
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := NewCounter(path)
	if err == nil {
		t.Fatalf("a tokenizer the library cannot run loaded without error")
	}
	t.Logf("fell back: %v", err)
	if _, ok := c.(Estimator); !ok || c.CountTokens("Hello world") != EstimateTokens("Hello world") {
		t.Fatalf("fallback counter %T", c)
	}
	if c, err := NewCounter(dir + "/missing.json"); err == nil || c == nil {
		t.Fatalf("missing file: %v %v", c, err)
	}
}
