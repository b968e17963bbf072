package tinymodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// generated is a model written to disk and parsed back.
type generated struct {
	raw  []byte
	file *parser.GGUFFile
}

func generate(t *testing.T, v *Vocab, o Options) generated {
	t.Helper()
	var buf bytes.Buffer
	if err := Generate(&buf, v, o); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	path := filepath.Join(t.TempDir(), "model.gguf")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("ParseGGUFFile: %v", err)
	}
	return generated{raw: buf.Bytes(), file: f}
}

// tensor returns a tensor's info and its values decoded to float32.
func (g generated) tensor(t *testing.T, name string) (parser.GGUFTensorInfo, []float32) {
	t.Helper()
	info, ok := g.file.TensorInfos.Get(name)
	if !ok {
		t.Fatalf("tensor %s missing", name)
	}
	n := int(info.Elements())
	start := int(g.file.TensorDataStartOffset) + int(info.Offset)
	out := make([]float32, n)
	for i := range out {
		switch info.Type {
		case parser.GGMLTypeF32:
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(g.raw[start+4*i:]))
		case parser.GGMLTypeF16:
			out[i] = halfToFloat(binary.LittleEndian.Uint16(g.raw[start+2*i:]))
		default:
			t.Fatalf("tensor %s: type %v", name, info.Type)
		}
	}
	return info, out
}

// halfToFloat decodes finite float16 bits.
func halfToFloat(h uint16) float32 {
	sign := float32(1)
	if h&0x8000 != 0 {
		sign = -1
	}
	exp, mant := int(h>>10)&0x1f, float64(h&0x3ff)
	if exp == 0 {
		return sign * float32(math.Ldexp(mant, -24))
	}
	return sign * float32(math.Ldexp(1+mant/1024, exp-15))
}

func TestGenerate(t *testing.T) {
	v := synthVocab(t)
	tests := []struct {
		name                                string
		opts                                Options
		dim, layers, heads, ff, ctx, pooled uint64
		modelName                           string
	}{
		{"defaults", Options{}, 64, 2, 4, 128, 2048, 0, "sluice-tiny"},
		{"custom", Options{Seed: 7, Dim: 32, Layers: 3, Heads: 2, FF: 48, Context: 512, Name: "custom"}, 32, 3, 2, 48, 512, 0, "custom"},
		{"embedding", Options{Embedding: true}, 64, 2, 4, 128, 2048, 1, "sluice-tiny-embed"},
		{"wide heads default", Options{Dim: 256, Layers: 1}, 256, 1, 4, 512, 2048, 0, "sluice-tiny"},
		{"heads scale with dim", Options{Dim: 512, Layers: 1, Context: 8192}, 512, 1, 8, 1024, 8192, 0, "sluice-tiny"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := generate(t, v, tc.opts)
			f := g.file
			if f.Header.Version != parser.GGUFVersionV3 {
				t.Errorf("version %v", f.Header.Version)
			}
			a := f.Architecture()
			if a.Architecture != "llama" || a.EmbeddingLength != tc.dim || a.BlockCount != tc.layers ||
				a.AttentionHeadCount != tc.heads || a.AttentionHeadCountKV != tc.heads ||
				len(a.FeedForwardLength) == 0 || a.FeedForwardLength[0] != tc.ff ||
				a.MaximumContextLength != tc.ctx || a.RoPEDimensionCount != tc.dim/tc.heads ||
				a.VocabularyLength != uint64(len(v.Tokens)) || uint64(a.PoolingType) != tc.pooled {
				t.Errorf("architecture: %+v", a)
			}
			tok := f.Tokenizer()
			if tok.Model != "llama" || tok.TokensLength != uint64(len(v.Tokens)) ||
				tok.BOSTokenID != 1 || tok.EOSTokenID != 2 || tok.UnknownTokenID != 0 {
				t.Errorf("tokenizer: %+v", tok)
			}
			kvs := f.Header.MetadataKV
			strs := map[string]string{
				"general.architecture":    "llama",
				"general.name":            tc.modelName,
				"tokenizer.ggml.model":    "llama",
				"tokenizer.chat_template": ChatTemplate,
			}
			for k, want := range strs {
				if kv, ok := kvs.Get(k); !ok || kv.ValueType != parser.GGUFMetadataValueTypeString || kv.ValueString() != want {
					t.Errorf("%s = %v, want %q", k, kv.Value, want)
				}
			}
			if kv, ok := kvs.Get("tokenizer.ggml.add_bos_token"); !ok || kv.ValueType != parser.GGUFMetadataValueTypeBool || !kv.ValueBool() {
				t.Error("add_bos_token is not true")
			}
			if kv, ok := kvs.Get("tokenizer.ggml.token_type"); !ok || kv.ValueArray().ValuesInt32()[3] != int32(TokenByte) {
				t.Error("token_type missing or wrong")
			}
			if kv, ok := kvs.Get("tokenizer.ggml.scores"); !ok || kv.ValueArray().ValuesFloat32()[10] != -10 {
				t.Error("scores missing or wrong")
			}
			if _, ok := kvs.Get("llama.pooling_type"); ok != (tc.pooled != 0) {
				t.Errorf("pooling_type present = %v", ok)
			}
			if want := 3 + 9*int(tc.layers); len(f.TensorInfos) != want {
				t.Errorf("%d tensors, want %d", len(f.TensorInfos), want)
			}
			checkTensors(t, g, v, int(tc.dim), int(tc.ff))
		})
	}
}

// checkTensors checks shapes, types and the weight structure the servers rely on.
func checkTensors(t *testing.T, g generated, v *Vocab, dim, ff int) {
	t.Helper()
	nv := uint64(len(v.Tokens))
	shapes := []struct {
		name string
		dims []uint64
		typ  parser.GGMLType
	}{
		{"token_embd.weight", []uint64{uint64(dim), nv}, parser.GGMLTypeF16},
		{"output.weight", []uint64{uint64(dim), nv}, parser.GGMLTypeF16},
		{"output_norm.weight", []uint64{uint64(dim)}, parser.GGMLTypeF32},
		{"blk.0.attn_norm.weight", []uint64{uint64(dim)}, parser.GGMLTypeF32},
		{"blk.0.ffn_norm.weight", []uint64{uint64(dim)}, parser.GGMLTypeF32},
		{"blk.0.attn_q.weight", []uint64{uint64(dim), uint64(dim)}, parser.GGMLTypeF16},
		{"blk.0.attn_k.weight", []uint64{uint64(dim), uint64(dim)}, parser.GGMLTypeF16},
		{"blk.0.attn_v.weight", []uint64{uint64(dim), uint64(dim)}, parser.GGMLTypeF16},
		{"blk.0.attn_output.weight", []uint64{uint64(dim), uint64(dim)}, parser.GGMLTypeF16},
		{"blk.0.ffn_gate.weight", []uint64{uint64(dim), uint64(ff)}, parser.GGMLTypeF16},
		{"blk.0.ffn_up.weight", []uint64{uint64(dim), uint64(ff)}, parser.GGMLTypeF16},
		{"blk.0.ffn_down.weight", []uint64{uint64(ff), uint64(dim)}, parser.GGMLTypeF16},
	}
	for _, s := range shapes {
		info, ok := g.file.TensorInfos.Get(s.name)
		if !ok {
			t.Errorf("tensor %s missing", s.name)
			continue
		}
		if info.Type != s.typ || len(info.Dimensions) != len(s.dims) || info.Dimensions[0] != s.dims[0] ||
			(len(s.dims) > 1 && info.Dimensions[1] != s.dims[1]) {
			t.Errorf("tensor %s: %v %v, want %v %v", s.name, info.Type, info.Dimensions, s.typ, s.dims)
		}
	}

	_, embd := g.tensor(t, "token_embd.weight")
	_, out := g.tensor(t, "output.weight")
	for id := range v.Tokens {
		if embd[id*dim] != biasValue {
			t.Fatalf("token %d: embedding channel 0 = %v, want %v", id, embd[id*dim], float32(biasValue))
		}
		row := out[id*dim : (id+1)*dim]
		if v.Suppressed(id) {
			if row[0] != -suppressBias || !allZero(row[1:]) {
				t.Fatalf("suppressed token %d %q: output row %v", id, v.Tokens[id], row[:4])
			}
		} else if row[0] != 0 || allZero(row[1:]) {
			t.Fatalf("token %d %q: output row %v", id, v.Tokens[id], row[:4])
		}
	}
	// Each normal token's output row points away from its own embedding.
	var proj float64
	normal := 0
	for id := range v.Tokens {
		if v.Suppressed(id) {
			continue
		}
		e, row := embd[id*dim+1:(id+1)*dim], out[id*dim+1:(id+1)*dim]
		var dot, norm float64
		for i := range e {
			dot += float64(e[i]) * float64(row[i])
			norm += float64(e[i]) * float64(e[i])
		}
		proj += dot / math.Sqrt(norm)
		normal++
	}
	if mean := proj / float64(normal); math.Abs(mean+repeatPenalty) > 0.25 {
		t.Errorf("mean projection of output rows on their own embeddings %.3f, want about -%d", mean, repeatPenalty)
	}
	// Nothing writes to the constant channel, and the other weights are random.
	for _, name := range []string{"blk.0.attn_output.weight", "blk.0.ffn_down.weight"} {
		info, w := g.tensor(t, name)
		in := int(info.Dimensions[0])
		if !allZero(w[:in]) || allZero(w[in:2*in]) {
			t.Errorf("%s: output row 0 is not zero, or row 1 is", name)
		}
	}
	_, q := g.tensor(t, "blk.0.attn_q.weight")
	limit := float32(math.Sqrt(3) / math.Sqrt(float64(dim)) * 1.001)
	var sum float64
	for _, x := range q {
		if x < -limit || x > limit {
			t.Fatalf("attn_q value %v outside ±%v", x, limit)
		}
		sum += float64(x * x)
	}
	if std := math.Sqrt(sum / float64(len(q))); math.Abs(std-1/math.Sqrt(float64(dim))) > 0.2/math.Sqrt(float64(dim)) {
		t.Errorf("attn_q std %v, want about %v", std, 1/math.Sqrt(float64(dim)))
	}
	_, norm := g.tensor(t, "output_norm.weight")
	for _, x := range norm {
		if x != 1 {
			t.Fatalf("output_norm value %v, want 1", x)
		}
	}
}

func allZero(xs []float32) bool {
	for _, x := range xs {
		if x != 0 {
			return false
		}
	}
	return true
}

func TestGenerateDeterministic(t *testing.T) {
	v := synthVocab(t)
	sum := func(o Options) [32]byte {
		var buf bytes.Buffer
		if err := Generate(&buf, v, o); err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(buf.Bytes())
	}
	base := sum(Options{Seed: 1})
	tests := []struct {
		name string
		opts Options
		same bool
	}{
		{"same options", Options{Seed: 1}, true},
		{"explicit defaults", Options{Seed: 1, Dim: 64, Layers: 2, Heads: 4, FF: 128, Context: 2048, Name: DefaultName}, true},
		{"other seed", Options{Seed: 2}, false},
		{"seed zero", Options{}, false},
		{"other name", Options{Seed: 1, Name: "x"}, false},
		{"embedding", Options{Seed: 1, Embedding: true}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := sum(tc.opts) == base; got != tc.same {
				t.Errorf("identical = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	v := synthVocab(t)
	broken := *v
	broken.Scores = broken.Scores[:3]
	badBOS := *v
	badBOS.BOS = uint32(len(v.Tokens))
	tests := []struct {
		name  string
		vocab *Vocab
		opts  Options
		want  string
	}{
		{"nil vocab", nil, Options{}, "nil vocab"},
		{"short scores", &broken, Options{}, "but 3 scores"},
		{"bos out of range", &badBOS, Options{}, "out of range"},
		{"negative dim", v, Options{Dim: -1}, "dim -1"},
		{"dim too small", v, Options{Dim: 1, Heads: 1}, "dim 1"},
		{"heads do not divide", v, Options{Heads: 3}, "heads 3"},
		{"odd head size", v, Options{Dim: 12, Heads: 4}, "heads 4"},
		{"negative layers", v, Options{Layers: -2}, "layers -2"},
		{"huge ff", v, Options{FF: 1 << 21}, "ff 2097152"},
		{"negative context", v, Options{Context: -1}, "context -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Generate(&buf, tc.vocab, tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "tinymodel: generate: ") {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("wrote %d bytes", buf.Len())
			}
		})
	}
}

// TestRealVocab generates the default model with the real Llama-2 vocabulary named by
// SLUICE_VOCAB (scripts/fetch-vocab.sh prints its path). Without it the test skips,
// unless SLUICE_REQUIRE_VOCAB=1, when it fails.
func TestRealVocab(t *testing.T) {
	path := os.Getenv("SLUICE_VOCAB")
	if path == "" {
		if os.Getenv("SLUICE_REQUIRE_VOCAB") == "1" {
			t.Fatal("SLUICE_REQUIRE_VOCAB=1 but SLUICE_VOCAB is not set (run scripts/fetch-vocab.sh)")
		}
		t.Skip("SLUICE_VOCAB not set (scripts/fetch-vocab.sh prints the path)")
	}
	v, err := LoadVocab(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Tokens) != 32000 || v.UNK != 0 || v.BOS != 1 || v.EOS != 2 {
		t.Fatalf("%d tokens, unk %d bos %d eos %d", len(v.Tokens), v.UNK, v.BOS, v.EOS)
	}
	known := []struct {
		id  int
		tok string
		typ TokenType
	}{
		{0, "<unk>", TokenUnknown},
		{1, "<s>", TokenControl},
		{2, "</s>", TokenControl},
		{3, "<0x00>", TokenByte},
		{258, "<0xFF>", TokenByte},
		{259, "▁▁", TokenNormal},
		{1526, "▁world", TokenNormal},
		{22557, "▁Hello", TokenNormal},
		{28705, "▁", TokenNormal},
	}
	for _, k := range known {
		if v.Tokens[k.id] != k.tok || v.Types[k.id] != k.typ || v.Scores[k.id] != -float32(k.id) {
			t.Errorf("token %d: %q type %d score %v, want %q type %d", k.id, v.Tokens[k.id], v.Types[k.id], v.Scores[k.id], k.tok, k.typ)
		}
	}
	suppressed := 0
	for id := range v.Tokens {
		if v.Suppressed(id) {
			suppressed++
		}
	}
	if suppressed < 259 || suppressed > 400 {
		t.Errorf("%d suppressed tokens, want the 259 specials and bytes plus about a hundred invisible ones", suppressed)
	}

	g := generate(t, v, Options{})
	if n := len(g.raw); n < 8<<20 || n > 10<<20 {
		t.Errorf("model is %d bytes, want about 9 MB", n)
	}
	if g.file.Architecture().VocabularyLength != 32000 || g.file.Tokenizer().TokensLength != 32000 {
		t.Errorf("vocabulary length %d", g.file.Architecture().VocabularyLength)
	}
	if _, ok := g.file.TensorInfos.Get("output.weight"); !ok {
		t.Error("output.weight missing")
	}
	again := generate(t, v, Options{})
	if !bytes.Equal(g.raw, again.raw) {
		t.Error("two generations differ")
	}
	t.Logf("model: %d bytes, sha256 %x, %d suppressed tokens", len(g.raw), sha256.Sum256(g.raw), suppressed)
}

// TestGenerateGolden pins the bytes of a small model, so that a machine generating the
// model elsewhere (a GPU host, another Go release) gets the very same file, and a change
// to the layout or the weights is deliberate: update the hash with the change.
func TestGenerateGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := Generate(&buf, synthVocab(t), Options{Seed: 42, Dim: 16, Layers: 1, Heads: 2, FF: 24, Context: 256}); err != nil {
		t.Fatal(err)
	}
	const want = "0cf98c158fa1a10514344a6542d0f6897d17e5acda8fe636f7220efc646c853e"
	if got := fmt.Sprintf("%x", sha256.Sum256(buf.Bytes())); got != want {
		t.Errorf("sha256 %s, want %s (%d bytes)", got, want, buf.Len())
	}
}
