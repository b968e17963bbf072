// Package smoke is the GPU smoke test behind `sluice bench smoke` (and
// scripts/runpod/gpu-smoke.sh): it starts `sluice serve` with a llama-server that offloads
// every layer to the GPU, sends streamed chat requests through the OpenAI API, samples the
// GPU through sluice's own /metrics, and reports tokens/s, VRAM, power and cost per
// million tokens. It needs only the sluice binary, llama-server and a model (or the
// vocabulary to generate one), so it runs on a bare CUDA image.
package smoke
