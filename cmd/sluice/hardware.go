package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-llm/sluice/config"
	"github.com/sluice-llm/sluice/cost"
	"github.com/sluice-llm/sluice/gpu"
)

// placeEngines decides which GPUs each managed llama-server runs on: the GPUs the config
// pins, or a placement by estimated VRAM need (weights + KV cache at the configured
// context and slots) against free memory. It sets CUDA_VISIBLE_DEVICES (and a tensor
// split across several GPUs) on the engines and returns engine -> GPU indexes. A model
// that fits nowhere is refused with needed vs available GiB.
func placeEngines(cfg *config.Config, snap gpu.Snapshot) (map[string][]int, error) {
	out := map[string][]int{}
	if len(snap.Devices) == 0 {
		return out, nil
	}
	var needs []gpu.ModelNeed
	idx := map[string]int{}
	for i := range cfg.Engines {
		e := &cfg.Engines[i]
		if e.Kind != "llamacpp" || e.URL != "" {
			continue
		}
		if len(e.GPUs) > 0 {
			var uuids []string
			for _, g := range e.GPUs {
				d, ok := snap.Device(g)
				if !ok {
					return nil, fmt.Errorf("engines[%d].gpus: no GPU %d on this box (%d GPUs)", i, g, len(snap.Devices))
				}
				uuids = append(uuids, d.UUID)
			}
			out[e.Name] = e.GPUs
			e.Env = append(e.Env, "CUDA_VISIBLE_DEVICES="+strings.Join(uuids, ","))
			continue
		}
		if e.GPULayers == 0 || hasEnv(e.Env, "CUDA_VISIBLE_DEVICES") {
			continue
		}
		est, err := gpu.EstimateVRAM(e.ModelPath, e.Context, e.Slots, e.GPULayers)
		if err != nil {
			return nil, fmt.Errorf("engine %s: %w", e.Name, err)
		}
		needs = append(needs, gpu.NeedOf(e.Name, est))
		idx[e.Name] = i
	}
	if len(needs) == 0 {
		return out, nil
	}
	plan, err := gpu.Place(needs, snap, gpu.PlaceOptions{Headroom: cfg.GPU.Headroom, AllowSplit: true})
	if err != nil {
		return nil, err
	}
	for _, a := range plan.Assignments {
		e := &cfg.Engines[idx[a.Model]]
		e.Env = append(e.Env, "CUDA_VISIBLE_DEVICES="+a.VisibleDevices())
		if len(a.GPUs) > 1 {
			e.Args = append(e.Args, "--split-mode", "layer", "--tensor-split", a.TensorSplit())
		}
		out[e.Name] = a.GPUs
	}
	return out, nil
}

// gpuUtil reports the mean utilization (0..1) of the GPUs an engine runs on, from the
// latest NVML reading.
func gpuUtil(mon *gpu.Monitor, placed map[string][]int) func(string) float64 {
	return func(engine string) float64 {
		gpus := placed[engine]
		if len(gpus) == 0 {
			return 0
		}
		snap := mon.Snapshot()
		sum := 0.0
		for _, g := range gpus {
			if d, ok := snap.Device(g); ok {
				sum += float64(d.UtilizationGPU) / 100
			}
		}
		return sum / float64(len(gpus))
	}
}

func hasEnv(env []string, k string) bool {
	for _, kv := range env {
		if strings.HasPrefix(kv, k+"=") {
			return true
		}
	}
	return false
}

// engineCosts prices every engine: its share of each GPU it runs on (GPUs shared by n
// engines are split n ways) at the configured GPU-hour prices, the box's CPU price split
// among engines without GPUs, or an explicit price_per_hour. An engine in a cloud region
// (not local) without one is a cloud API priced per token (models[].price, else
// pricing.cloud's list price); a model without either is unpriced. So is an engine off
// the box in the local region (on your network) without a price: flagged, never counted
// as free. Engines on the box belong to pool (for effective cost).
func engineCosts(cfg *config.Config, snap gpu.Snapshot, placed map[string][]int, pool string) ([]cost.Engine, error) {
	table := cost.DefaultGPUHourly()
	for k, v := range cfg.Pricing.GPUPerHour {
		table[k] = v
	}
	sharers := map[int]int{}
	cpuEngines := 0
	for _, e := range cfg.Engines {
		for _, g := range placed[e.Name] {
			sharers[g]++
		}
		if onBox(e) && len(placed[e.Name]) == 0 && e.PricePerHour == nil {
			cpuEngines++
		}
	}
	var out []cost.Engine
	for _, e := range cfg.Engines {
		var perHour float64
		label := "cpu"
		switch gpus := placed[e.Name]; {
		case !e.Local() && e.PricePerHour == nil:
			out = append(out, cost.Engine{Name: e.Name, GPU: "cloud", PerToken: tokenPrices(cfg, e)})
			continue
		case e.PricePerHour != nil:
			perHour, label = *e.PricePerHour, "priced"
			if len(gpus) > 0 {
				label = gpuLabel(snap, gpus)
			}
			if !onBox(e) {
				out = append(out, cost.Engine{Name: e.Name, GPU: label, Meter: cost.NewMeter(perHour, nil), Remote: true})
				continue
			}
		case len(gpus) > 0:
			for _, g := range gpus {
				d, _ := snap.Device(g)
				p, ok := cost.GPUHourly(table, d.Name)
				if !ok {
					return nil, fmt.Errorf("pricing.gpu_per_hour: no price for GPU %d (%s); add one", g, d.Name)
				}
				perHour += p / float64(sharers[g])
			}
			label = gpuLabel(snap, gpus)
		case onBox(e):
			perHour = cfg.Pricing.CPUPerHour / float64(max(cpuEngines, 1))
		default:
			out = append(out, cost.Engine{Name: e.Name, GPU: "unpriced", Unpriced: true})
			continue
		}
		out = append(out, cost.Engine{Name: e.Name, GPU: label, Meter: cost.NewMeter(perHour, nil), Pool: pool})
	}
	return out, nil
}

// tokenPrices are a cloud engine's list prices per token: pricing.cloud's table (for
// models the engine reports itself), and each configured model's price (models[].price,
// else the table's entry for its upstream name or its name) under its upstream name, its
// name and its aliases.
func tokenPrices(cfg *config.Config, e config.Engine) map[string]cost.CloudPrice {
	table := cloudPrices(cfg)
	m := cloudPrices(cfg)
	for _, md := range e.Models {
		p, ok := modelPrice(md, table)
		if !ok {
			delete(m, md.Name)
			delete(m, md.Upstream)
			continue
		}
		cp := cost.CloudPrice{Input: p.Input, Output: p.Output}
		for _, n := range append([]string{md.Name, md.Upstream}, md.Aliases...) {
			if n != "" {
				m[n] = cp
			}
		}
	}
	return m
}

// boxPrice is what the whole box costs per hour, for effective cost: ledger.box_per_hour,
// else every GPU NVML sees (with engines or not) at the GPU-hour prices, else the CPU
// box's price.
func boxPrice(cfg *config.Config, snap gpu.Snapshot) (float64, error) {
	if cfg.Ledger.BoxPerHour != nil {
		return *cfg.Ledger.BoxPerHour, nil
	}
	if len(snap.Devices) == 0 {
		return cfg.Pricing.CPUPerHour, nil
	}
	table := cost.DefaultGPUHourly()
	for k, v := range cfg.Pricing.GPUPerHour {
		table[k] = v
	}
	var sum float64
	for _, d := range snap.Devices {
		p, ok := cost.GPUHourly(table, d.Name)
		if !ok {
			return 0, fmt.Errorf("pricing.gpu_per_hour: no price for GPU %d (%s); add one", d.Index, d.Name)
		}
		sum += p
	}
	return sum, nil
}

// modelClasses sizes every catalog model (and alias) for its reference cloud model: by
// the GGUF's parameter count for models sluice runs, else by a size in the name
// ("llama3.1:8b"), else by its routing tier when ledger.references names one; the rest
// are left to the default class.
func modelClasses(cfg *config.Config) map[string]string {
	m := map[string]string{}
	for _, e := range cfg.Engines {
		class := ""
		if e.Kind == "llamacpp" && e.ModelPath != "" {
			if n, err := gpu.ModelParameters(e.ModelPath); err == nil && n > 0 {
				class = cost.ClassOf(n)
			}
		}
		for _, md := range e.Models {
			c := class
			if c == "" {
				if c2, ok := cost.ClassFromName(md.Upstream); ok {
					c = c2
				} else if c2, ok := cost.ClassFromName(md.Name); ok {
					c = c2
				}
			}
			if _, ok := cfg.Ledger.References[md.Tier]; c == "" && ok {
				c = md.Tier // no size known: its routing tier, when it names a reference
			}
			if c == "" {
				continue
			}
			m[md.Name] = c
			for _, a := range md.Aliases {
				m[a] = c
			}
		}
	}
	return m
}

// onBox reports whether the engine runs on this box (sluice starts it, or its URL is
// loopback).
func onBox(e config.Engine) bool {
	if e.Cloud() {
		return false // priced per token, wherever its URL points (a fake on loopback in tests)
	}
	if e.URL == "" {
		return true
	}
	return strings.Contains(e.URL, "://127.0.0.1") || strings.Contains(e.URL, "://localhost") || strings.Contains(e.URL, "://[::1]")
}

func gpuLabel(snap gpu.Snapshot, gpus []int) string {
	ids := make([]string, len(gpus))
	name := ""
	for i, g := range gpus {
		ids[i] = strconv.Itoa(g)
		if d, ok := snap.Device(g); ok {
			name = d.Name
		}
	}
	sort.Strings(ids)
	return strings.Join(ids, ",") + ":" + name
}

func cloudPrices(cfg *config.Config) map[string]cost.CloudPrice {
	m := cost.DefaultCloudPrices()
	for k, v := range cfg.Pricing.Cloud {
		m[k] = cost.CloudPrice{Input: v.Input, Output: v.Output}
	}
	return m
}

func modelReferences(cfg *config.Config) map[string]string {
	m := map[string]string{}
	for _, e := range cfg.Engines {
		for _, md := range e.Models {
			if md.Reference != "" {
				m[md.Name] = md.Reference
				for _, a := range md.Aliases {
					m[a] = md.Reference
				}
			}
		}
	}
	return m
}

// adminKey returns the configured admin keys, or makes a random one and writes it to
// the key file (0600) so that `sluice status` on the same box can read it.
func adminKey(cfg *config.Config) (keys []string, note string, err error) {
	if len(cfg.Server.AdminKeys) > 0 {
		return cfg.Server.AdminKeys, "", nil
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	k := "sk-admin-" + hex.EncodeToString(b)
	if err := os.MkdirAll(filepath.Dir(cfg.Server.AdminKeyFile), 0o700); err != nil {
		return nil, "", err
	}
	tmp := cfg.Server.AdminKeyFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(k+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	if err := os.Rename(tmp, cfg.Server.AdminKeyFile); err != nil {
		return nil, "", err
	}
	return []string{k}, "admin key written to " + cfg.Server.AdminKeyFile, nil
}
