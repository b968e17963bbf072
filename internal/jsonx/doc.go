// Package jsonx reads and edits JSON documents without decoding them: it finds the value
// of a top-level key and splices a new value in, leaving every other byte untouched. The
// gateway's hot path uses it to forward a client's body or an engine's answer with only
// the fields it must change. Inputs must already be validated JSON (fastjson does that).
package jsonx
