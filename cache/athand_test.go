package cache

import (
	"testing"

	"github.com/sluice-llm/sluice/internal/streamtest"
	"github.com/sluice-llm/sluice/models"
)

// TestTeeBuffered: the tee passes the engine stream's answer on (models.Buffered).
func TestTeeBuffered(t *testing.T) {
	for _, at := range []bool{true, false} {
		if got := (&tee{inner: streamtest.AtHand{At: at}}).Buffered(); got != at {
			t.Errorf("tee over a stream at hand %v: Buffered() = %v", at, got)
		}
	}
	if (&tee{inner: struct{ models.Stream }{streamtest.AtHand{At: true}}}).Buffered() {
		t.Error("tee over a stream without Buffered reports a chunk at hand")
	}
}
