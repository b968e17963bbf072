package compress

import (
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
