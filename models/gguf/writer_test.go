package gguf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
)

// writeFile writes w to a temporary file and returns its path and bytes.
func writeFile(t *testing.T, w *Writer) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	n, err := w.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	path := filepath.Join(t.TempDir(), "test.gguf")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, buf.Bytes()
}

// f16ToF32 is an independent reference decoder for float16 bits.
func f16ToF32(h uint16) float32 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0:
		return float32(sign * mant * math.Pow(2, -24))
	case 0x1f:
		if mant != 0 {
			return float32(math.NaN())
		}
		return float32(math.Inf(int(sign)))
	default:
		return float32(sign * (1 + mant/1024) * math.Pow(2, float64(exp-15)))
	}
}

func seq(n int, scale float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = (float32(i) - float32(n)/2) * scale
	}
	return out
}

type wantTensor struct {
	name string
	dims []uint64
	typ  Type
	data []float32
}

func TestWriteReadBack(t *testing.T) {
	tensors := []wantTensor{
		{"token_embd.weight", []uint64{8, 5}, TypeF16, seq(40, 0.125)},
		{"blk.0.attn_norm.weight", []uint64{7}, TypeF32, seq(7, 0.1)}, // 28 bytes: forces padding
		{"blk.0.ffn_up.weight", []uint64{3, 2, 2}, TypeF16, seq(12, 0.5)},
		{"output.weight", []uint64{2, 3, 2, 1}, TypeF32, seq(12, -1.5)},
	}
	tests := []struct {
		name  string
		align uint32 // 0: leave general.alignment unset
	}{
		{"default alignment", 0},
		{"alignment 64", 64},
		{"alignment 8", 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter()
			w.AddString("general.architecture", "llama")
			w.AddString("general.name", "ünïcode name")
			w.AddUint32("llama.block_count", 2)
			w.AddInt32("test.int32", -7)
			w.AddUint64("test.uint64", 1<<40+3)
			w.AddFloat32("test.float32", 1e-5)
			w.AddBool("test.true", true)
			w.AddBool("test.false", false)
			w.AddStrings("tokenizer.ggml.tokens", []string{"<unk>", "<s>", "", "▁hello"})
			w.AddFloat32s("tokenizer.ggml.scores", []float32{0, -1, -2.5, 3})
			w.AddInt32s("tokenizer.ggml.token_type", []int32{2, 3, 1, -1})
			w.AddStrings("test.empty", nil)
			if tc.align != 0 {
				w.AddUint32(KeyAlignment, tc.align)
			}
			for _, tt := range tensors {
				w.AddTensor(tt.name, tt.dims, tt.typ, tt.data)
			}
			path, raw := writeFile(t, w)

			f, err := parser.ParseGGUFFile(path)
			if err != nil {
				t.Fatalf("ParseGGUFFile: %v", err)
			}
			h := f.Header
			if h.Magic != parser.GGUFMagicGGUFLe || h.Version != parser.GGUFVersionV3 {
				t.Fatalf("header magic %v version %v", h.Magic, h.Version)
			}
			wantKVs := 12
			if tc.align != 0 {
				wantKVs++
			}
			if h.TensorCount != uint64(len(tensors)) || h.MetadataKVCount != uint64(wantKVs) || len(h.MetadataKV) != wantKVs {
				t.Fatalf("counts: tensors %d kvs %d (%d parsed)", h.TensorCount, h.MetadataKVCount, len(h.MetadataKV))
			}
			checkKVs(t, h.MetadataKV, tc.align)

			align := uint64(DefaultAlignment)
			if tc.align != 0 {
				align = uint64(tc.align)
			}
			if f.TensorDataStartOffset <= 0 || uint64(f.TensorDataStartOffset)%align != 0 {
				t.Fatalf("tensor data starts at %d, not aligned to %d", f.TensorDataStartOffset, align)
			}
			if len(f.TensorInfos) != len(tensors) {
				t.Fatalf("%d tensor infos, want %d", len(f.TensorInfos), len(tensors))
			}
			var off uint64
			for i, want := range tensors {
				got := f.TensorInfos[i]
				if got.Name != want.name || !reflect.DeepEqual(got.Dimensions, want.dims) ||
					got.NDimensions != uint32(len(want.dims)) || uint32(got.Type) != uint32(want.typ) {
					t.Errorf("tensor %d: got %s %v type %v, want %s %v %v", i, got.Name, got.Dimensions, got.Type, want.name, want.dims, want.typ)
				}
				if got.Offset != off {
					t.Errorf("tensor %s: offset %d, want %d", want.name, got.Offset, off)
				}
				size := uint64(len(want.data) * want.typ.size())
				start := uint64(f.TensorDataStartOffset) + got.Offset
				checkData(t, want, raw[start:start+size])
				off += (size + align - 1) / align * align
			}
			if uint64(len(raw)) != uint64(f.TensorDataStartOffset)+off {
				t.Errorf("file is %d bytes, want %d (last tensor padded)", len(raw), uint64(f.TensorDataStartOffset)+off)
			}
		})
	}
}

func checkKVs(t *testing.T, kvs parser.GGUFMetadataKVs, align uint32) {
	t.Helper()
	get := func(key string, typ parser.GGUFMetadataValueType) parser.GGUFMetadataKV {
		t.Helper()
		kv, ok := kvs.Get(key)
		if !ok {
			t.Fatalf("metadata key %q missing", key)
		}
		if kv.ValueType != typ {
			t.Fatalf("metadata key %q: type %v, want %v", key, kv.ValueType, typ)
		}
		return kv
	}
	checks := []struct {
		key  string
		typ  parser.GGUFMetadataValueType
		got  func(parser.GGUFMetadataKV) any
		want any
	}{
		{"general.architecture", parser.GGUFMetadataValueTypeString, func(k parser.GGUFMetadataKV) any { return k.ValueString() }, "llama"},
		{"general.name", parser.GGUFMetadataValueTypeString, func(k parser.GGUFMetadataKV) any { return k.ValueString() }, "ünïcode name"},
		{"llama.block_count", parser.GGUFMetadataValueTypeUint32, func(k parser.GGUFMetadataKV) any { return k.ValueUint32() }, uint32(2)},
		{"test.int32", parser.GGUFMetadataValueTypeInt32, func(k parser.GGUFMetadataKV) any { return k.ValueInt32() }, int32(-7)},
		{"test.uint64", parser.GGUFMetadataValueTypeUint64, func(k parser.GGUFMetadataKV) any { return k.ValueUint64() }, uint64(1<<40 + 3)},
		{"test.float32", parser.GGUFMetadataValueTypeFloat32, func(k parser.GGUFMetadataKV) any { return k.ValueFloat32() }, float32(1e-5)},
		{"test.true", parser.GGUFMetadataValueTypeBool, func(k parser.GGUFMetadataKV) any { return k.ValueBool() }, true},
		{"test.false", parser.GGUFMetadataValueTypeBool, func(k parser.GGUFMetadataKV) any { return k.ValueBool() }, false},
		{"tokenizer.ggml.tokens", parser.GGUFMetadataValueTypeArray, func(k parser.GGUFMetadataKV) any { return k.ValueArray().ValuesString() }, []string{"<unk>", "<s>", "", "▁hello"}},
		{"tokenizer.ggml.scores", parser.GGUFMetadataValueTypeArray, func(k parser.GGUFMetadataKV) any { return k.ValueArray().ValuesFloat32() }, []float32{0, -1, -2.5, 3}},
		{"tokenizer.ggml.token_type", parser.GGUFMetadataValueTypeArray, func(k parser.GGUFMetadataKV) any { return k.ValueArray().ValuesInt32() }, []int32{2, 3, 1, -1}},
		{"test.empty", parser.GGUFMetadataValueTypeArray, func(k parser.GGUFMetadataKV) any { return k.ValueArray().Len }, uint64(0)},
	}
	if align != 0 {
		checks = append(checks, struct {
			key  string
			typ  parser.GGUFMetadataValueType
			got  func(parser.GGUFMetadataKV) any
			want any
		}{KeyAlignment, parser.GGUFMetadataValueTypeUint32, func(k parser.GGUFMetadataKV) any { return k.ValueUint32() }, align})
	}
	for i, c := range checks {
		if kvs[i].Key != c.key {
			t.Errorf("metadata %d is %q, want %q (insertion order)", i, kvs[i].Key, c.key)
		}
		if got := c.got(get(c.key, c.typ)); !reflect.DeepEqual(got, c.want) {
			t.Errorf("metadata %q = %#v, want %#v", c.key, got, c.want)
		}
	}
	arr := get("tokenizer.ggml.tokens", parser.GGUFMetadataValueTypeArray).ValueArray()
	if arr.Type != parser.GGUFMetadataValueTypeString || arr.Len != 4 {
		t.Errorf("tokens array: element type %v len %d", arr.Type, arr.Len)
	}
}

func checkData(t *testing.T, want wantTensor, raw []byte) {
	t.Helper()
	for i, v := range want.data {
		var got float32
		if want.typ == TypeF16 {
			got = f16ToF32(binary.LittleEndian.Uint16(raw[2*i:]))
		} else {
			got = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		if got != v { // the test values are exact in float16
			t.Errorf("tensor %s[%d] = %v, want %v", want.name, i, got, v)
			return
		}
	}
}

// TestGolden checks the exact bytes of a small file against an independent encoding
// and that the same input always gives identical output.
func TestGolden(t *testing.T) {
	build := func() *Writer {
		w := NewWriter()
		w.AddString("general.architecture", "x")
		w.AddBool("b", true)
		w.AddInt32s("a", []int32{-1, 2})
		w.AddTensor("t", []uint64{3}, TypeF16, []float32{1, -2, 0.5})
		w.AddTensor("u", []uint64{1}, TypeF32, []float32{1})
		return w
	}
	var want []byte
	le := binary.LittleEndian
	str := func(s string) { want = le.AppendUint64(want, uint64(len(s))); want = append(want, s...) }
	want = append(want, "GGUF"...)
	want = le.AppendUint32(want, 3)
	want = le.AppendUint64(want, 2)
	want = le.AppendUint64(want, 3)
	str("general.architecture")
	want = le.AppendUint32(want, 8)
	str("x")
	str("b")
	want = le.AppendUint32(want, 7)
	want = append(want, 1)
	str("a")
	want = le.AppendUint32(want, 9)
	want = le.AppendUint32(want, 5)
	want = le.AppendUint64(want, 2)
	want = le.AppendUint32(want, 0xffffffff)
	want = le.AppendUint32(want, 2)
	str("t")
	want = le.AppendUint32(want, 1)
	want = le.AppendUint64(want, 3)
	want = le.AppendUint32(want, 1)
	want = le.AppendUint64(want, 0)
	str("u")
	want = le.AppendUint32(want, 1)
	want = le.AppendUint64(want, 1)
	want = le.AppendUint32(want, 0)
	want = le.AppendUint64(want, 32)
	for len(want)%32 != 0 {
		want = append(want, 0)
	}
	want = append(want, 0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38) // 1, -2, 0.5 in float16
	want = append(want, make([]byte, 26)...)
	want = le.AppendUint32(want, math.Float32bits(1))
	want = append(want, make([]byte, 28)...)

	for i := range 3 {
		var buf bytes.Buffer
		if _, err := build().WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), want) {
			t.Fatalf("run %d: bytes differ from the golden encoding\n got %x\nwant %x", i, buf.Bytes(), want)
		}
	}
	// A Writer can be written twice with the same result.
	w := build()
	var a, b bytes.Buffer
	if _, err := w.WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("second WriteTo differs")
	}
}

func TestAddTensorFunc(t *testing.T) {
	data := seq(1000, 0.01)
	direct := NewWriter()
	direct.AddTensor("small", []uint64{3}, TypeF32, []float32{1, 2, 3})
	direct.AddTensor("big", []uint64{100, 10}, TypeF16, data)
	direct.AddTensor("big2", []uint64{10}, TypeF16, data[:10])

	lazy := NewWriter()
	calls := 0
	lazy.AddTensorFunc("small", []uint64{3}, TypeF32, func(dst []float32) {
		calls++
		copy(dst, []float32{1, 2, 3})
	})
	lazy.AddTensorFunc("big", []uint64{100, 10}, TypeF16, func(dst []float32) {
		calls++
		copy(dst, data)
	})
	lazy.AddTensorFunc("big2", []uint64{10}, TypeF16, func(dst []float32) {
		calls++
		for i, v := range dst {
			if v != 0 {
				t.Errorf("fill got a dirty buffer: dst[%d] = %v", i, v)
				break
			}
		}
		copy(dst, data[:10])
	})
	var a, b bytes.Buffer
	if _, err := direct.WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := lazy.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if calls != 3 {
		t.Errorf("fill called %d times, want 3", calls)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Error("AddTensorFunc output differs from AddTensor")
	}
}

func TestWriteToInvalid(t *testing.T) {
	ok := func(w *Writer) { w.AddTensor("ok", []uint64{2}, TypeF32, []float32{1, 2}) }
	tests := []struct {
		name  string
		build func(w *Writer)
		want  string
	}{
		{"duplicate key", func(w *Writer) { w.AddUint32("k", 1); w.AddString("k", "v") }, `metadata key "k": added twice`},
		{"empty key", func(w *Writer) { w.AddBool("", true) }, "empty metadata key"},
		{"alignment not power of two", func(w *Writer) { w.AddUint32(KeyAlignment, 24) }, "alignment 24"},
		{"alignment too small", func(w *Writer) { w.AddUint32(KeyAlignment, 4) }, "alignment 4"},
		{"alignment wrong type", func(w *Writer) { w.AddUint64(KeyAlignment, 32) }, "must be a uint32"},
		{"duplicate tensor", func(w *Writer) { ok(w); ok(w) }, `tensor "ok": added twice`},
		{"empty name", func(w *Writer) { w.AddTensor("", []uint64{1}, TypeF32, []float32{1}) }, "empty tensor name"},
		{"long name", func(w *Writer) { w.AddTensor(strings.Repeat("n", 64), []uint64{1}, TypeF32, []float32{1}) }, "name longer than 63"},
		{"no dims", func(w *Writer) { w.AddTensor("t", nil, TypeF32, nil) }, "0 dimensions"},
		{"five dims", func(w *Writer) { w.AddTensor("t", []uint64{1, 1, 1, 1, 1}, TypeF32, []float32{1}) }, "5 dimensions"},
		{"zero dim", func(w *Writer) { w.AddTensor("t", []uint64{2, 0}, TypeF32, nil) }, "dimension 1 is zero"},
		{"short data", func(w *Writer) { w.AddTensor("t", []uint64{2, 2}, TypeF16, []float32{1, 2, 3}) }, "3 values for shape [2 2], want 4"},
		{"bad type", func(w *Writer) { w.AddTensor("t", []uint64{1}, Type(3), []float32{1}) }, "unsupported type Type(3)"},
		{"floats as quant", func(w *Writer) { w.AddTensor("t", []uint64{32}, TypeQ8_0, make([]float32, 32)) }, "takes raw blocks"},
		{"blocks as float", func(w *Writer) { w.AddQuantTensor("t", []uint64{32}, TypeF16, func(uint64, []byte) {}) }, "not a quantized type"},
		{"ragged row", func(w *Writer) { w.AddQuantTensor("t", []uint64{33, 2}, TypeQ4_0, func(uint64, []byte) {}) }, "multiple of 32"},
		{"overflow", func(w *Writer) { w.AddTensorFunc("t", []uint64{1 << 40, 1 << 40}, TypeF32, func([]float32) {}) }, "overflows"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := NewWriter()
			w.AddString("general.architecture", "llama")
			tc.build(w)
			var buf bytes.Buffer
			n, err := w.WriteTo(&buf)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gguf: ") {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if n != 0 || buf.Len() != 0 {
				t.Errorf("wrote %d bytes (n=%d) for an invalid file", buf.Len(), n)
			}
		})
	}
}

type failWriter struct{ left int }

func (f *failWriter) Write(p []byte) (int, error) {
	if len(p) > f.left {
		n := f.left
		f.left = 0
		return n, errors.New("disk full")
	}
	f.left -= len(p)
	return len(p), nil
}

func TestWriteToError(t *testing.T) {
	w := NewWriter()
	w.AddString("general.architecture", "llama")
	w.AddTensor("t", []uint64{100000}, TypeF32, make([]float32, 100000))
	n, err := w.WriteTo(&failWriter{left: 70000})
	if err == nil || !strings.Contains(err.Error(), "gguf: write: disk full") {
		t.Fatalf("err = %v", err)
	}
	if n != 70000 {
		t.Errorf("n = %d, want the 70000 bytes that were written", n)
	}
}

func TestF32ToF16(t *testing.T) {
	tests := []struct {
		in   float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},                  // largest finite
		{65519.996, 0x7bff},              // just below the rounding point to Inf
		{65520, 0x7c00},                  // ties to even: rounds to Inf
		{1e6, 0x7c00},                    // overflow
		{-1e6, 0xfc00},                   // negative overflow
		{float32(math.Inf(1)), 0x7c00},   // +Inf
		{float32(math.Inf(-1)), 0xfc00},  // -Inf
		{6.103515625e-05, 0x0400},        // smallest normal
		{5.960464477539063e-08, 0x0001},  // smallest subnormal
		{2.9802322387695312e-08, 0x0000}, // half the smallest subnormal: ties to even (0)
		{2.9802326e-08, 0x0001},          // just above half: rounds up
		{1e-10, 0x0000},                  // underflow
		{1 + 1.0/2048, 0x3c00},           // tie between 1 and next: even (1)
		{1 + 3.0/2048, 0x3c02},           // tie: rounds up to even
		{0.1, 0x2e66},                    // inexact
		{3.140625, 0x4248},               // exact
		{-6.097555160522461e-05, 0x83ff}, // largest subnormal, negative
		{6.1005353927612305e-05, 0x0400}, // rounds up from subnormal into the smallest normal
		{float32(math.Float32frombits(1)), 0x0000},
	}
	for _, tc := range tests {
		if got := f32ToF16(tc.in); got != tc.want {
			t.Errorf("f32ToF16(%g) = %#04x, want %#04x", tc.in, got, tc.want)
		}
	}
	if got := f32ToF16(float32(math.NaN())); got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
		t.Errorf("NaN -> %#04x, not a NaN", got)
	}
}

// TestF32ToF16Exhaustive checks every float16 value round-trips, and that values
// between neighbours round to the nearest one, ties to even.
func TestF32ToF16Exhaustive(t *testing.T) {
	for h := range uint32(0x7c00) { // every finite non-negative float16
		for _, sign := range []uint16{0, 0x8000} {
			hv := uint16(h) | sign
			f := f16ToF32(hv)
			if got := f32ToF16(f); got != hv {
				t.Fatalf("round trip %#04x -> %g -> %#04x", hv, f, got)
			}
			if h == 0x7bff {
				continue
			}
			next := f16ToF32(uint16(h+1) | sign)
			mid := float32((float64(f) + float64(next)) / 2) // exact in float32
			even := hv
			if h&1 == 1 {
				even = uint16(h+1) | sign
			}
			if got := f32ToF16(mid); got != even {
				t.Fatalf("midpoint of %#04x and next: %#04x, want %#04x", hv, got, even)
			}
			below := math.Nextafter32(mid, f)
			above := math.Nextafter32(mid, next)
			if got := f32ToF16(below); got != hv {
				t.Fatalf("just below midpoint after %#04x: %#04x", hv, got)
			}
			if got := f32ToF16(above); got != uint16(h+1)|sign {
				t.Fatalf("just above midpoint after %#04x: %#04x", hv, got)
			}
		}
	}
}

// TestQuantTensors writes Q8_0 and Q4_0 tensors row by row and checks, with
// gguf-parser-go, their types, offsets and sizes, and the raw blocks in the file.
func TestQuantTensors(t *testing.T) {
	w := NewWriter()
	w.AddString("general.architecture", "llama")
	rowsSeen := map[string][]uint64{}
	fillRow := func(name string, typ Type) func(uint64, []byte) {
		return func(r uint64, dst []byte) {
			rowsSeen[name] = append(rowsSeen[name], r)
			if len(dst)%typ.BlockBytes() != 0 {
				t.Errorf("%s: row of %d bytes, not whole blocks", name, len(dst))
			}
			for i := range dst {
				dst[i] = byte(r) ^ byte(i)
			}
		}
	}
	w.AddQuantTensor("q8", []uint64{64, 3}, TypeQ8_0, fillRow("q8", TypeQ8_0))
	w.AddTensor("f", []uint64{3}, TypeF32, []float32{1, 2, 3})
	w.AddQuantTensor("q4", []uint64{96, 2}, TypeQ4_0, fillRow("q4", TypeQ4_0))
	path, raw := writeFile(t, w)
	f, err := parser.ParseGGUFFile(path)
	if err != nil {
		t.Fatalf("ParseGGUFFile: %v", err)
	}
	want := []struct {
		name       string
		typ        parser.GGMLType
		rows, rowB uint64
	}{{"q8", parser.GGMLTypeQ8_0, 3, 2 * 34}, {"f", parser.GGMLTypeF32, 1, 12}, {"q4", parser.GGMLTypeQ4_0, 2, 3 * 18}}
	var off uint64
	for i, wt := range want {
		ti := f.TensorInfos[i]
		if ti.Name != wt.name || ti.Type != wt.typ {
			t.Fatalf("tensor %d: %s %v, want %s %v", i, ti.Name, ti.Type, wt.name, wt.typ)
		}
		size := wt.rows * wt.rowB
		if ti.Offset != off || ti.Bytes() != size {
			t.Errorf("%s: offset %d size %d, want %d and %d", wt.name, ti.Offset, ti.Bytes(), off, size)
		}
		if wt.typ != parser.GGMLTypeF32 {
			start := uint64(f.TensorDataStartOffset) + ti.Offset
			for r := range wt.rows {
				row := raw[start+r*wt.rowB : start+(r+1)*wt.rowB]
				for j, b := range row {
					if b != byte(r)^byte(j) {
						t.Fatalf("%s row %d byte %d = %d, want %d", wt.name, r, j, b, byte(r)^byte(j))
					}
				}
			}
			if got := rowsSeen[wt.name]; len(got) != int(wt.rows) {
				t.Errorf("%s: fill called for rows %v", wt.name, got)
			}
		}
		off += (size + DefaultAlignment - 1) / DefaultAlignment * DefaultAlignment
	}
	if uint64(f.ModelSize) != off { // the data section, padding included
		t.Errorf("ModelSize %d, want %d", f.ModelSize, off)
	}
}
