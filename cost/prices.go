package cost

import (
	"sort"
	"strings"
)

// DefaultGPUHourly is the default price of one GPU-hour by GPU model, matched as a
// case-insensitive substring of the NVML device name (longest match wins). They are
// RunPod on-demand list prices (Secure Cloud, 2026) and, for the A10G, which RunPod does
// not rent, AWS's g5.xlarge on-demand price. Operators override them in config.
func DefaultGPUHourly() map[string]float64 {
	return map[string]float64{
		"H200":      3.59,
		"H100":      2.69,
		"H100 PCIe": 2.39,
		"A100":      1.64,
		"L40S":      0.86,
		"L40":       0.99,
		"L4":        0.43,
		"A10G":      1.01,
		"A10":       0.60,
		"RTX 4090":  0.69,
		"RTX A6000": 0.49,
	}
}

// CloudPrice is a cloud model's list price in dollars per million tokens.
type CloudPrice struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
}

// Of returns the price of a request's tokens.
func (p CloudPrice) Of(prompt, completion int) float64 {
	return (float64(prompt)*p.Input + float64(completion)*p.Output) / 1e6
}

// DefaultCloudPrices is the April 2026 list-price table, per million input/output tokens.
func DefaultCloudPrices() map[string]CloudPrice {
	return map[string]CloudPrice{
		"gpt-4o":            {2.50, 10.00},
		"gpt-4o-mini":       {0.15, 0.60},
		"claude-3-5-sonnet": {3.00, 15.00},
		"claude-3-haiku":    {0.25, 1.25},
		"gemini-1.5-pro":    {1.25, 5.00},
		"gemini-2.0-flash":  {0.10, 0.40},
	}
}

// GPUHourly returns the hourly price for a GPU name from table (longest case-insensitive
// substring match) and whether one matched.
func GPUHourly(table map[string]float64, name string) (float64, bool) {
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) > len(keys[j]) || (len(keys[i]) == len(keys[j]) && keys[i] < keys[j])
	})
	ln := strings.ToLower(name)
	for _, k := range keys {
		if strings.Contains(ln, strings.ToLower(k)) {
			return table[k], true
		}
	}
	return 0, false
}
