package cache

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

// TestTeeBuffered: the tee passes the engine stream's answer on (models.Buffered).
func TestTeeBuffered(t *testing.T) {
	for _, at := range []bool{true, false} {
		if got := (&tee{inner: atHandStream{at: at}}).Buffered(); got != at {
			t.Errorf("tee over a stream at hand %v: Buffered() = %v", at, got)
		}
	}
	if (&tee{inner: struct{ models.Stream }{atHandStream{at: true}}}).Buffered() {
		t.Error("tee over a stream without Buffered reports a chunk at hand")
	}
}
