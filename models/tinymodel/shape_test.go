package tinymodel

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// TestShapeParams checks the shapes against the parameter counts their model cards
// publish (within 0.5%).
func TestShapeParams(t *testing.T) {
	published := map[string]float64{
		"qwen2.5-0.5b": 0.494e9, "llama-3.2-1b": 1.236e9, "qwen2.5-7b": 7.616e9,
		"llama-3.1-8b": 8.030e9, "llama-3.1-70b": 70.554e9,
	}
	for _, s := range Shapes() {
		want, ok := published[s.Name]
		if !ok {
			t.Errorf("shape %s: no published parameter count in the test", s.Name)
			continue
		}
		if got := float64(s.Params()); math.Abs(got-want)/want > 0.005 {
			t.Errorf("%s: %.4gB parameters, published %.4gB", s.Name, got/1e9, want/1e9)
		}
	}
	if _, err := ShapeNamed("gpt-5"); err == nil || !strings.Contains(err.Error(), "llama-3.1-8b") {
		t.Errorf("ShapeNamed(unknown) = %v, want an error listing the shapes", err)
	}
}

// sparseShape writes the header of shape s's file and leaves its data as a hole, so
// even the 70B shape is parsed without writing 40 GB.
func sparseShape(t *testing.T, v *Vocab, s Shape, quant string) (path string, dataBytes int64) {
	t.Helper()
	g, err := ShapeWriter(v, s, quant, 1)
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), s.Name+"-"+quant+".gguf")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	header, data, err := g.WriteHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(header + data); err != nil {
		t.Fatal(err)
	}
	return path, data
}

// TestShapeFiles parses every shape, in both quantizations, with gguf-parser-go: the
// architecture, parameter count, tensor types and sizes are the real model's.
func TestShapeFiles(t *testing.T) {
	v := synthVocab(t)
	for _, s := range Shapes() {
		for _, quant := range []string{QuantQ8_0, QuantQ4_0} {
			t.Run(s.Name+"/"+quant, func(t *testing.T) {
				path, data := sparseShape(t, v, s, quant)
				f, err := parser.ParseGGUFFile(path, parser.SkipLargeMetadata())
				if err != nil {
					t.Fatal(err)
				}
				a := f.Architecture()
				if a.Architecture != s.Arch || int(a.EmbeddingLength) != s.Dim || int(a.BlockCount) != s.Layers ||
					int(a.AttentionHeadCount) != s.Heads || int(a.AttentionHeadCountKV) != s.KVHeads ||
					int(a.FeedForwardLength[0]) != s.FF || int(a.VocabularyLength) != s.Vocab ||
					int(a.AttentionKeyLength) != s.HeadDim() || int(a.MaximumContextLength) != s.Context {
					t.Fatalf("architecture %+v does not match shape %+v", a, s)
				}
				if int64(f.ModelParameters) != s.Params() {
					t.Errorf("parameters %d, want %d", f.ModelParameters, s.Params())
				}
				if int64(f.ModelSize) != data {
					t.Errorf("model size %d, want %d", f.ModelSize, data)
				}
				// Bits per weight: Q8_0 is 8.5, Q4_0 4.5 (plus a Q8_0 output layer).
				bpw := float64(f.ModelSize) * 8 / float64(f.ModelParameters)
				lo, hi := 8.45, 8.55
				if quant == QuantQ4_0 {
					lo, hi = 4.45, 5.3
				}
				if bpw < lo || bpw > hi {
					t.Errorf("%.2f bits per weight, want %.2f to %.2f", bpw, lo, hi)
				}
				want := parser.GGMLTypeQ8_0
				if quant == QuantQ4_0 {
					want = parser.GGMLTypeQ4_0
				}
				for _, ti := range f.TensorInfos {
					switch {
					case ti.NDimensions == 1:
						if ti.Type != parser.GGMLTypeF32 {
							t.Errorf("%s: %v, want F32", ti.Name, ti.Type)
						}
					case ti.Name == "output.weight":
						if ti.Type != parser.GGMLTypeQ8_0 {
							t.Errorf("%s: %v, want Q8_0", ti.Name, ti.Type)
						}
					case ti.Type != want:
						t.Errorf("%s: %v, want %v", ti.Name, ti.Type, want)
					}
				}
				_, hasOut := f.TensorInfos.Get("output.weight")
				if hasOut == s.Tied {
					t.Errorf("output.weight present = %v for a tied = %v shape", hasOut, s.Tied)
				}
			})
		}
	}
}

// block decodes value j of a Q8_0 or Q4_0 block.
func block(t *testing.T, typ parser.GGMLType, blk []byte, j int) float32 {
	d := halfToFloat(binary.LittleEndian.Uint16(blk))
	switch typ {
	case parser.GGMLTypeQ8_0:
		return d * float32(int8(blk[2+j]))
	case parser.GGMLTypeQ4_0:
		q := blk[2+j%16]
		if j >= 16 {
			q >>= 4
		}
		return d * (float32(q&0xf) - 8)
	}
	t.Fatalf("type %v", typ)
	return 0
}

// TestGenerateShapeWeights writes a scaled-down shape in full and reads its blocks
// back: the constant channel, the zero rows that keep it constant, the suppressed
// tokens' output rows, and the random weights' spread.
func TestGenerateShapeWeights(t *testing.T) {
	v := synthVocab(t)
	for _, tied := range []bool{false, true} {
		for _, quant := range []string{QuantQ8_0, QuantQ4_0} {
			s := Shape{Name: "mini", Arch: "qwen2", Dim: 128, Layers: 2, Heads: 4, KVHeads: 2, FF: 256,
				Vocab: len(v.Tokens) + 40, Context: 4096, RopeBase: 1e6, RMSEps: 1e-6, Tied: tied, QKVBias: true}
			var buf bytes.Buffer
			if err := GenerateShape(&buf, v, s, quant, 7); err != nil {
				t.Fatal(err)
			}
			var again bytes.Buffer
			_ = GenerateShape(&again, v, s, quant, 7)
			if sha256.Sum256(buf.Bytes()) != sha256.Sum256(again.Bytes()) {
				t.Fatalf("tied=%v %s: two runs differ", tied, quant)
			}
			path := filepath.Join(t.TempDir(), "m.gguf")
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := parser.ParseGGUFFile(path)
			if err != nil {
				t.Fatal(err)
			}
			raw := buf.Bytes()
			row := func(name string, r int) ([]byte, parser.GGMLType) {
				ti, ok := f.TensorInfos.Get(name)
				if !ok {
					t.Fatalf("no tensor %s", name)
				}
				rb := int(ti.Dimensions[0]) / 32 * int(map[parser.GGMLType]int{parser.GGMLTypeQ8_0: 34, parser.GGMLTypeQ4_0: 18}[ti.Type])
				start := int(f.TensorDataStartOffset) + int(ti.Offset) + r*rb
				return raw[start : start+rb], ti.Type
			}
			bb := func(typ parser.GGMLType) int {
				return map[parser.GGMLType]int{parser.GGMLTypeQ8_0: 34, parser.GGMLTypeQ4_0: 18}[typ]
			}
			hello := indexOf(v.Tokens, "▁Hello")
			byteTok := 3 // <0x00>
			pad := len(v.Tokens) + 5
			// Constant channel: channel 0 of a normal token's embedding is biasValue.
			r, typ := row("token_embd.weight", hello)
			if got := block(t, typ, r, 0); math.Abs(float64(got-biasValue)) > 0.01 {
				t.Errorf("tied=%v %s: embedding channel 0 = %v, want %v", tied, quant, got, biasValue)
			}
			// Nothing writes to channel 0: row 0 of attn_output and ffn_down is zero.
			for _, name := range []string{"blk.0.attn_output.weight", "blk.1.ffn_down.weight"} {
				r, typ := row(name, 0)
				for j := 0; j < len(r)/bb(typ)*32; j++ {
					if x := block(t, typ, r[j/32*bb(typ):], j%32); x != 0 {
						t.Fatalf("%s row 0 value %d = %v, want 0", name, j, x)
					}
				}
			}
			// Suppressed tokens (bytes, padding) get a negative weight on channel 0 alone.
			out := "output.weight"
			if tied {
				out = "token_embd.weight"
			}
			for _, id := range []int{byteTok, pad} {
				r, typ := row(out, id)
				if got := block(t, typ, r, 0); got >= 0 {
					t.Errorf("tied=%v %s: token %d channel 0 = %v, want negative", tied, quant, id, got)
				}
				for j := 1; j < len(r)/bb(typ)*32; j++ {
					if x := block(t, typ, r[j/32*bb(typ):], j%32); x != 0 {
						t.Fatalf("tied=%v %s: suppressed token %d value %d = %v, want 0", tied, quant, id, j, x)
					}
				}
			}
			// Random weights have the intended spread (1/sqrt(in) for a matrix).
			r, typ = row("blk.0.attn_q.weight", 3)
			var sum, sq float64
			n := len(r) / bb(typ) * 32
			for j := range n {
				x := float64(block(t, typ, r[j/32*bb(typ):], j%32))
				sum += x
				sq += x * x
			}
			std := math.Sqrt(sq/float64(n) - (sum/float64(n))*(sum/float64(n)))
			if want := 1 / math.Sqrt(128); math.Abs(std-want)/want > 0.35 {
				t.Errorf("tied=%v %s: attn_q row std %.4f, want about %.4f", tied, quant, std, want)
			}
		}
	}
}
