package cache

import (
	"encoding/binary"
	"errors"
	"math"
	"time"

	"github.com/sluice-llm/sluice/models"
)

// Key is the exact-match key of a request: the hash prefixes of its tenant and model,
// then 24 bytes of hash of its canonical form (tenant, model, kind, messages, tools,
// response format and every sampling parameter).
type Key [32]byte

// Scope identifies the semantic neighbourhood of a request: tenant, model, kind and the
// digest of everything but the last user turn (system prompt, earlier turns, tools,
// sampling). Only entries of the same scope may answer each other.
type Scope [16]byte

// Entry is one cached answer and what it answered.
type Entry struct {
	Key    Key
	Scope  Scope
	Tenant string
	Model  string
	Kind   models.Kind
	// Question is the last user turn (chat) or prompt (completion): what the semantic
	// index embeds and the guards compare.
	Question string
	// Vector is the question's embedding when an engine made it (EmbedderID says which),
	// so an index can be rebuilt without asking the engine again. Empty for the
	// built-in embedder, which recomputes it.
	Vector     []float32
	EmbedderID string

	Answer Answer
	// Region is where the answer was produced ("local", "eu", "us", ...; "" unknown): a
	// hit goes only to a key whose residency policy allows it, so an EU key is never
	// served an answer a US endpoint wrote.
	Region  string
	Usage   models.Usage // of the original answer: tokens and what it cost
	Created time.Time
	Expires time.Time
}

// Answer is a complete answer, whole (streamed answers are gathered).
type Answer struct {
	Role         string
	Text         string
	ToolCalls    []byte // JSON array of whole tool calls (non-streamed shape)
	FinishReason string
}

// Size is the approximate memory an entry takes, for the byte bound.
func (e *Entry) Size() int {
	return 160 + len(e.Tenant) + len(e.Model) + len(e.Question) + 4*len(e.Vector) + len(e.EmbedderID) + len(e.Region) +
		len(e.Answer.Role) + len(e.Answer.Text) + len(e.Answer.ToolCalls) + len(e.Answer.FinishReason)
}

// answerHash tells answers apart cheaply (the ambiguity guard: two close candidates with
// the same answer are not a conflict).
func (a *Answer) hash() uint64 {
	return hashStrings(a.Text, string(a.ToolCalls), a.FinishReason)
}

// entryVersion 2 added Region (version 1 entries decode with an unknown region).
const entryVersion = 2

var errCorrupt = errors.New("cache: corrupt entry")

// MarshalBinary encodes an entry for the persistent stores.
func (e *Entry) MarshalBinary() ([]byte, error) {
	return e.appendBinary(make([]byte, 0, e.Size()+64)), nil
}

func (e *Entry) appendBinary(b []byte) []byte {
	b = append(b, entryVersion)
	b = append(b, e.Key[:]...)
	b = append(b, e.Scope[:]...)
	b = appendStr(b, e.Tenant)
	b = appendStr(b, e.Model)
	b = append(b, byte(e.Kind))
	b = appendStr(b, e.Question)
	b = binary.AppendUvarint(b, uint64(len(e.Vector)))
	for _, f := range e.Vector {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(f))
	}
	b = appendStr(b, e.EmbedderID)
	b = appendStr(b, e.Answer.Role)
	b = appendStr(b, e.Answer.Text)
	b = appendStr(b, string(e.Answer.ToolCalls))
	b = appendStr(b, e.Answer.FinishReason)
	b = binary.AppendUvarint(b, uint64(e.Usage.PromptTokens))
	b = binary.AppendUvarint(b, uint64(e.Usage.CompletionTokens))
	b = binary.AppendUvarint(b, uint64(e.Usage.CachedTokens))
	var est byte
	if e.Usage.Estimated {
		est = 1
	}
	b = append(b, est)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Usage.Cost.Prompt))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(e.Usage.Cost.Completion))
	b = binary.AppendVarint(b, e.Created.UnixNano())
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	return appendStr(b, e.Region)
}

// UnmarshalBinary decodes what MarshalBinary wrote.
func (e *Entry) UnmarshalBinary(b []byte) error {
	d := decoder{b: b}
	v := d.byte()
	if v != 1 && v != entryVersion {
		return errCorrupt
	}
	d.fixed(e.Key[:])
	d.fixed(e.Scope[:])
	e.Tenant = d.str()
	e.Model = d.str()
	e.Kind = models.Kind(d.byte())
	e.Question = d.str()
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.b))/4 {
		e.Vector = make([]float32, n)
		for i := range e.Vector {
			e.Vector[i] = math.Float32frombits(d.u32())
		}
	} else if n > 0 {
		return errCorrupt
	}
	e.EmbedderID = d.str()
	e.Answer.Role = d.str()
	e.Answer.Text = d.str()
	if tc := d.str(); tc != "" {
		e.Answer.ToolCalls = []byte(tc)
	}
	e.Answer.FinishReason = d.str()
	e.Usage.PromptTokens = int(d.uvarint())
	e.Usage.CompletionTokens = int(d.uvarint())
	e.Usage.CachedTokens = int(d.uvarint())
	e.Usage.Estimated = d.byte() == 1
	e.Usage.Cost.Prompt = math.Float64frombits(d.u64())
	e.Usage.Cost.Completion = math.Float64frombits(d.u64())
	e.Created = time.Unix(0, d.varint())
	e.Expires = time.Unix(0, d.varint())
	e.Region = ""
	if v >= 2 {
		e.Region = d.str()
	}
	if d.bad || len(d.b) != 0 {
		return errCorrupt
	}
	return nil
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) fixed(dst []byte) {
	if len(d.b) < len(dst) {
		d.bad = true
		return
	}
	copy(dst, d.b)
	d.b = d.b[len(dst):]
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.bad = true
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}
