// Package streamtest has model streams for tests of the stages that wrap one.
package streamtest

import (
	"io"

	"github.com/sluice-llm/sluice/models"
)

// AtHand is an ended stream whose Buffered answers At (models.Buffered), for the stages'
// pass-through tests.
type AtHand struct{ At bool }

func (AtHand) Recv() (models.Chunk, error) { return models.Chunk{}, io.EOF }
func (AtHand) Usage() models.Usage         { return models.Usage{} }
func (AtHand) Close() error                { return nil }
func (s AtHand) Buffered() bool            { return s.At }
