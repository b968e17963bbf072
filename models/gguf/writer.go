package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
)

// Version is the GGUF format version the Writer produces.
const Version = 3

// Magic is the four bytes every GGUF file starts with.
const Magic = "GGUF"

// KeyAlignment is the metadata key that sets the alignment of tensor data. Add it with
// AddUint32 to change the alignment; a power of two of at least 8 is required.
const KeyAlignment = "general.alignment"

// DefaultAlignment is the tensor data alignment used when KeyAlignment is not set.
const DefaultAlignment = 32

// MaxTensorNameLen is the longest tensor name ggml accepts (GGML_MAX_NAME minus the NUL).
const MaxTensorNameLen = 63

// maxDims is GGML_MAX_DIMS.
const maxDims = 4

// Type is a ggml tensor data type: the float types F32 and F16, and the block
// quantizations Q4_0 and Q8_0 (written as raw blocks with AddQuantTensor).
type Type uint32

// Tensor data types (their ggml_type numbers).
const (
	TypeF32  Type = 0
	TypeF16  Type = 1
	TypeQ4_0 Type = 2
	TypeQ8_0 Type = 8
)

// QuantBlock is how many values one Q4_0 or Q8_0 block holds.
const QuantBlock = 32

// String returns the ggml name of the type.
func (t Type) String() string {
	switch t {
	case TypeF32:
		return "F32"
	case TypeF16:
		return "F16"
	case TypeQ4_0:
		return "Q4_0"
	case TypeQ8_0:
		return "Q8_0"
	default:
		return fmt.Sprintf("Type(%d)", uint32(t))
	}
}

// size is the number of bytes one element takes, or 0 for an unsupported or block type.
func (t Type) size() int {
	switch t {
	case TypeF32:
		return 4
	case TypeF16:
		return 2
	default:
		return 0
	}
}

// BlockBytes is the size of one QuantBlock-value block of a quantized type: an F16
// scale and 32 signed bytes (Q8_0), or an F16 scale and 32 nibbles (Q4_0). It is 0 for
// other types.
func (t Type) BlockBytes() int {
	switch t {
	case TypeQ4_0:
		return 2 + QuantBlock/2
	case TypeQ8_0:
		return 2 + QuantBlock
	default:
		return 0
	}
}

// quantized reports whether t is a block quantization.
func (t Type) quantized() bool { return t.BlockBytes() > 0 }

// valueType is a GGUF metadata value type.
type valueType uint32

// GGUF metadata value types (the subset the Writer emits).
const (
	valUint32  valueType = 4
	valInt32   valueType = 5
	valFloat32 valueType = 6
	valBool    valueType = 7
	valString  valueType = 8
	valArray   valueType = 9
	valUint64  valueType = 10
)

// kv is one metadata pair. For arrays, elem is the element type.
type kv struct {
	key   string
	typ   valueType
	elem  valueType
	value any
}

// tensor is one tensor to write: data or fill (float types), or rows (quantized).
type tensor struct {
	name string
	dims []uint64
	typ  Type
	data []float32
	fill func(dst []float32)
	rows func(row uint64, dst []byte)
}

// Writer collects metadata and tensors and writes them as one GGUF v3 file. The zero
// value is ready to use. Add methods never fail: WriteTo validates everything (unique
// keys and names, shapes, data lengths, alignment) before it writes the first byte.
// A Writer is not safe for concurrent use.
type Writer struct {
	kvs     []kv
	tensors []tensor
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer { return &Writer{} }

func (w *Writer) add(key string, typ, elem valueType, value any) {
	w.kvs = append(w.kvs, kv{key: key, typ: typ, elem: elem, value: value})
}

// AddUint32 adds a uint32 metadata value.
func (w *Writer) AddUint32(key string, v uint32) { w.add(key, valUint32, 0, v) }

// AddInt32 adds an int32 metadata value.
func (w *Writer) AddInt32(key string, v int32) { w.add(key, valInt32, 0, v) }

// AddUint64 adds a uint64 metadata value.
func (w *Writer) AddUint64(key string, v uint64) { w.add(key, valUint64, 0, v) }

// AddFloat32 adds a float32 metadata value.
func (w *Writer) AddFloat32(key string, v float32) { w.add(key, valFloat32, 0, v) }

// AddBool adds a bool metadata value.
func (w *Writer) AddBool(key string, v bool) { w.add(key, valBool, 0, v) }

// AddString adds a string metadata value.
func (w *Writer) AddString(key, v string) { w.add(key, valString, 0, v) }

// AddStrings adds an array-of-strings metadata value. The slice is kept, not copied.
func (w *Writer) AddStrings(key string, v []string) { w.add(key, valArray, valString, v) }

// AddFloat32s adds an array-of-float32 metadata value. The slice is kept, not copied.
func (w *Writer) AddFloat32s(key string, v []float32) { w.add(key, valArray, valFloat32, v) }

// AddInt32s adds an array-of-int32 metadata value. The slice is kept, not copied.
func (w *Writer) AddInt32s(key string, v []int32) { w.add(key, valArray, valInt32, v) }

// AddTensor adds a tensor stored as typ. dims are in ggml order (dims[0] varies
// fastest), and data holds the product of dims values in that order. The slices are
// kept, not copied: do not change them before WriteTo returns.
func (w *Writer) AddTensor(name string, dims []uint64, typ Type, data []float32) {
	w.tensors = append(w.tensors, tensor{name: name, dims: dims, typ: typ, data: data})
}

// AddTensorFunc adds a tensor whose values are produced while writing: WriteTo calls
// fill once, in tensor order, with a zeroed slice of the product of dims values, so
// a large model never holds more than one tensor in memory.
func (w *Writer) AddTensorFunc(name string, dims []uint64, typ Type, fill func(dst []float32)) {
	w.tensors = append(w.tensors, tensor{name: name, dims: dims, typ: typ, fill: fill})
}

// AddQuantTensor adds a tensor of a quantized type (TypeQ4_0 or TypeQ8_0) whose raw
// blocks are produced while writing, one row at a time: WriteTo calls fill for each
// row in order (row r covers values [r*dims[0], (r+1)*dims[0])) with a zeroed slice of
// dims[0]/QuantBlock blocks. dims[0] must be a multiple of QuantBlock.
func (w *Writer) AddQuantTensor(name string, dims []uint64, typ Type, fill func(row uint64, dst []byte)) {
	w.tensors = append(w.tensors, tensor{name: name, dims: dims, typ: typ, rows: fill})
}

// layout is the validated plan for one file.
type layout struct {
	align   uint64
	offsets []uint64 // per tensor, relative to the start of the data section
	counts  []uint64 // elements per tensor
	maxFill uint64   // largest element count of a fill tensor
	maxRow  uint64   // largest row, in bytes, of a quantized tensor
	// dataBytes is the size of the data section, padding included.
	dataBytes uint64
}

// plan validates the Writer's contents and computes the tensor layout.
func (w *Writer) plan() (layout, error) {
	l := layout{align: DefaultAlignment}
	keys := make(map[string]struct{}, len(w.kvs))
	for _, p := range w.kvs {
		if p.key == "" {
			return l, errors.New("gguf: empty metadata key")
		}
		if len(p.key) > math.MaxUint16 {
			return l, fmt.Errorf("gguf: metadata key %.32q...: longer than %d bytes", p.key, math.MaxUint16)
		}
		if _, dup := keys[p.key]; dup {
			return l, fmt.Errorf("gguf: metadata key %q: added twice", p.key)
		}
		keys[p.key] = struct{}{}
		if p.key == KeyAlignment {
			a, ok := p.value.(uint32)
			if !ok || p.typ != valUint32 {
				return l, fmt.Errorf("gguf: metadata key %q: must be a uint32", KeyAlignment)
			}
			if a < 8 || a&(a-1) != 0 {
				return l, fmt.Errorf("gguf: alignment %d: must be a power of two of at least 8", a)
			}
			l.align = uint64(a)
		}
	}
	names := make(map[string]struct{}, len(w.tensors))
	var off uint64
	for _, t := range w.tensors {
		n, err := t.validate()
		if err != nil {
			return l, err
		}
		if _, dup := names[t.name]; dup {
			return l, fmt.Errorf("gguf: tensor %q: added twice", t.name)
		}
		names[t.name] = struct{}{}
		size, err := t.bytes(n)
		if err != nil {
			return l, fmt.Errorf("gguf: tensor %q: %w", t.name, err)
		}
		if t.typ.quantized() {
			l.maxRow = max(l.maxRow, t.dims[0]/QuantBlock*uint64(t.typ.BlockBytes()))
		}
		l.offsets = append(l.offsets, off)
		l.counts = append(l.counts, n)
		if t.fill != nil && n > l.maxFill {
			l.maxFill = n
		}
		if off, err = add(off, alignUp(size, l.align)); err != nil {
			return l, fmt.Errorf("gguf: tensor %q: %w", t.name, err)
		}
	}
	l.dataBytes = off
	return l, nil
}

// validate checks one tensor and returns its element count.
func (t tensor) validate() (uint64, error) {
	if t.name == "" {
		return 0, errors.New("gguf: empty tensor name")
	}
	if len(t.name) > MaxTensorNameLen {
		return 0, fmt.Errorf("gguf: tensor %q: name longer than %d bytes", t.name, MaxTensorNameLen)
	}
	if t.typ.size() == 0 && !t.typ.quantized() {
		return 0, fmt.Errorf("gguf: tensor %q: unsupported type %v", t.name, t.typ)
	}
	if t.typ.quantized() != (t.rows != nil) {
		if t.rows != nil {
			return 0, fmt.Errorf("gguf: tensor %q: %v is not a quantized type: use AddTensor", t.name, t.typ)
		}
		return 0, fmt.Errorf("gguf: tensor %q: %v takes raw blocks: use AddQuantTensor", t.name, t.typ)
	}
	if len(t.dims) == 0 || len(t.dims) > maxDims {
		return 0, fmt.Errorf("gguf: tensor %q: %d dimensions, want 1 to %d", t.name, len(t.dims), maxDims)
	}
	n := uint64(1)
	for i, d := range t.dims {
		if d == 0 {
			return 0, fmt.Errorf("gguf: tensor %q: dimension %d is zero", t.name, i)
		}
		var err error
		if n, err = mul(n, d); err != nil {
			return 0, fmt.Errorf("gguf: tensor %q: %w", t.name, err)
		}
	}
	if n > math.MaxInt/4 {
		return 0, fmt.Errorf("gguf: tensor %q: %d elements is too many", t.name, n)
	}
	if t.typ.quantized() && t.dims[0]%QuantBlock != 0 {
		return 0, fmt.Errorf("gguf: tensor %q: %v needs rows of a multiple of %d values, got %d", t.name, t.typ, QuantBlock, t.dims[0])
	}
	if t.fill == nil && t.rows == nil && uint64(len(t.data)) != n {
		return 0, fmt.Errorf("gguf: tensor %q: %d values for shape %v, want %d", t.name, len(t.data), t.dims, n)
	}
	return n, nil
}

// bytes is the size of the tensor's data, n values.
func (t tensor) bytes(n uint64) (uint64, error) {
	if t.typ.quantized() {
		return mul(n/QuantBlock, uint64(t.typ.BlockBytes()))
	}
	return mul(n, uint64(t.typ.size()))
}

func mul(a, b uint64) (uint64, error) {
	hi, lo := bits.Mul64(a, b)
	if hi != 0 {
		return 0, errors.New("size overflows uint64")
	}
	return lo, nil
}

func add(a, b uint64) (uint64, error) {
	s, carry := bits.Add64(a, b, 0)
	if carry != 0 {
		return 0, errors.New("size overflows uint64")
	}
	return s, nil
}

func alignUp(n, align uint64) uint64 { return (n + align - 1) / align * align }

// WriteTo writes the GGUF file to out and returns the number of bytes written. It
// validates the whole file first, so an invalid Writer writes nothing. It implements
// io.WriterTo and may be called more than once.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	l, err := w.plan()
	if err != nil {
		return 0, err
	}
	cw := &countingWriter{w: out}
	e := &encoder{w: bufio.NewWriterSize(cw, 1<<16)}
	w.header(e, l)
	w.data(e, l)
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return cw.n, fmt.Errorf("gguf: write: %w", e.err)
	}
	return cw.n, nil
}

// WriteHeader writes only the file's header (metadata and tensor index, padded to the
// data alignment) and returns its size and the size of the tensor data that WriteTo
// would write after it. A file of header+data bytes whose data section is left as a
// hole describes the same model without producing its weights (tests of big shapes).
func (w *Writer) WriteHeader(out io.Writer) (header, data int64, err error) {
	l, err := w.plan()
	if err != nil {
		return 0, 0, err
	}
	cw := &countingWriter{w: out}
	e := &encoder{w: bufio.NewWriterSize(cw, 1<<16)}
	w.header(e, l)
	if e.err == nil {
		e.err = e.w.Flush()
	}
	if e.err != nil {
		return cw.n, 0, fmt.Errorf("gguf: write: %w", e.err)
	}
	return cw.n, int64(l.dataBytes), nil
}

func (w *Writer) header(e *encoder, l layout) {
	e.bytes([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(w.tensors)))
	e.u64(uint64(len(w.kvs)))
	for _, p := range w.kvs {
		e.str(p.key)
		e.u32(uint32(p.typ))
		e.value(p)
	}
	for i, t := range w.tensors {
		e.str(t.name)
		e.u32(uint32(len(t.dims)))
		for _, d := range t.dims {
			e.u64(d)
		}
		e.u32(uint32(t.typ))
		e.u64(l.offsets[i])
	}
	e.pad(l.align)
}

func (w *Writer) data(e *encoder, l layout) {
	var scratch []float32
	if l.maxFill > 0 {
		scratch = make([]float32, l.maxFill)
	}
	var rowBuf []byte
	if l.maxRow > 0 {
		rowBuf = make([]byte, l.maxRow)
	}
	for i, t := range w.tensors {
		if t.rows != nil {
			row := rowBuf[:t.dims[0]/QuantBlock*uint64(t.typ.BlockBytes())]
			for r := range l.counts[i] / t.dims[0] {
				if e.err != nil {
					break
				}
				clear(row)
				t.rows(r, row)
				e.bytes(row)
			}
			e.pad(l.align)
			continue
		}
		data := t.data
		if t.fill != nil {
			data = scratch[:l.counts[i]]
			clear(data)
			t.fill(data)
		}
		e.floats(data, t.typ)
		e.pad(l.align)
	}
}

// countingWriter counts the bytes that reached the underlying writer.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// encoder writes little-endian GGUF primitives, tracking the position for padding and
// keeping the first error (later writes are no-ops).
type encoder struct {
	w   *bufio.Writer
	pos uint64
	err error
	buf [1 << 15]byte
}

func (e *encoder) bytes(b []byte) {
	if e.err != nil {
		return
	}
	n, err := e.w.Write(b)
	e.pos += uint64(n)
	e.err = err
}

func (e *encoder) u8(v uint8) { e.bytes([]byte{v}) }

func (e *encoder) u32(v uint32) { e.bytes(binary.LittleEndian.AppendUint32(e.buf[:0], v)) }

func (e *encoder) u64(v uint64) { e.bytes(binary.LittleEndian.AppendUint64(e.buf[:0], v)) }

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	if e.err != nil {
		return
	}
	n, err := e.w.WriteString(s)
	e.pos += uint64(n)
	e.err = err
}

func (e *encoder) pad(align uint64) {
	if rem := e.pos % align; rem != 0 {
		e.bytes(make([]byte, align-rem))
	}
}

// value writes the value of a metadata pair (its type is already written).
func (e *encoder) value(p kv) {
	switch v := p.value.(type) {
	case uint32:
		e.u32(v)
	case int32:
		e.u32(uint32(v))
	case uint64:
		e.u64(v)
	case float32:
		e.u32(math.Float32bits(v))
	case bool:
		if v {
			e.u8(1)
		} else {
			e.u8(0)
		}
	case string:
		e.str(v)
	case []string:
		e.u32(uint32(valString))
		e.u64(uint64(len(v)))
		for _, s := range v {
			e.str(s)
		}
	case []float32:
		e.u32(uint32(valFloat32))
		e.u64(uint64(len(v)))
		for _, f := range v {
			e.u32(math.Float32bits(f))
		}
	case []int32:
		e.u32(uint32(valInt32))
		e.u64(uint64(len(v)))
		for _, i := range v {
			e.u32(uint32(i))
		}
	}
}

// floats writes data as typ, through the encoder's chunk buffer.
func (e *encoder) floats(data []float32, typ Type) {
	size := typ.size()
	per := len(e.buf) / size
	for len(data) > 0 && e.err == nil {
		n := min(per, len(data))
		out := e.buf[:0]
		for _, f := range data[:n] {
			if typ == TypeF16 {
				out = binary.LittleEndian.AppendUint16(out, f32ToF16(f))
			} else {
				out = binary.LittleEndian.AppendUint32(out, math.Float32bits(f))
			}
		}
		e.bytes(out)
		data = data[n:]
	}
}
