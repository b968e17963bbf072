package models_test

import (
	"testing"

	"github.com/sluice-llm/sluice/internal/streamtest"
	"github.com/sluice-llm/sluice/models"
)

func TestAtHand(t *testing.T) {
	if !models.AtHand(streamtest.AtHand{At: true}) || models.AtHand(streamtest.AtHand{At: false}) {
		t.Fatal("AtHand does not pass Buffered's answer on")
	}
	var st models.Stream = struct{ models.Stream }{streamtest.AtHand{At: true}} // hides Buffered
	if models.AtHand(st) {
		t.Fatal("a stream without Buffered reported at hand")
	}
}
