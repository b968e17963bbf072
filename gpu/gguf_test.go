package gpu

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	gguf "github.com/gpustack/gguf-parser-go"
)

// tinyLlama is the shape of the tiny GGUF the tests write.
var tinyLlama = ModelShape{Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Embedding: 64, Vocab: 256}

// ggml tensor types the test files use, with their sizes: F32 is 4 bytes an
// element, Q4_K and Q6_K store 256 elements in 144 and 210 bytes.
const (
	ggmlF32 = 0
	ggmlQ4K = 12
	ggmlQ6K = 14
)

func tensorBytes(typ uint32, n uint64) uint64 {
	switch typ {
	case ggmlQ4K:
		return n / 256 * 144
	case ggmlQ6K:
		return n / 256 * 210
	}
	return 4 * n
}

// ggufSpec describes a llama GGUF file to write.
type ggufSpec struct {
	shape   ModelShape
	ff      int    // feed-forward width
	matType uint32 // type of the weight matrices
	outType uint32 // type of output.weight
}

// writeGGUF writes a GGUF v3 llama model that gguf-parser-go reads like a
// real one: full metadata and tensor index, and a sparse (all-zero) tensor
// data section, so a file with a 70B model's shape costs no disk. It returns
// the path, the tensor data size and the size of token_embd.weight.
func writeGGUF(t *testing.T, spec ggufSpec) (path string, dataBytes, embdBytes uint64) {
	t.Helper()
	const (
		typeUint32  = 4
		typeFloat32 = 6
		typeString  = 8
		typeArray   = 9
		align       = 32
	)
	var b bytes.Buffer
	le := func(v any) {
		if err := binary.Write(&b, binary.LittleEndian, v); err != nil {
			t.Fatal(err)
		}
	}
	str := func(s string) { le(uint64(len(s))); b.WriteString(s) }

	s := spec.shape
	emb, ff, vocab := uint64(s.Embedding), uint64(spec.ff), uint64(s.Vocab)
	qDim, kvDim := uint64(s.Heads*s.HeadDim), uint64(s.KVHeads*s.HeadDim)
	type tensor struct {
		name string
		typ  uint32
		dims []uint64 // ggml order: innermost first
	}
	mat := spec.matType
	tensors := []tensor{{"token_embd.weight", mat, []uint64{emb, vocab}}}
	for i := range s.Layers {
		p := "blk." + strconv.Itoa(i) + "."
		tensors = append(tensors,
			tensor{p + "attn_norm.weight", ggmlF32, []uint64{emb}},
			tensor{p + "attn_q.weight", mat, []uint64{emb, qDim}},
			tensor{p + "attn_k.weight", mat, []uint64{emb, kvDim}},
			tensor{p + "attn_v.weight", mat, []uint64{emb, kvDim}},
			tensor{p + "attn_output.weight", mat, []uint64{qDim, emb}},
			tensor{p + "ffn_norm.weight", ggmlF32, []uint64{emb}},
			tensor{p + "ffn_gate.weight", mat, []uint64{emb, ff}},
			tensor{p + "ffn_up.weight", mat, []uint64{emb, ff}},
			tensor{p + "ffn_down.weight", mat, []uint64{ff, emb}},
		)
	}
	tensors = append(tensors,
		tensor{"output_norm.weight", ggmlF32, []uint64{emb}},
		tensor{"output.weight", spec.outType, []uint64{emb, vocab}},
	)

	u32 := []struct {
		key string
		val uint32
	}{
		{"llama.block_count", uint32(s.Layers)},
		{"llama.context_length", 131072},
		{"llama.embedding_length", uint32(emb)},
		{"llama.feed_forward_length", uint32(ff)},
		{"llama.attention.head_count", uint32(s.Heads)},
		{"llama.attention.head_count_kv", uint32(s.KVHeads)},
		{"llama.rope.dimension_count", uint32(s.HeadDim)},
		{"llama.vocab_size", uint32(vocab)},
		{"tokenizer.ggml.bos_token_id", 1},
		{"tokenizer.ggml.eos_token_id", 2},
	}

	le(uint32(0x46554747)) // "GGUF"
	le(uint32(3))
	le(uint64(len(tensors)))
	le(uint64(len(u32) + 5))
	str("general.architecture")
	le(uint32(typeString))
	str("llama")
	str("general.name")
	le(uint32(typeString))
	str("test")
	str("llama.attention.layer_norm_rms_epsilon")
	le(uint32(typeFloat32))
	le(float32(1e-5))
	str("tokenizer.ggml.model")
	le(uint32(typeString))
	str("gpt2")
	str("tokenizer.ggml.tokens")
	le(uint32(typeArray))
	le(uint32(typeString))
	le(vocab)
	for i := range vocab {
		str("t" + strconv.FormatUint(i, 10))
	}
	for _, kv := range u32 {
		str(kv.key)
		le(uint32(typeUint32))
		le(kv.val)
	}

	for _, tn := range tensors {
		str(tn.name)
		le(uint32(len(tn.dims)))
		n := uint64(1)
		for _, d := range tn.dims {
			le(d)
			n *= d
		}
		le(tn.typ)
		le(dataBytes)
		size := tensorBytes(tn.typ, n)
		if tn.name == "token_embd.weight" {
			embdBytes = size
		}
		dataBytes += (size + align - 1) / align * align
	}
	for b.Len()%align != 0 {
		b.WriteByte(0)
	}
	header := int64(b.Len())

	path = filepath.Join(t.TempDir(), "model.gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(header + int64(dataBytes)); err != nil { // sparse
		t.Fatal(err)
	}
	return path, dataBytes, embdBytes
}

func writeTinyGGUF(t *testing.T) (string, uint64, uint64) {
	return writeGGUF(t, ggufSpec{shape: tinyLlama, ff: 4 * tinyLlama.Embedding, matType: ggmlF32, outType: ggmlF32})
}

// TestEstimateVRAMMatchesShape checks the shape formula against
// gguf-parser-go's llama.cpp estimator on a real (tiny) GGUF file.
func TestEstimateVRAMMatchesShape(t *testing.T) {
	path, dataBytes, embdBytes := writeTinyGGUF(t)
	gf, err := gguf.ParseGGUFFile(path, gguf.SkipLargeMetadata())
	if err != nil {
		t.Fatal(err)
	}
	shape, err := ShapeOf(gf)
	if err != nil {
		t.Fatal(err)
	}
	want := tinyLlama
	want.WeightsBytes = dataBytes
	if shape != want {
		t.Fatalf("ShapeOf = %+v, want %+v", shape, want)
	}

	tests := []struct {
		name          string
		ctxLen, slots int
		offload       int
	}{
		{"full offload", 1024, 2, -1},
		{"padded context", 1000, 3, -1},
		{"one of two blocks", 2048, 1, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EstimateVRAM(path, tt.ctxLen, tt.slots, tt.offload)
			if err != nil {
				t.Fatal(err)
			}
			byShape, err := EstimateShape(shape, tt.ctxLen, tt.slots, tt.offload)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("gguf-parser: %+v", got)
			t.Logf("shape:       %+v", byShape)
			if got.KVCacheBytes != byShape.KVCacheBytes {
				t.Errorf("KV cache: gguf-parser %d, shape %d", got.KVCacheBytes, byShape.KVCacheBytes)
			}
			if got.ContextTokens != byShape.ContextTokens || got.OffloadLayers != byShape.OffloadLayers ||
				got.Layers != byShape.Layers {
				t.Errorf("context/layers: gguf-parser %+v, shape %+v", got, byShape)
			}
			if tt.offload < 0 {
				// The shape counts every weight; llama.cpp leaves the token
				// embeddings on the host.
				if got.WeightsBytes+embdBytes != byShape.WeightsBytes {
					t.Errorf("weights: gguf-parser %d + embeddings %d != shape %d",
						got.WeightsBytes, embdBytes, byShape.WeightsBytes)
				}
			}
			if got.ComputeBytes == 0 || byShape.ComputeBytes == 0 {
				t.Errorf("no compute estimate: gguf-parser %d, shape %d", got.ComputeBytes, byShape.ComputeBytes)
			}
		})
	}
}

func TestEstimateVRAMErrors(t *testing.T) {
	dir := t.TempDir()
	notGGUF := filepath.Join(dir, "model.gguf")
	if err := os.WriteFile(notGGUF, []byte("not a gguf file at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	tiny, _, _ := writeTinyGGUF(t)
	tests := []struct {
		name          string
		path          string
		ctxLen, slots int
		wantErr       string
	}{
		{"missing file", filepath.Join(dir, "nope.gguf"), 4096, 1, "gpu: estimate " + filepath.Join(dir, "nope.gguf")},
		{"not gguf", notGGUF, 4096, 1, "gpu: estimate " + notGGUF},
		{"bad context", tiny, 0, 1, "gpu: estimate: context length 0 is not positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EstimateVRAM(tt.path, tt.ctxLen, tt.slots, -1)
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want prefix %q", err, tt.wantErr)
			}
		})
	}
}

// TestEstimateRealShapes writes GGUF files with the shapes of Llama 3.1 8B
// and Llama 3.3 70B (Q4_K matrices, Q6_K output, like Q4_K_M) and checks the
// shape formula against gguf-parser-go's estimate of the same files.
func TestEstimateRealShapes(t *testing.T) {
	tests := []struct {
		name          string
		shape         ModelShape
		ff            int
		ctxLen, slots int
		wantKV        uint64
	}{
		{"llama 3.1 8B, 8k", llama8B, 14336, 8192, 1, 1 * gb},
		{"llama 3.1 8B, 4 × 8k", llama8B, 14336, 8192, 4, 4 * gb},
		{"llama 3.3 70B, 8k", llama70B, 28672, 8192, 1, 2560 * mib},
		{"llama 3.3 70B, 2 × 16k", llama70B, 28672, 16384, 2, 10 * gb},
		{"llama 3.3 70B, 128k", llama70B, 28672, 131072, 1, 40 * gb},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, dataBytes, embdBytes := writeGGUF(t, ggufSpec{shape: tt.shape, ff: tt.ff, matType: ggmlQ4K, outType: ggmlQ6K})
			got, err := EstimateVRAM(path, tt.ctxLen, tt.slots, -1)
			if err != nil {
				t.Fatal(err)
			}
			shape := tt.shape
			shape.WeightsBytes = dataBytes
			byShape, err := EstimateShape(shape, tt.ctxLen, tt.slots, -1)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("weights %.2f GiB; gguf-parser KV %s GiB compute %d MiB; shape KV %s GiB compute %d MiB",
				float64(dataBytes)/gb, gib(got.KVCacheBytes), got.ComputeBytes/mib, gib(byShape.KVCacheBytes), byShape.ComputeBytes/mib)
			if got.KVCacheBytes != tt.wantKV || byShape.KVCacheBytes != tt.wantKV {
				t.Errorf("KV cache: gguf-parser %d, shape %d, want %d", got.KVCacheBytes, byShape.KVCacheBytes, tt.wantKV)
			}
			if got.WeightsBytes+embdBytes != dataBytes {
				t.Errorf("weights: gguf-parser %d + embeddings %d != %d", got.WeightsBytes, embdBytes, dataBytes)
			}
			// The shape's compute is a coarser, safe-side heuristic: at or
			// above gguf-parser's, by less than 256 MiB.
			if lo, hi := got.ComputeBytes, got.ComputeBytes+256*mib; byShape.ComputeBytes < lo || byShape.ComputeBytes > hi {
				t.Errorf("compute: shape %d MiB, gguf-parser %d MiB", byShape.ComputeBytes/mib, got.ComputeBytes/mib)
			}
		})
	}
}
