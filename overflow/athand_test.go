package overflow

import (
	"io"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

type atHandStream struct{ at bool }

func (atHandStream) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (atHandStream) Usage() models.Usage         { return models.Usage{} }
func (atHandStream) Close() error                { return nil }
func (s atHandStream) Buffered() bool            { return s.at }

// TestRoutedBuffered: chunks held back are at hand; otherwise the target's stream
// answers, and nothing is at hand after its end.
func TestRoutedBuffered(t *testing.T) {
	x := &routed{Stream: atHandStream{at: false}, n: 2}
	for i := 0; i < 2; i++ {
		if !x.Buffered() {
			t.Fatalf("held-back chunk %d not at hand", i)
		}
		if _, err := x.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	if x.Buffered() {
		t.Fatal("held-back chunks read: the target's stream has none at hand, yet reported")
	}
	x.Stream = atHandStream{at: true}
	if !x.Buffered() {
		t.Fatal("the target's chunk at hand not passed on")
	}
	x.eof = true
	if x.Buffered() {
		t.Fatal("at hand after the end")
	}
}
