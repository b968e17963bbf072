// Package gguf writes GGUF v3 model files, the format that llama.cpp and Ollama load.
//
// It owns the byte layout only: the header, typed metadata key/value pairs, tensor
// infos, alignment padding (general.alignment, default 32) and tensor data in F32 or
// F16 (with its own round-to-nearest-even float32 to float16 conversion). It knows
// nothing about model architectures; see models/tinymodel for a llama-architecture
// model built on top of it. It has no reader: tests read files back with
// github.com/gpustack/gguf-parser-go.
//
// Output is deterministic: the same calls in the same order produce byte-identical
// files. Metadata keys and tensors are written in the order they were added.
//
// Usage:
//
//	w := gguf.NewWriter()
//	w.AddString("general.architecture", "llama")
//	w.AddUint32("llama.block_count", 2)
//	w.AddTensor("output_norm.weight", []uint64{64}, gguf.TypeF32, norm)
//	_, err := w.WriteTo(f)
//
// The standard library is its only dependency.
package gguf
