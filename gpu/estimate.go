package gpu

import (
	"errors"
	"fmt"
	"math"

	gguf "github.com/gpustack/gguf-parser-go"
)

// Assumptions shared by both estimate paths: llama.cpp's defaults on CUDA.
const (
	// kvBytesPerElem is the size of one cached K or V element (F16, the
	// llama.cpp default for --cache-type-k/-v).
	kvBytesPerElem = 2
	// ctxPadding is what llama.cpp rounds the context (KV cache size in
	// tokens) up to with flash attention.
	ctxPadding = 256
	// ubatch is llama.cpp's default physical batch (--ubatch-size); the
	// compute buffers are sized for a batch this large.
	ubatch = 512
	// activationRows is how many embedding-wide F32 rows per batch token
	// the compute estimate reserves besides the logits (residual, norms,
	// attention and FFN inputs and outputs).
	activationRows = 8
	// maskBytes is the attention mask's cost per batch token and cached
	// token: an F32 [n_kv, n_batch] mask and its F16 copy for flash
	// attention.
	maskBytes = 4 + 2
)

// Estimate is the GPU memory one model needs when llama.cpp serves it.
type Estimate struct {
	WeightsBytes uint64 // weights of the layers placed on the GPU
	KVCacheBytes uint64 // K and V cache of those layers, F16
	ComputeBytes uint64 // compute buffers (graph scratch, logits)

	Layers        int // repeating blocks in the model
	OffloadLayers int // blocks placed on the GPU
	ContextTokens int // KV cache size in tokens: ctxLen × slots, padded to 256
}

// Total is the GPU memory the model needs: weights, KV cache and compute.
func (e Estimate) Total() uint64 { return e.WeightsBytes + e.KVCacheBytes + e.ComputeBytes }

// ModelShape is the part of a model's metadata the estimate needs. Fill it
// from a catalog for a model not on disk, or with ShapeOf from a parsed GGUF.
type ModelShape struct {
	Layers       int    // repeating blocks, <arch>.block_count
	Heads        int    // query heads, <arch>.attention.head_count
	KVHeads      int    // key/value heads, <arch>.attention.head_count_kv
	HeadDim      int    // per-head K (and V) width, <arch>.attention.key_length
	Embedding    int    // <arch>.embedding_length
	Vocab        int    // tokens in the vocabulary
	WeightsBytes uint64 // size of all tensor data in the file(s)
}

// ShapeOf reads the shape of the model in a parsed GGUF file. Key and value
// heads of different widths are summarized by their mean, which keeps the
// KV cache size exact.
func ShapeOf(gf *gguf.GGUFFile) (ModelShape, error) {
	a := gf.Architecture()
	if a.Type != "model" {
		return ModelShape{}, fmt.Errorf("gpu: estimate: gguf holds a %s, not a model", a.Type)
	}
	s := ModelShape{
		Layers:       int(a.BlockCount),
		Heads:        int(a.AttentionHeadCount),
		KVHeads:      int(a.AttentionHeadCountKV),
		HeadDim:      int(a.AttentionKeyLength+a.AttentionValueLength) / 2,
		Embedding:    int(a.EmbeddingLength),
		Vocab:        int(a.VocabularyLength),
		WeightsBytes: uint64(gf.ModelSize),
	}
	return s, s.validate()
}

func (s ModelShape) validate() error {
	switch {
	case s.Layers <= 0:
		return errors.New("gpu: estimate: model has no layers")
	case s.KVHeads <= 0:
		return errors.New("gpu: estimate: model has no key/value heads")
	case s.HeadDim <= 0:
		return errors.New("gpu: estimate: model has no head dimension")
	case s.WeightsBytes == 0:
		return errors.New("gpu: estimate: model has no weights")
	}
	return nil
}

// EstimateShape estimates the GPU memory of a model of shape s served by
// llama.cpp with flash attention and an F16 KV cache: ctxLen tokens of
// context per slot, slots parallel sequences (llama-server --parallel; the
// server's -c is ctxLen × slots) and offloadLayers blocks on the GPU
// (negative, or at least s.Layers, for all of them and the output layer).
//
//	weights = WeightsBytes × offloaded / Layers (all of it when fully offloaded)
//	KV      = 2 × offloaded × ctx_total × KVHeads × HeadDim × 2 bytes
//	compute = ubatch × ((Vocab + 8 × Embedding) × 4 + ctx_total × 6) bytes, ubatch = 512
//
// ctx_total is ctxLen × slots rounded up to 256. The compute term covers
// the logits, a few activation rows and the attention mask of one batch;
// for Llama 3 shapes it runs 110 to 190 MiB above gguf-parser-go's finer
// estimate. The weights of a fully offloaded model count the token
// embeddings that llama.cpp keeps in host memory. Both err on the safe side.
func EstimateShape(s ModelShape, ctxLen, slots, offloadLayers int) (Estimate, error) {
	if err := s.validate(); err != nil {
		return Estimate{}, err
	}
	ctx, err := contextTokens(ctxLen, slots)
	if err != nil {
		return Estimate{}, err
	}
	off := s.Layers
	if offloadLayers >= 0 && offloadLayers < s.Layers {
		off = offloadLayers
	}
	e := Estimate{Layers: s.Layers, OffloadLayers: off, ContextTokens: ctx}
	if off == 0 {
		return e, nil
	}
	e.WeightsBytes = s.WeightsBytes
	if off < s.Layers {
		e.WeightsBytes = uint64(float64(s.WeightsBytes) * float64(off) / float64(s.Layers))
	}
	e.KVCacheBytes = 2 * uint64(off) * uint64(ctx) * uint64(s.KVHeads) * uint64(s.HeadDim) * kvBytesPerElem
	e.ComputeBytes = ubatch * ((uint64(s.Vocab)+activationRows*uint64(s.Embedding))*4 + uint64(ctx)*maskBytes)
	return e, nil
}

// contextTokens returns the KV cache size in tokens for ctxLen tokens per
// slot and slots slots, padded as llama.cpp pads it.
func contextTokens(ctxLen, slots int) (int, error) {
	switch {
	case ctxLen <= 0:
		return 0, fmt.Errorf("gpu: estimate: context length %d is not positive", ctxLen)
	case slots <= 0:
		return 0, fmt.Errorf("gpu: estimate: slots %d is not positive", slots)
	case ctxLen > (math.MaxInt32-ctxPadding)/slots:
		return 0, fmt.Errorf("gpu: estimate: context %d × %d slots is too large", ctxLen, slots)
	}
	total := ctxLen * slots
	return (total + ctxPadding - 1) / ctxPadding * ctxPadding, nil
}

// EstimateVRAM parses the GGUF model at path (the first shard of a split
// model names the others) and estimates its GPU memory with gguf-parser-go's
// llama.cpp estimator, for the same settings as EstimateShape: ctxLen
// tokens per slot, slots parallel sequences, offloadLayers blocks on the
// GPU (negative for all), flash attention, F16 KV cache. Only the file's
// header and tensor index are read.
func EstimateVRAM(path string, ctxLen, slots, offloadLayers int) (Estimate, error) {
	if _, err := contextTokens(ctxLen, slots); err != nil {
		return Estimate{}, err
	}
	gf, err := gguf.ParseGGUFFile(path, gguf.SkipLargeMetadata())
	if err != nil {
		return Estimate{}, fmt.Errorf("gpu: estimate %s: %w", path, err)
	}
	return EstimateGGUF(gf, ctxLen, slots, offloadLayers)
}

// EstimateGGUF is EstimateVRAM for an already parsed file.
func EstimateGGUF(gf *gguf.GGUFFile, ctxLen, slots, offloadLayers int) (Estimate, error) {
	shape, err := ShapeOf(gf)
	if err != nil {
		return Estimate{}, err
	}
	ctx, err := contextTokens(ctxLen, slots)
	if err != nil {
		return Estimate{}, err
	}
	opts := []gguf.GGUFRunEstimateOption{
		gguf.WithLLaMACppContextSize(int32(ctx)),
		gguf.WithParallelSize(int32(slots)),
		gguf.WithFlashAttention(),
	}
	if offloadLayers >= 0 && offloadLayers < shape.Layers {
		// llama.cpp's --n-gpu-layers counts the output layer first, then
		// blocks from the last one down: N blocks on the GPU is N+1. Zero
		// stays zero: nothing on the GPU.
		ngl := uint64(0)
		if offloadLayers > 0 {
			ngl = uint64(offloadLayers) + 1
		}
		opts = append(opts, gguf.WithLLaMACppOffloadLayers(ngl))
	}
	run := gf.EstimateLLaMACppRun(opts...)
	e := Estimate{
		Layers:        shape.Layers,
		OffloadLayers: int(run.OffloadLayers),
		ContextTokens: int(run.ContextSize),
	}
	for _, d := range run.Devices[1:] { // Devices[0] is the host
		if d.HandleLayers == 0 && !d.HandleOutputLayer {
			continue
		}
		e.WeightsBytes += uint64(d.Weight.Sum())
		e.KVCacheBytes += uint64(d.KVCache.Sum())
		e.ComputeBytes += uint64(d.Footprint + d.Computation.Sum())
	}
	return e, nil
}
