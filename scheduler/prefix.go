package scheduler

import (
	"github.com/cespare/xxhash/v2"
	"github.com/sluice-llm/sluice/models"
)

// BlockBytes is the size of a prompt block for prefix matching: about 64 tokens of
// English text. Engines cache KV by token, sluice matches by byte block: a shared prefix
// of n blocks means the engine can reuse at least about n*64 tokens.
const BlockBytes = 256

// TokensPerBlock is the tokens a block stands for in prefill estimates.
const TokensPerBlock = BlockBytes / 4

// PrefixBlocks hashes the prompt a request sends, in fixed blocks, each hash chained to
// the one before (so equal hashes at position i mean equal prompts up to block i). Only
// whole blocks count: a tail shorter than a block is not cached reliably anyway.
func PrefixBlocks(r *models.Request, dst []uint64) []uint64 {
	var d xxhash.Digest
	var prev uint64
	var buf [BlockBytes]byte
	n := 0
	flush := func() {
		d.Reset()
		var p [8]byte
		for i := range 8 {
			p[i] = byte(prev >> (8 * i))
		}
		_, _ = d.Write(p[:])
		_, _ = d.Write(buf[:])
		prev = d.Sum64()
		dst = append(dst, prev)
		n = 0
	}
	feed := func(s string) {
		for len(s) > 0 {
			c := copy(buf[n:], s)
			n += c
			s = s[c:]
			if n == BlockBytes {
				flush()
			}
		}
	}
	switch r.Kind {
	case models.KindChat:
		for i := range r.Messages {
			feed(r.Messages[i].Role)
			feed("\x00")
			feed(r.Messages[i].Content)
			feed("\x01")
		}
	case models.KindCompletion:
		for _, p := range r.Prompt {
			feed(p)
			feed("\x01")
		}
	}
	return dst
}

// matchBlocks counts the leading blocks two prompts share.
func matchBlocks(a, b []uint64) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
