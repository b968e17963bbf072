package ollama

import (
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// TestStreamBuffered: a chunk the producer has sent (or the one Open waited for) is at
// hand; an empty channel, the end and a closed stream are not.
func TestStreamBuffered(t *testing.T) {
	s := &stream{ch: make(chan models.Chunk, 2)}
	if s.Buffered() {
		t.Fatal("at hand with nothing received")
	}
	s.ch <- models.Chunk{Text: "a"}
	if !s.Buffered() {
		t.Fatal("a sent chunk is not at hand")
	}
	<-s.ch
	s.peek = &models.Chunk{Text: "b"}
	if !s.Buffered() {
		t.Fatal("the chunk Open waited for is not at hand")
	}
	s.eof = true
	if s.Buffered() {
		t.Fatal("at hand after the end")
	}
	s.eof = false
	s.closed.Store(true)
	if s.Buffered() {
		t.Fatal("at hand after Close")
	}
}
