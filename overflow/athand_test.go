package overflow

import (
	"testing"

	"github.com/sluice-llm/sluice/internal/streamtest"
)

// TestRoutedBuffered: chunks held back are at hand; otherwise the target's stream
// answers, and nothing is at hand after its end.
func TestRoutedBuffered(t *testing.T) {
	x := &routed{Stream: streamtest.AtHand{At: false}, n: 2}
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
	x.Stream = streamtest.AtHand{At: true}
	if !x.Buffered() {
		t.Fatal("the target's chunk at hand not passed on")
	}
	x.eof = true
	if x.Buffered() {
		t.Fatal("at hand after the end")
	}
}
