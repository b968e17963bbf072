package tinymodel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/sluice-llm/sluice/models/gguf"
)

// Shape is the architecture of a real model: GenerateShape writes a GGUF with exactly
// these dimensions and random quantized weights, so an engine serving it needs the
// same memory, KV cache and time per token as it does for the real model.
type Shape struct {
	Name     string // e.g. "llama-3.1-8b"
	Arch     string // GGUF architecture: llama or qwen2
	Dim      int    // embedding length
	Layers   int    // transformer blocks
	Heads    int    // query heads
	KVHeads  int    // key/value heads (grouped-query attention)
	FF       int    // feed-forward length
	Vocab    int    // vocabulary size (the file's token count)
	Context  int    // training context length
	RopeBase float32
	RMSEps   float32
	Tied     bool // the output projection is the token embedding (no output.weight)
	QKVBias  bool // attention q/k/v carry biases (Qwen2)
}

// HeadDim is the width of one attention head.
func (s Shape) HeadDim() int { return s.Dim / s.Heads }

// Params is the number of weights of the shape.
func (s Shape) Params() int64 {
	d, ff, v, hd := int64(s.Dim), int64(s.FF), int64(s.Vocab), int64(s.HeadDim())
	q, kv := int64(s.Heads)*hd, int64(s.KVHeads)*hd
	block := d*q + 2*d*kv + q*d + 3*d*ff + 2*d
	if s.QKVBias {
		block += q + 2*kv
	}
	n := int64(s.Layers)*block + d*v + d
	if !s.Tied {
		n += d * v
	}
	return n
}

// Shapes lists the real-model shapes GenerateShape knows, smallest first. Their numbers
// are those of the models' published configs (config.json).
func Shapes() []Shape {
	return []Shape{
		{Name: "qwen2.5-0.5b", Arch: "qwen2", Dim: 896, Layers: 24, Heads: 14, KVHeads: 2, FF: 4864, Vocab: 151936,
			Context: 32768, RopeBase: 1e6, RMSEps: 1e-6, Tied: true, QKVBias: true},
		{Name: "llama-3.2-1b", Arch: "llama", Dim: 2048, Layers: 16, Heads: 32, KVHeads: 8, FF: 8192, Vocab: 128256,
			Context: 131072, RopeBase: 5e5, RMSEps: 1e-5, Tied: true},
		{Name: "qwen2.5-7b", Arch: "qwen2", Dim: 3584, Layers: 28, Heads: 28, KVHeads: 4, FF: 18944, Vocab: 152064,
			Context: 32768, RopeBase: 1e6, RMSEps: 1e-6, QKVBias: true},
		{Name: "llama-3.1-8b", Arch: "llama", Dim: 4096, Layers: 32, Heads: 32, KVHeads: 8, FF: 14336, Vocab: 128256,
			Context: 131072, RopeBase: 5e5, RMSEps: 1e-5},
		{Name: "llama-3.1-70b", Arch: "llama", Dim: 8192, Layers: 80, Heads: 64, KVHeads: 8, FF: 28672, Vocab: 128256,
			Context: 131072, RopeBase: 5e5, RMSEps: 1e-5},
	}
}

// ShapeNamed returns the shape called name.
func ShapeNamed(name string) (Shape, error) {
	var names []string
	for _, s := range Shapes() {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Shape{}, fmt.Errorf("unknown shape %q (known: %s)", name, strings.Join(names, ", "))
}

// Quantizations GenerateShape writes: the block types of llama.cpp's Q8_0 and Q4_0
// files (general.file_type 7 and 2).
const (
	QuantQ8_0 = "q8_0"
	QuantQ4_0 = "q4_0"
)

// Extend returns v padded with unused tokens ("<unused_N>", type unused) to n tokens,
// so a model gets the vocabulary size of the real one while keeping v's real tokens.
// The padding is never sampled (Suppressed) and never matches input text.
func (v *Vocab) Extend(n int) (*Vocab, error) {
	if n < len(v.Tokens) {
		return nil, fmt.Errorf("tinymodel: extend vocab to %d tokens: it already has %d", n, len(v.Tokens))
	}
	out := &Vocab{BOS: v.BOS, EOS: v.EOS, UNK: v.UNK,
		Tokens: make([]string, n), Scores: make([]float32, n), Types: make([]TokenType, n)}
	copy(out.Tokens, v.Tokens)
	copy(out.Scores, v.Scores)
	copy(out.Types, v.Types)
	for i := len(v.Tokens); i < n; i++ {
		out.Tokens[i] = fmt.Sprintf("<unused_%d>", i)
		out.Scores[i] = -float32(i)
		out.Types[i] = TokenUnused
	}
	return out, nil
}

// GenerateShape writes a model of shape s with vocab's tokenizer (padded to the shape's
// vocabulary size) and random weights quantized as quant (QuantQ8_0 or QuantQ4_0) to w.
// It streams the weights row by row from a fast generator, so an 8B model is written
// at disk speed in a few seconds, and the same inputs always give the same bytes.
//
// The weights follow the tiny model's recipe (see the package doc) where a quantized
// file allows it: channel 0 of the residual stream is a constant no block writes to,
// and tokens that would produce invalid UTF-8 or padding get strongly negative logits
// through it. Every matrix is quant's type except an untied output projection, which
// is Q8_0 in both (llama.cpp's Q4_0 files keep it at Q6_K, which the writer lacks: the
// Q4_0 file is about 0.1 GB larger for an 8B shape).
func GenerateShape(w io.Writer, vocab *Vocab, s Shape, quant string, seed uint64) error {
	g, err := ShapeWriter(vocab, s, quant, seed)
	if err != nil {
		return err
	}
	if _, err := g.WriteTo(w); err != nil {
		return fmt.Errorf("tinymodel: generate shape %s: %w", s.Name, err)
	}
	return nil
}

// ShapeWriter lays out the model GenerateShape writes; its weights are produced only
// when it is written (WriteHeader writes the header alone).
func ShapeWriter(vocab *Vocab, s Shape, quant string, seed uint64) (*gguf.Writer, error) {
	if vocab == nil {
		return nil, errors.New("tinymodel: generate shape: nil vocab")
	}
	if err := vocab.validate(); err != nil {
		return nil, fmt.Errorf("tinymodel: generate shape: vocab: %w", err)
	}
	var typ gguf.Type
	var fileType uint32
	switch quant {
	case QuantQ8_0:
		typ, fileType = gguf.TypeQ8_0, 7
	case QuantQ4_0:
		typ, fileType = gguf.TypeQ4_0, 2
	default:
		return nil, fmt.Errorf("tinymodel: generate shape: quantization %q, want %s or %s", quant, QuantQ8_0, QuantQ4_0)
	}
	if s.Dim%gguf.QuantBlock != 0 || s.FF%gguf.QuantBlock != 0 || s.Heads <= 0 || s.KVHeads <= 0 ||
		s.Dim%s.Heads != 0 || s.Heads%s.KVHeads != 0 || s.Layers <= 0 {
		return nil, fmt.Errorf("tinymodel: generate shape %s: inconsistent dimensions", s.Name)
	}
	v, err := vocab.Extend(s.Vocab)
	if err != nil {
		return nil, fmt.Errorf("tinymodel: generate shape %s: %w", s.Name, err)
	}
	return buildShape(v, s, typ, fileType, seed), nil
}

// Weight scales of the generated shapes.
const (
	shapeSuppress = 100 // a suppressed token's logit is minus this times the constant channel
)

func buildShape(v *Vocab, s Shape, typ gguf.Type, fileType uint32, seed uint64) *gguf.Writer {
	g := gguf.NewWriter()
	a := s.Arch
	hd := s.HeadDim()
	g.AddString("general.architecture", a)
	g.AddString("general.name", "sluice-shape-"+s.Name)
	g.AddUint32("general.file_type", fileType)
	g.AddUint32(gguf.KeyAlignment, gguf.DefaultAlignment)
	g.AddUint32(a+".vocab_size", uint32(s.Vocab))
	g.AddUint32(a+".context_length", uint32(s.Context))
	g.AddUint32(a+".embedding_length", uint32(s.Dim))
	g.AddUint32(a+".block_count", uint32(s.Layers))
	g.AddUint32(a+".feed_forward_length", uint32(s.FF))
	g.AddUint32(a+".attention.head_count", uint32(s.Heads))
	g.AddUint32(a+".attention.head_count_kv", uint32(s.KVHeads))
	g.AddFloat32(a+".attention.layer_norm_rms_epsilon", s.RMSEps)
	g.AddUint32(a+".rope.dimension_count", uint32(hd))
	g.AddFloat32(a+".rope.freq_base", s.RopeBase)

	types := make([]int32, len(v.Types))
	for i, t := range v.Types {
		types[i] = int32(t)
	}
	g.AddString("tokenizer.ggml.model", "llama")
	g.AddStrings("tokenizer.ggml.tokens", v.Tokens)
	g.AddFloat32s("tokenizer.ggml.scores", v.Scores)
	g.AddInt32s("tokenizer.ggml.token_type", types)
	g.AddUint32("tokenizer.ggml.bos_token_id", v.BOS)
	g.AddUint32("tokenizer.ggml.eos_token_id", v.EOS)
	g.AddUint32("tokenizer.ggml.unknown_token_id", v.UNK)
	g.AddBool("tokenizer.ggml.add_bos_token", true)
	g.AddBool("tokenizer.ggml.add_eos_token", false)
	g.AddString("tokenizer.chat_template", ChatTemplate)

	dim, ff, nv := uint64(s.Dim), uint64(s.FF), uint64(s.Vocab)
	q, kv := uint64(s.Heads*hd), uint64(s.KVHeads*hd)
	matrix := func(name string, in, out uint64, zeroRow0 bool) {
		qz := newQuantizer(typ, seed, name, 1/math.Sqrt(float64(in)))
		g.AddQuantTensor(name, []uint64{in, out}, typ, func(row uint64, dst []byte) {
			if zeroRow0 && row == 0 { // keep the constant channel constant: nothing writes to it
				qz.zero(dst)
				return
			}
			qz.random(dst)
		})
	}
	vector := func(name string, n uint64, val float32) {
		g.AddTensorFunc(name, []uint64{n}, gguf.TypeF32, func(dst []float32) {
			for i := range dst {
				dst[i] = val
			}
		})
	}

	// The token embedding: channel 0 is the constant channel (the first block carries
	// only it); a tied model also reads its logits from here, so its suppressed tokens
	// get the constant channel negated and nothing else.
	embStd := 1.0
	if s.Tied {
		embStd = logitStd / math.Sqrt(float64(s.Dim))
	}
	emb := newQuantizer(typ, seed, "token_embd.weight", embStd)
	g.AddQuantTensor("token_embd.weight", []uint64{dim, nv}, typ, func(row uint64, dst []byte) {
		bb := typ.BlockBytes()
		if s.Tied && v.Suppressed(int(row)) {
			emb.zero(dst)
			emb.first(dst[:bb], -biasValue)
			return
		}
		emb.random(dst[bb:])
		emb.first(dst[:bb], biasValue)
	})
	for b := range s.Layers {
		p := fmt.Sprintf("blk.%d.", b)
		vector(p+"attn_norm.weight", dim, 1)
		matrix(p+"attn_q.weight", dim, q, false)
		matrix(p+"attn_k.weight", dim, kv, false)
		matrix(p+"attn_v.weight", dim, kv, false)
		if s.QKVBias {
			vector(p+"attn_q.bias", q, 0)
			vector(p+"attn_k.bias", kv, 0)
			vector(p+"attn_v.bias", kv, 0)
		}
		matrix(p+"attn_output.weight", q, dim, true)
		vector(p+"ffn_norm.weight", dim, 1)
		matrix(p+"ffn_gate.weight", dim, ff, false)
		matrix(p+"ffn_up.weight", dim, ff, false)
		matrix(p+"ffn_down.weight", ff, dim, true)
	}
	vector("output_norm.weight", dim, 1)
	if !s.Tied {
		out := newQuantizer(gguf.TypeQ8_0, seed, "output.weight", logitStd/math.Sqrt(float64(s.Dim-1)))
		g.AddQuantTensor("output.weight", []uint64{dim, nv}, gguf.TypeQ8_0, func(row uint64, dst []byte) {
			bb := gguf.TypeQ8_0.BlockBytes()
			if v.Suppressed(int(row)) {
				out.first(dst[:bb], -shapeSuppress) // the rest stays zero
				return
			}
			out.zero(dst[:bb])
			out.random(dst[bb:])
		})
	}
	return g
}

// quantizer writes Q8_0 or Q4_0 blocks of one tensor: random values of a standard
// deviation, zeros, or a block holding one value in its first element. Its random
// stream is keyed by the seed and the tensor name, like the tiny model's.
type quantizer struct {
	typ   gguf.Type
	rng   *rand.PCG
	scale [2]byte // F16 block scale giving the standard deviation
}

// Standard deviations of uniformly random Q8_0 quants (int8: sqrt((256²-1)/12)) and
// Q4_0 quants (q-8: sqrt((16²-1)/12)).
const (
	q8Std = 73.90027
	q4Std = 4.609772
)

func newQuantizer(typ gguf.Type, seed uint64, name string, std float64) *quantizer {
	qz := &quantizer{typ: typ, rng: rand.NewPCG(seed, nameHash(name))}
	unit := q8Std
	if typ == gguf.TypeQ4_0 {
		unit = q4Std
	}
	binary.LittleEndian.PutUint16(qz.scale[:], gguf.Float16(float32(std/unit)))
	return qz
}

func nameHash(name string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return h
}

// random fills whole blocks with random quants at the tensor's scale.
func (qz *quantizer) random(dst []byte) {
	bb := qz.typ.BlockBytes()
	for off := 0; off+bb <= len(dst); off += bb {
		blk := dst[off : off+bb]
		blk[0], blk[1] = qz.scale[0], qz.scale[1]
		body := blk[2:]
		for len(body) >= 8 {
			binary.LittleEndian.PutUint64(body, qz.rng.Uint64())
			body = body[8:]
		}
	}
}

// zero fills whole blocks with zero values (scale 0; Q4_0 quants at their midpoint).
func (qz *quantizer) zero(dst []byte) {
	clear(dst)
	if qz.typ == gguf.TypeQ4_0 {
		bb := qz.typ.BlockBytes()
		for off := 0; off+bb <= len(dst); off += bb {
			for i := off + 2; i < off+bb; i++ {
				dst[i] = 0x88
			}
		}
	}
}

// first writes one block whose first value is val and whose other values are zero.
func (qz *quantizer) first(blk []byte, val float32) {
	qz.zero(blk)
	switch qz.typ {
	case gguf.TypeQ8_0:
		q := int8(127)
		if val < 0 {
			q = -127
		}
		binary.LittleEndian.PutUint16(blk, gguf.Float16(val/float32(q)))
		blk[2] = byte(q)
	case gguf.TypeQ4_0:
		// value = scale × (q − 8): q = 15 gives +7 steps, q = 0 gives −8.
		q, steps := byte(15), float32(7)
		if val < 0 {
			q, steps = 0, -8
		}
		binary.LittleEndian.PutUint16(blk, gguf.Float16(val/steps))
		blk[2] = blk[2]&0xf0 | q
	}
}
