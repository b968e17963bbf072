package tinymodel

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"

	"github.com/sluice-llm/sluice/models/gguf"
)

// Defaults for the zero Options.
const (
	DefaultDim     = 64
	DefaultLayers  = 2
	DefaultHeads   = 4
	DefaultContext = 2048
	DefaultName    = "sluice-tiny"
)

// Limits on Options, to keep sizes well inside what the servers and uint32 hold.
const (
	maxDim     = 1 << 16
	maxLayers  = 1 << 10
	maxFF      = 1 << 20
	maxContext = 1 << 24
)

// Shape of the weights (see the package doc).
const (
	biasValue     = 4    // channel 0 of every token embedding: the constant channel
	suppressBias  = 30   // minus this, times the constant channel, is a suppressed token's logit
	logitStd      = 3    // standard deviation of the other tokens' logits
	repeatPenalty = 3    // weight against a token's own embedding in its output row
	ropeFreqBase  = 1e4  // llama.rope.freq_base
	rmsEpsilon    = 1e-5 // llama.attention.layer_norm_rms_epsilon
	fileTypeF16   = 1    // general.file_type: LLAMA_FTYPE_MOSTLY_F16
	poolingMean   = 1    // llama.pooling_type: LLAMA_POOLING_TYPE_MEAN
)

// ChatTemplate is the ChatML Jinja template written as tokenizer.chat_template. It is
// the exact text of one of Ollama's known ChatML templates, so Ollama maps it to its
// own chatml template, and llama-server renders it with the same result.
const ChatTemplate = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

// Options shape the generated model. Zero fields take the defaults.
type Options struct {
	// Seed seeds the random weights (PCG); 0 is a valid seed like any other.
	Seed uint64
	// Dim is the embedding length (default 64).
	Dim int
	// Layers is the number of transformer blocks (default 2).
	Layers int
	// Heads is the number of attention heads, and of KV heads (default 4, or Dim/64
	// when that is more, so heads stay at most 64 wide). Dim/Heads must be even.
	Heads int
	// FF is the feed-forward length (default 2*Dim).
	FF int
	// Context is the training context length (default 2048).
	Context int
	// Embedding makes an embedding model: it adds llama.pooling_type = 1 (mean).
	Embedding bool
	// Name is general.name (default "sluice-tiny", or "sluice-tiny-embed").
	Name string
}

// withDefaults fills the zero fields and validates the result.
func (o Options) withDefaults() (Options, error) {
	if o.Dim == 0 {
		o.Dim = DefaultDim
	}
	if o.Layers == 0 {
		o.Layers = DefaultLayers
	}
	if o.Heads == 0 {
		o.Heads = max(DefaultHeads, o.Dim/64)
	}
	if o.FF == 0 {
		o.FF = 2 * o.Dim
	}
	if o.Context == 0 {
		o.Context = DefaultContext
	}
	if o.Name == "" {
		o.Name = DefaultName
		if o.Embedding {
			o.Name += "-embed"
		}
	}
	switch {
	case o.Dim < 2 || o.Dim > maxDim:
		return o, fmt.Errorf("dim %d, want 2 to %d", o.Dim, maxDim)
	case o.Layers < 1 || o.Layers > maxLayers:
		return o, fmt.Errorf("layers %d, want 1 to %d", o.Layers, maxLayers)
	case o.Heads < 1 || o.Dim%o.Heads != 0 || (o.Dim/o.Heads)%2 != 0:
		return o, fmt.Errorf("heads %d: dim %d must split into heads of even size", o.Heads, o.Dim)
	case o.FF < 1 || o.FF > maxFF:
		return o, fmt.Errorf("ff %d, want 1 to %d", o.FF, maxFF)
	case o.Context < 1 || o.Context > maxContext:
		return o, fmt.Errorf("context %d, want 1 to %d", o.Context, maxContext)
	}
	return o, nil
}

// Generate writes a llama-architecture GGUF model with vocab's tokenizer and random
// weights to w. The same vocab and opts always give the same bytes.
func Generate(w io.Writer, vocab *Vocab, opts Options) error {
	if vocab == nil {
		return errors.New("tinymodel: generate: nil vocab")
	}
	if err := vocab.validate(); err != nil {
		return fmt.Errorf("tinymodel: generate: vocab: %w", err)
	}
	o, err := opts.withDefaults()
	if err != nil {
		return fmt.Errorf("tinymodel: generate: %w", err)
	}
	if _, err := build(vocab, o).WriteTo(w); err != nil {
		return fmt.Errorf("tinymodel: generate: %w", err)
	}
	return nil
}

// build lays out the whole model; the weights are produced while writing.
func build(v *Vocab, o Options) *gguf.Writer {
	g := gguf.NewWriter()
	nVocab := uint64(len(v.Tokens))
	headDim := o.Dim / o.Heads

	g.AddString("general.architecture", "llama")
	g.AddString("general.name", o.Name)
	g.AddUint32("general.file_type", fileTypeF16)
	g.AddUint32("llama.vocab_size", uint32(nVocab))
	g.AddUint32("llama.context_length", uint32(o.Context))
	g.AddUint32("llama.embedding_length", uint32(o.Dim))
	g.AddUint32("llama.block_count", uint32(o.Layers))
	g.AddUint32("llama.feed_forward_length", uint32(o.FF))
	g.AddUint32("llama.attention.head_count", uint32(o.Heads))
	g.AddUint32("llama.attention.head_count_kv", uint32(o.Heads))
	g.AddFloat32("llama.attention.layer_norm_rms_epsilon", rmsEpsilon)
	g.AddUint32("llama.rope.dimension_count", uint32(headDim))
	g.AddFloat32("llama.rope.freq_base", ropeFreqBase)
	if o.Embedding {
		g.AddUint32("llama.pooling_type", poolingMean)
	}

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

	dim, ff := uint64(o.Dim), uint64(o.FF)
	matrix := func(name string, in, out uint64, zeroRow0 bool) {
		g.AddTensorFunc(name, []uint64{in, out}, gguf.TypeF16, func(dst []float32) {
			uniform(dst, stream(o.Seed, name), 1/math.Sqrt(float64(in)))
			if zeroRow0 { // keep the constant channel constant: nothing writes to it
				clear(dst[:in])
			}
		})
	}
	ones := func(name string) {
		g.AddTensorFunc(name, []uint64{dim}, gguf.TypeF32, func(dst []float32) {
			for i := range dst {
				dst[i] = 1
			}
		})
	}

	g.AddTensorFunc("token_embd.weight", []uint64{dim, nVocab}, gguf.TypeF16, func(dst []float32) {
		uniform(dst, stream(o.Seed, "token_embd.weight"), 1)
		for row := 0; row < len(dst); row += o.Dim {
			dst[row] = biasValue
		}
	})
	for b := range o.Layers {
		p := fmt.Sprintf("blk.%d.", b)
		ones(p + "attn_norm.weight")
		matrix(p+"attn_q.weight", dim, dim, false)
		matrix(p+"attn_k.weight", dim, dim, false)
		matrix(p+"attn_v.weight", dim, dim, false)
		matrix(p+"attn_output.weight", dim, dim, true)
		ones(p + "ffn_norm.weight")
		matrix(p+"ffn_gate.weight", dim, ff, false)
		matrix(p+"ffn_up.weight", dim, ff, false)
		matrix(p+"ffn_down.weight", ff, dim, true)
	}
	ones("output_norm.weight")
	g.AddTensorFunc("output.weight", []uint64{dim, nVocab}, gguf.TypeF16, func(dst []float32) {
		uniform(dst, stream(o.Seed, "output.weight"), logitStd/math.Sqrt(float64(o.Dim-1)))
		// Replay the embedding stream row by row: each token's own embedding.
		embd, emb := stream(o.Seed, "token_embd.weight"), make([]float32, o.Dim)
		for id := range v.Tokens {
			uniform(emb, embd, 1)
			row := dst[id*o.Dim : (id+1)*o.Dim]
			if v.Suppressed(id) {
				clear(row)
				row[0] = -suppressBias
				continue
			}
			row[0] = 0
			antiRepeat(row[1:], emb[1:])
		}
	})
	return g
}

// antiRepeat subtracts repeatPenalty times the unit vector of emb from row. The
// residual stream still carries the embedding of the token just read, so this lowers
// that token's own logit by several units: a random model otherwise tends to repeat
// one token under greedy decoding, and Ollama aborts after 30 repeats.
func antiRepeat(row, emb []float32) {
	var norm float64
	for _, e := range emb {
		norm += float64(e) * float64(e)
	}
	if norm == 0 {
		return
	}
	scale := repeatPenalty / math.Sqrt(norm)
	for i, e := range emb {
		row[i] -= float32(float64(e) * scale)
	}
}

// Suppressed reports whether Generate gives token id a strongly negative logit: byte,
// control, unknown, unused and user-defined tokens, and normal tokens with nothing
// visible (only whitespace, control or format characters). The model never samples them. It is false for ids out of range.
func (v *Vocab) Suppressed(id int) bool {
	if id < 0 || id >= len(v.Tokens) || id >= len(v.Types) {
		return false
	}
	return v.Types[id] != TokenNormal || isBlank(v.Tokens[id])
}

// stream returns the random stream of one tensor: PCG keyed by the seed and the tensor
// name, so a tensor's values do not depend on the order tensors are written in.
func stream(seed uint64, name string) *rand.Rand {
	h := fnv.New64a()
	h.Write([]byte(name))
	return rand.New(rand.NewPCG(seed, h.Sum64()))
}

// uniform fills dst with the next values of rng, uniform in [-a, a) with standard
// deviation std.
func uniform(dst []float32, rng *rand.Rand, std float64) {
	a := 2 * std * math.Sqrt(3)
	for i := range dst {
		dst[i] = float32((rng.Float64() - 0.5) * a)
	}
}
