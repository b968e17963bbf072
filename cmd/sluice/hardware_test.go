package main

import (
	"math"
	"strings"
	"testing"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/gpu"
	"github.com/sluice-llm/sluice/internal/enginetest"
	"github.com/sluice-llm/sluice/models/tinymodel"
)

const gib = 1 << 30

func box() gpu.Snapshot {
	return gpu.Snapshot{Devices: []gpu.Device{
		{Index: 0, UUID: "GPU-aaaa", Name: "NVIDIA A10G", MemoryTotal: 24 * gib, MemoryFree: 22 * gib},
		{Index: 1, UUID: "GPU-bbbb", Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 * gib, MemoryFree: 79 * gib},
	}}
}

func env(e config.Engine, k string) string {
	for _, kv := range e.Env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

// TestPlaceAndPrice: engines are pinned by placement or by config, refused with the
// numbers when nothing fits, and priced by their share of the GPUs (or the CPU box).
func TestPlaceAndPrice(t *testing.T) {
	model := enginetest.TinyModel(t, tinymodel.Options{})
	cfg := &config.Config{Engines: []config.Engine{
		{Name: "auto", Kind: "llamacpp", ModelPath: model, GPULayers: -1, Slots: 4, Context: 2048,
			Models: []config.Model{{Name: "tiny", Upstream: "tiny", Aliases: []string{"demo"}}}},
		{Name: "pinned", Kind: "llamacpp", ModelPath: model, GPUs: []int{1}, Slots: 1, Context: 512},
		{Name: "cpu", Kind: "llamacpp", ModelPath: model, Slots: 1, Context: 512},
		{Name: "remote", Kind: "openai", URL: "http://10.0.0.5:8000/v1"},
		{Name: "vllm", Kind: "openai", URL: "http://10.0.0.6:8000/v1", PricePerHour: ptr(1.5)},
		{Name: "openai", Kind: "openai", URL: "https://api.openai.com/v1", Region: "us",
			Models: []config.Model{{Name: "mini", Upstream: "gpt-4o-mini"}, {Name: "mystery", Upstream: "mystery-1"}}},
	}}
	cfg.Pricing.CPUPerHour = 0.10
	cfg.Pricing.GPUPerHour = map[string]float64{"A10G": 1.00}
	placed, err := placeEngines(cfg, box())
	if err != nil {
		t.Fatal(err)
	}
	// The tiny model fits both GPUs; best fit takes the one with less free memory.
	if got := env(cfg.Engines[0], "CUDA_VISIBLE_DEVICES"); got != "GPU-aaaa" || len(placed["auto"]) != 1 || placed["auto"][0] != 0 {
		t.Fatalf("auto placed on %v (CUDA_VISIBLE_DEVICES=%q)", placed["auto"], got)
	}
	if got := env(cfg.Engines[1], "CUDA_VISIBLE_DEVICES"); got != "GPU-bbbb" {
		t.Fatalf("pinned: CUDA_VISIBLE_DEVICES=%q", got)
	}
	if _, ok := placed["cpu"]; ok {
		t.Fatalf("an engine without gpu_layers was placed on a GPU")
	}
	costs, err := engineCosts(cfg, box(), placed, "box:test")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		perHour float64
		label   string
	}{
		"auto":   {1.00, "0:NVIDIA A10G"},
		"pinned": {2.69, "1:NVIDIA H100 80GB HBM3"},
		"cpu":    {0.10, "cpu"},
		"vllm":   {1.5, "priced"},
	}
	for _, c := range costs {
		switch c.Name {
		case "remote":
			// On the network, without a price: unpriced, never a free engine.
			if c.Meter != nil || !c.Unpriced || c.PerToken != nil {
				t.Errorf("remote: %+v", c)
			}
			continue
		case "openai":
			// A cloud region: per token at list prices, under the catalog name too; a
			// model without a list price is not priced at all.
			_, mystery := c.PerToken["mystery"]
			if c.Meter != nil || c.PerToken["mini"].Input != 0.15 || c.PerToken["gpt-4o-mini"].Output != 0.60 || mystery || c.GPU != "cloud" {
				t.Errorf("openai: %+v", c)
			}
			continue
		}
		w := want[c.Name]
		if math.Abs(c.Meter.PerHour()-w.perHour) > 1e-9 || c.GPU != w.label {
			t.Errorf("%s: $%v/h on %q, want $%v/h on %q", c.Name, c.Meter.PerHour(), c.GPU, w.perHour, w.label)
		}
		if remote := c.Name == "vllm"; c.Remote != remote || (!remote && c.Pool != "box:test") {
			t.Errorf("%s: pool %q remote %v", c.Name, c.Pool, c.Remote)
		}
	}
	// The box costs every GPU, engines or not.
	if p, err := boxPrice(cfg, box()); err != nil || math.Abs(p-(1.00+2.69)) > 1e-9 {
		t.Errorf("box price %v, %v", p, err)
	}
	// The tiny model's GGUF has a few thousand parameters: a small model.
	if c := modelClasses(cfg); c["tiny"] != "small" || c["demo"] != "small" {
		t.Errorf("classes %v", c)
	}
}

func ptr(f float64) *float64 { return &f }

func TestPlaceRefusesWithNumbers(t *testing.T) {
	model := enginetest.TinyModel(t, tinymodel.Options{})
	cfg := &config.Config{Engines: []config.Engine{
		{Name: "big", Kind: "llamacpp", ModelPath: model, GPULayers: -1, Slots: 64, Context: 2048},
	}}
	small := gpu.Snapshot{Devices: []gpu.Device{{Index: 0, UUID: "GPU-x", Name: "NVIDIA L4", MemoryTotal: 1 << 27, MemoryFree: 1 << 26}}}
	_, err := placeEngines(cfg, small)
	if err == nil || !strings.Contains(err.Error(), "GiB") || !strings.Contains(err.Error(), "NVIDIA L4") {
		t.Fatalf("err = %v, want needed vs available GiB naming the GPU", err)
	}
	if _, err := placeEngines(&config.Config{Engines: []config.Engine{{Name: "p", Kind: "llamacpp", ModelPath: model, GPUs: []int{3}}}}, box()); err == nil ||
		!strings.Contains(err.Error(), "no GPU 3") {
		t.Fatalf("pinning a missing GPU: %v", err)
	}
	// Without GPUs nothing is placed and nothing fails.
	if placed, err := placeEngines(cfg, gpu.Snapshot{}); err != nil || len(placed) != 0 {
		t.Fatalf("no GPUs: %v %v", placed, err)
	}
}
