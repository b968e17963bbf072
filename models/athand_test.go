package models_test

import (
	"io"
	"testing"

	"github.com/sluice-llm/sluice/models"
)

// atHand is a stream that gives a fixed answer to Buffered.
type atHand struct{ at bool }

func (atHand) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (atHand) Usage() models.Usage         { return models.Usage{} }
func (atHand) Close() error                { return nil }
func (s atHand) Buffered() bool            { return s.at }

func TestAtHand(t *testing.T) {
	if !models.AtHand(atHand{at: true}) || models.AtHand(atHand{at: false}) {
		t.Fatal("AtHand does not pass Buffered's answer on")
	}
	var st models.Stream = struct{ models.Stream }{atHand{at: true}} // hides Buffered
	if models.AtHand(st) {
		t.Fatal("a stream without Buffered reported at hand")
	}
}
