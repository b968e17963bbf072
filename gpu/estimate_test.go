package gpu

import (
	"strings"
	"testing"
)

// Real model shapes (from the GGUF metadata of the published files), so the
// estimates can be checked without multi-GB downloads.
var (
	// Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf: 4.92 GB of weights.
	llama8B = ModelShape{
		Layers: 32, Heads: 32, KVHeads: 8, HeadDim: 128,
		Embedding: 4096, Vocab: 128256, WeightsBytes: 4_920_000_000,
	}
	// Llama-3.3-70B-Instruct-Q4_K_M.gguf: 42.5 GB of weights.
	llama70B = ModelShape{
		Layers: 80, Heads: 64, KVHeads: 8, HeadDim: 128,
		Embedding: 8192, Vocab: 128256, WeightsBytes: 42_520_000_000,
	}
)

const (
	mib = 1 << 20
	gb  = 1 << 30
)

func TestEstimateShape(t *testing.T) {
	// compute = 512 × ((vocab + 8 × embedding) × 4 + ctx × 6) bytes
	compute := func(s ModelShape, ctx int) uint64 {
		return uint64(512 * ((s.Vocab+8*s.Embedding)*4 + ctx*6))
	}
	tests := []struct {
		name                 string
		shape                ModelShape
		ctxLen, slots, layer int
		want                 Estimate
	}{
		{
			// 2 × 32 layers × 8192 × 8 heads × 128 × 2 bytes = 1 GiB
			name: "8B 8k context", shape: llama8B, ctxLen: 8192, slots: 1, layer: -1,
			want: Estimate{WeightsBytes: 4_920_000_000, KVCacheBytes: 1 * gb, ComputeBytes: compute(llama8B, 8192),
				Layers: 32, OffloadLayers: 32, ContextTokens: 8192},
		},
		{
			name: "8B 4 slots of 4k", shape: llama8B, ctxLen: 4096, slots: 4, layer: 999,
			want: Estimate{WeightsBytes: 4_920_000_000, KVCacheBytes: 2 * gb, ComputeBytes: compute(llama8B, 16384),
				Layers: 32, OffloadLayers: 32, ContextTokens: 16384},
		},
		{
			name: "8B context padded to 256", shape: llama8B, ctxLen: 1000, slots: 1, layer: -1,
			want: Estimate{WeightsBytes: 4_920_000_000, KVCacheBytes: 128 * mib, ComputeBytes: compute(llama8B, 1024),
				Layers: 32, OffloadLayers: 32, ContextTokens: 1024},
		},
		{
			name: "8B half offloaded", shape: llama8B, ctxLen: 8192, slots: 1, layer: 16,
			want: Estimate{WeightsBytes: 2_460_000_000, KVCacheBytes: 512 * mib, ComputeBytes: compute(llama8B, 8192),
				Layers: 32, OffloadLayers: 16, ContextTokens: 8192},
		},
		{
			name: "8B on the CPU", shape: llama8B, ctxLen: 8192, slots: 1, layer: 0,
			want: Estimate{Layers: 32, OffloadLayers: 0, ContextTokens: 8192},
		},
		{
			// 2 × 80 × 8192 × 8 × 128 × 2 = 2.5 GiB
			name: "70B 8k context", shape: llama70B, ctxLen: 8192, slots: 1, layer: -1,
			want: Estimate{WeightsBytes: 42_520_000_000, KVCacheBytes: 2560 * mib, ComputeBytes: compute(llama70B, 8192),
				Layers: 80, OffloadLayers: 80, ContextTokens: 8192},
		},
		{
			name: "70B 2 slots of 16k", shape: llama70B, ctxLen: 16384, slots: 2, layer: -1,
			want: Estimate{WeightsBytes: 42_520_000_000, KVCacheBytes: 10 * gb, ComputeBytes: compute(llama70B, 32768),
				Layers: 80, OffloadLayers: 80, ContextTokens: 32768},
		},
		{
			// The full 128k context costs as much as the weights.
			name: "70B 128k context", shape: llama70B, ctxLen: 131072, slots: 1, layer: -1,
			want: Estimate{WeightsBytes: 42_520_000_000, KVCacheBytes: 40 * gb, ComputeBytes: compute(llama70B, 131072),
				Layers: 80, OffloadLayers: 80, ContextTokens: 131072},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := EstimateShape(tt.shape, tt.ctxLen, tt.slots, tt.layer)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestEstimateTotals(t *testing.T) {
	tests := []struct {
		name          string
		shape         ModelShape
		ctxLen, slots int
		wantGiB       string
	}{
		{"8B Q4_K_M, 8k", llama8B, 8192, 1, "5.9"},
		{"70B Q4_K_M, 8k", llama70B, 8192, 1, "42.5"},
		{"70B Q4_K_M, 2 × 16k", llama70B, 16384, 2, "50.1"},
	}
	for _, tt := range tests {
		e, err := EstimateShape(tt.shape, tt.ctxLen, tt.slots, -1)
		if err != nil {
			t.Fatal(err)
		}
		if got := gib(e.Total()); got != tt.wantGiB {
			t.Errorf("%s: total %s GiB, want %s", tt.name, got, tt.wantGiB)
		}
	}
}

func TestEstimateShapeErrors(t *testing.T) {
	tests := []struct {
		name          string
		shape         ModelShape
		ctxLen, slots int
		wantErr       string
	}{
		{"no context", llama8B, 0, 1, "gpu: estimate: context length 0 is not positive"},
		{"no slots", llama8B, 4096, 0, "gpu: estimate: slots 0 is not positive"},
		{"huge context", llama8B, 1 << 30, 4, "too large"},
		{"no layers", ModelShape{KVHeads: 8, HeadDim: 128, WeightsBytes: 1}, 4096, 1, "no layers"},
		{"no kv heads", ModelShape{Layers: 2, HeadDim: 128, WeightsBytes: 1}, 4096, 1, "no key/value heads"},
		{"no head dim", ModelShape{Layers: 2, KVHeads: 8, WeightsBytes: 1}, 4096, 1, "no head dimension"},
		{"no weights", ModelShape{Layers: 2, KVHeads: 8, HeadDim: 128}, 4096, 1, "no weights"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := EstimateShape(tt.shape, tt.ctxLen, tt.slots, -1)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
