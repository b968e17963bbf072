package config

import (
	"slices"
	"testing"
)

func TestEngineEnviron(t *testing.T) {
	in := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "CUDA_VISIBLE_DEVICES=0",
		"NVIDIA_VISIBLE_DEVICES=all", "LD_LIBRARY_PATH=/usr/local/cuda/lib64", "OLLAMA_MODELS=/m",
		"OPENAI_API_KEY=sk-secret", "SLUICE_API_KEY=sk-mine", "AWS_SECRET_ACCESS_KEY=x", "HF_TOKEN=hf_x",
		"CUDA_=odd", "PATHX=no", "broken"}
	got := EngineEnviron(in)
	want := []string{"PATH=/usr/bin", "HOME=/root", "LANG=C.UTF-8", "LC_ALL=C", "CUDA_VISIBLE_DEVICES=0",
		"NVIDIA_VISIBLE_DEVICES=all", "LD_LIBRARY_PATH=/usr/local/cuda/lib64", "OLLAMA_MODELS=/m"}
	if !slices.Equal(got, want) {
		t.Fatalf("EngineEnviron = %q, want %q", got, want)
	}
}
