// Package models is sluice's shared vocabulary: the request every stage passes along
// (Request, Message), what engines stream back (Chunk, Stream, Usage), where a request
// goes (Target), what a backend can take (Capacity) and the error categories that the
// gateway maps to HTTP status codes.
//
// It imports the standard library only, and no other sluice package imports it in a
// cycle: every stage takes and returns these types.
package models
